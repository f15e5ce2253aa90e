//! A binary upgrade: start a new copy of the executable (the path this process was
//! started as) with the listening sockets inherited the systemd way (`LISTEN_FDS`, from
//! fd 3), wait until it says it is accepting or stop it when the caller gives up, and the
//! pid file that follows the serving process.
//!
//! The old process keeps its sockets open and accepting the whole time, so the listen
//! queues are never closed and no waiting client is reset. Whether the old process then
//! stops accepting and drains is the caller's decision; this file only starts the new one
//! and reports whether it came up.

use std::env;
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::activation::FIRST_FD;
use crate::io::sys::{self, PollFd};

/// The variable naming the descriptor on which a new process announces it is accepting.
pub const READY_FD_VAR: &str = "TCP_REACTOR_READY_FD";

/// The variable naming the metrics endpoint's listening socket handed to a new process
/// (placed after the listeners that `LISTEN_FDS` counts).
pub const METRICS_FD_VAR: &str = "TCP_REACTOR_METRICS_FD";

/// How long a new process being stopped gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// The byte a new process writes once it is accepting.
const READY: u8 = b'R';

/// The executable to start for an upgrade: the path this process was started as, made
/// absolute. Call it at start-up, before anything changes the working directory.
///
/// As nginx does, the path is kept as a name, not followed to a file: after
/// `mv tcp-reactor tcp-reactor.old` and a new build installed as `tcp-reactor`, an
/// upgrade starts the new build (`/proc/self/exe` would follow the rename to the old one).
/// A bare command name is looked up in `PATH` as the shell did. When `argv[0]` names no
/// executable file (a launcher set it to something else), the file this process runs
/// from is used, as `/proc/self/exe` names it now.
pub fn started_as() -> io::Result<PathBuf> {
    if let (Some(argv0), Ok(cwd)) = (env::args_os().next(), env::current_dir())
        && let Some(path) = resolve_exe(&argv0, &cwd, env::var_os("PATH").as_deref())
    {
        return Ok(path);
    }
    env::current_exe()
}

/// The absolute path `argv0` names, relative to `cwd`, looked up in `search` (a `PATH`)
/// when it has no slash; `None` unless an executable file is there. Symbolic links are
/// not followed: the path stays the one given, only `.` components are dropped.
pub fn resolve_exe(argv0: &OsStr, cwd: &Path, search: Option<&OsStr>) -> Option<PathBuf> {
    if argv0.is_empty() {
        return None;
    }
    let absolute = |path: &Path| -> PathBuf { cwd.join(path).components().collect() };
    if argv0.as_bytes().contains(&b'/') {
        let path = absolute(Path::new(argv0));
        return is_executable(&path).then_some(path);
    }
    // As execvp searches: each directory in turn, an empty entry meaning the cwd.
    env::split_paths(search?)
        .map(|dir| absolute(&dir.join(argv0)))
        .find(|path| is_executable(path))
}

/// Whether `path` is a file with an execute bit (following links, as exec does).
fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A new process started by [`start_successor`] that has not yet said it is accepting.
#[derive(Debug)]
pub struct Starting {
    /// The process.
    child: Child,
    /// The read end of the pipe it announces readiness on.
    ready: io::PipeReader,
}

/// Start `exe` with `args`, handing it `listeners` as descriptors 3, 4, … with
/// `LISTEN_FDS`/`LISTEN_PID` set for it, and `metrics` (the metrics endpoint's listening
/// socket, if any) after them, named by [`METRICS_FD_VAR`]. Then wait for it with
/// [`Starting::wait_ready`].
pub fn start_successor(
    exe: &Path,
    args: &[OsString],
    listeners: &[BorrowedFd<'_>],
    metrics: Option<BorrowedFd<'_>>,
) -> io::Result<Starting> {
    let (ready, ready_tx) = io::pipe()?;
    // The write end stays open here until the child has its copy, then closes, so that
    // the child's exit reads as EOF.
    let ready_tx = OwnedFd::from(ready_tx);
    let mut fds = listeners.to_vec();
    fds.extend(metrics);
    fds.push(ready_tx.as_fd());
    let env = successor_env(listeners.len(), metrics.is_some())?;
    let child = sys::spawn_with_fds(exe, args, env, "LISTEN_PID", &fds, FIRST_FD)?;
    drop(ready_tx);
    Ok(Starting { child, ready })
}

impl Starting {
    /// The new process's pid.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Wait up to `patience` until the new process announces that it is accepting
    /// (through the descriptor named by [`READY_FD_VAR`]); then it runs on, independent
    /// of this one.
    ///
    /// `abandon`, when given, is watched too: once it is readable (a byte written to a
    /// pipe, or the pipe's write end closed) the caller has given up. Then, as when the new
    /// process stays silent too long, it is stopped (SIGTERM, then SIGKILL after
    /// [`STOP_GRACE`]) and reaped before this returns, so it holds none of the sockets; the
    /// error says why, and what became of it (its exit, if it exited by itself).
    pub fn wait_ready(
        mut self,
        patience: Duration,
        abandon: Option<BorrowedFd<'_>>,
    ) -> io::Result<Child> {
        match wait_ready(&mut self.ready, patience, abandon) {
            Ok(()) => Ok(self.child),
            Err(err) => {
                let fate = stop(&mut self.child, STOP_GRACE);
                Err(io::Error::new(err.kind(), format!("{err}; {fate}")))
            }
        }
    }
}

/// Wait for the ready byte on `rx`, at most `patience`, unless `abandon` becomes readable.
fn wait_ready(
    rx: &mut io::PipeReader,
    patience: Duration,
    abandon: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let deadline = Instant::now() + patience;
    let mut fds = [
        PollFd::new(rx.as_raw_fd(), libc::POLLIN),
        // poll ignores a negative descriptor.
        PollFd::new(abandon.map_or(-1, |fd| fd.as_raw_fd()), libc::POLLIN),
    ];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Round up, so that the last wait does not become a busy loop of zero timeouts.
        let millis = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let n = match sys::poll(&mut fds, millis) {
            Ok(n) => n,
            // A signal for this process may be handled on this thread: wait on.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        // Readiness first: a new process that is already accepting is a server now.
        if fds[0].revents() != 0 {
            let mut byte = [0u8; 1];
            return match rx.read(&mut byte) {
                Ok(1) if byte[0] == READY => Ok(()),
                Ok(_) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the new process ended before it was accepting",
                )),
                Err(err) => Err(err),
            };
        }
        if fds[1].revents() != 0 {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "the upgrade was abandoned before the new process was accepting",
            ));
        }
        if n == 0 && left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the new process did not report accepting within {patience:?}"),
            ));
        }
    }
}

/// Stop `child` unless it has exited: SIGTERM, then SIGKILL if it is still there after
/// `grace`; reap it, and say what became of it.
fn stop(child: &mut Child, grace: Duration) -> String {
    if let Ok(Some(status)) = child.try_wait() {
        return format!("it exited ({status})");
    }
    let pid = child.id();
    // The child is not reaped yet, so the pid is still its.
    let _ = sys::kill(pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => {
                return format!("process {pid} was stopped with SIGTERM ({status})");
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    match child.wait() {
        Ok(status) => format!(
            "process {pid} did not stop within {grace:?} of SIGTERM and was killed ({status})"
        ),
        Err(err) => format!("process {pid} could not be reaped: {err}"),
    }
}

/// The new process's environment: this one's, without the variables of an earlier
/// handover, plus `LISTEN_FDS` and the variables naming the ready pipe and the metrics
/// listener (which follow the `listeners` from fd 3). `LISTEN_PID` is added by
/// [`sys::spawn_with_fds`], which alone knows the pid.
fn successor_env(listeners: usize, metrics: bool) -> io::Result<Vec<CString>> {
    let c = |text: String| {
        CString::new(text).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL"))
    };
    let metrics_fd = metrics.then_some(FIRST_FD + listeners as RawFd);
    let ready_fd = FIRST_FD + listeners as RawFd + RawFd::from(metrics);
    let mut env_c = Vec::new();
    for (key, value) in env::vars_os() {
        let skip = [
            "LISTEN_PID",
            "LISTEN_FDS",
            "LISTEN_FDNAMES",
            READY_FD_VAR,
            METRICS_FD_VAR,
        ];
        if skip.iter().any(|name| key == OsStr::new(name)) {
            continue;
        }
        let mut entry = key.as_bytes().to_vec();
        entry.push(b'=');
        entry.extend_from_slice(value.as_bytes());
        if let Ok(entry) = CString::new(entry) {
            env_c.push(entry);
        }
    }
    env_c.push(c(format!("LISTEN_FDS={listeners}"))?);
    env_c.push(c(format!("{READY_FD_VAR}={ready_fd}"))?);
    if let Some(fd) = metrics_fd {
        env_c.push(c(format!("{METRICS_FD_VAR}={fd}"))?);
    }
    Ok(env_c)
}

/// Take the descriptor a parent gave this process to announce readiness on, if any, and
/// unset the variable (when the process has a single thread: see
/// [`activation::take`](super::activation::take)).
///
/// Only the first call can return a descriptor; the descriptor must be open and not
/// close-on-exec, as one inherited across `exec` is.
pub fn take_ready_fd() -> Option<OwnedFd> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    take_fd(READY_FD_VAR, &TAKEN)
}

/// Take the metrics endpoint's listening socket a previous server handed over, if any,
/// and unset the variable. The caller checks that it is a listening TCP socket.
///
/// As for [`take_ready_fd`], only the first call can return a descriptor.
pub fn take_metrics_fd() -> Option<OwnedFd> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    take_fd(METRICS_FD_VAR, &TAKEN)
}

/// Take the descriptor the variable `name` names (3 or above), and unset the variable;
/// nothing once `taken` is set.
fn take_fd(name: &str, taken: &AtomicBool) -> Option<OwnedFd> {
    if taken.swap(true, Ordering::SeqCst) {
        return None;
    }
    let value = env::var(name).ok()?;
    sys::unset_env_while_alone(&[name]);
    let fd: RawFd = value.trim().parse().ok()?;
    if fd < FIRST_FD {
        return None;
    }
    sys::take_inherited(fd).ok()
}

/// Tell the parent that started this process that it is accepting.
pub fn announce_ready(fd: OwnedFd) -> io::Result<()> {
    let mut pipe = fs::File::from(fd);
    pipe.write_all(&[READY])
}

/// Write `pid` to `path` atomically: a reader sees the old content or the new, never a
/// part.
///
/// The content goes to `PATH.<pid>.tmp` first, created with `O_CREAT|O_EXCL|O_NOFOLLOW`
/// and mode 0644: a file or symbolic link already there (planted in a shared directory,
/// or left by a crash) fails the call and is neither followed nor overwritten. It is not
/// fsynced: a pid file describes a running process, and after a crash of the machine it
/// is stale whatever its content.
pub fn write_pid_file(path: &Path, pid: u32) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{pid}.tmp"));
    let tmp = PathBuf::from(tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|err| {
            let kept = match err.kind() {
                io::ErrorKind::AlreadyExists => "; what is there was left untouched",
                _ => "",
            };
            io::Error::new(
                err.kind(),
                format!("cannot create {}: {err}{kept}", tmp.display()),
            )
        })?;
    file.write_all(format!("{pid}\n").as_bytes())
        .and_then(|()| fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
}

/// Remove the pid file if it still names `pid` (after an upgrade it names the successor).
pub fn remove_pid_file(path: &Path, pid: u32) {
    let ours = fs::read_to_string(path)
        .map(|text| text.trim() == pid.to_string())
        .unwrap_or(false);
    if ours {
        let _ = fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory, removed at the end of the test.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir =
                env::temp_dir().join(format!("tcp-reactor-upgrade-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("bin")).expect("create a temporary directory");
            Dir(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_start_path_is_made_absolute_without_following_links() {
        let dir = Dir::new("resolve");
        let root = &dir.0;
        let exe = root.join("bin/tr");
        fs::write(&exe, "#!/bin/sh\n").expect("write");
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(root.join("bin/data"), "").expect("write");
        std::os::unix::fs::symlink("bin/tr", root.join("link")).expect("link");
        let resolve = |argv0: &str, search: Option<&str>| {
            resolve_exe(OsStr::new(argv0), root, search.map(OsStr::new))
        };
        assert_eq!(resolve("./bin/tr", None), Some(exe.clone()));
        assert_eq!(resolve("bin/./tr", None), Some(exe.clone()));
        assert_eq!(resolve(exe.to_str().unwrap(), None), Some(exe.clone()));
        // The link is the name started: a new build installed behind it is found there.
        assert_eq!(resolve("./link", None), Some(root.join("link")));
        // A bare name, through PATH: absolute and relative entries, an empty one (cwd).
        let bin = root.join("bin");
        let search = format!("/nonexistent:{}", bin.display());
        assert_eq!(resolve("tr", Some(&search)), Some(exe.clone()));
        assert_eq!(resolve("tr", Some("/nonexistent:bin")), Some(exe.clone()));
        assert_eq!(
            resolve("link", Some("/nonexistent:")),
            Some(root.join("link"))
        );
        // Nothing executable there.
        assert_eq!(resolve("tr", None), None);
        assert_eq!(resolve("tr", Some("/nonexistent")), None);
        assert_eq!(resolve("./bin/data", None), None);
        assert_eq!(resolve("./bin", None), None);
        assert_eq!(resolve("", Some("bin")), None);
    }

    #[test]
    fn the_pid_file_never_writes_through_what_is_at_its_temporary_path() {
        let dir = Dir::new("pid");
        let path = dir.0.join("server.pid");
        write_pid_file(&path, 42).expect("write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "42\n");
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o133, 0, "at most 0644: {mode:o}");
        // A file already at the temporary path, and a link: neither is touched.
        let victim = dir.0.join("victim");
        fs::write(&victim, "precious").expect("write");
        fs::write(dir.0.join("server.pid.43.tmp"), "left").expect("write");
        std::os::unix::fs::symlink(&victim, dir.0.join("server.pid.44.tmp")).expect("link");
        for (pid, what) in [(43, "left"), (44, "precious")] {
            let err = write_pid_file(&path, pid).expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
            assert!(err.to_string().contains("left untouched"), "{err}");
            let tmp = dir.0.join(format!("server.pid.{pid}.tmp"));
            assert_eq!(fs::read_to_string(&tmp).expect("read"), what);
        }
        assert_eq!(fs::read_to_string(&victim).expect("read"), "precious");
        assert_eq!(fs::read_to_string(&path).expect("read"), "42\n");
    }
}
