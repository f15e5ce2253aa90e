//! A binary upgrade: start a new copy of the executable with the listening sockets
//! inherited the systemd way (`LISTEN_FDS`, from fd 3), wait until it says it is
//! accepting, and the pid file that follows the serving process.
//!
//! The old process keeps its sockets open and accepting the whole time, so the listen
//! queues are never closed and no waiting client is reset. Whether the old process then
//! stops accepting and drains is the caller's decision; this file only starts the new one
//! and reports whether it came up.

use std::env;
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::activation::FIRST_FD;

/// The variable naming the descriptor on which a new process announces it is accepting.
pub const READY_FD_VAR: &str = "TCP_REACTOR_READY_FD";

/// The byte a new process writes once it is accepting.
const READY: u8 = b'R';

/// The path of the running executable: the file now at the path it was started from, so
/// that a newer build installed over it is the one started.
pub fn current_exe() -> io::Result<PathBuf> {
    let link = fs::read_link("/proc/self/exe").or_else(|_| env::current_exe())?;
    // A file replaced on disk shows as "PATH (deleted)": start what is at PATH now.
    let bytes = link.as_os_str().as_bytes();
    match bytes.strip_suffix(b" (deleted)") {
        Some(path) => Ok(PathBuf::from(OsStr::from_bytes(path))),
        None => Ok(link),
    }
}

/// Start `exe` with `args`, handing it `listeners` as descriptors 3, 4, … with
/// `LISTEN_FDS`/`LISTEN_PID` set for it, and wait up to `patience` until it announces
/// that it is accepting (through the descriptor named by [`READY_FD_VAR`]).
///
/// On success the new process runs on, independent of this one. If it cannot be
/// started, exits, or stays silent too long (then it is killed), the error says why.
pub fn start_successor(
    exe: &Path,
    args: &[OsString],
    listeners: &[BorrowedFd<'_>],
    patience: Duration,
) -> io::Result<Child> {
    let (mut ready_rx, ready_tx) = io::pipe()?;
    // `plan` holds the raw descriptor number of the write end; the end itself stays open
    // until the child has its copy, then closes here so that the child's exit reads as EOF.
    let ready_tx = OwnedFd::from(ready_tx);
    let mut plan = ExecPlan::new(exe, args, listeners, ready_tx.as_raw_fd())?;
    let mut child = {
        let mut command = Command::new(exe);
        command.args(args);
        // SAFETY: the closure runs in the child between fork and exec and only makes
        // async-signal-safe calls (fcntl, dup2, getpid, execve) on memory prepared before
        // the fork; it allocates nothing.
        unsafe { command.pre_exec(move || plan.exec()) };
        command.spawn()?
    };
    drop(ready_tx);
    let outcome = wait_ready(&mut ready_rx, patience);
    match outcome {
        Ok(()) => Ok(child),
        Err(err) => {
            let status = match child.try_wait() {
                Ok(Some(status)) => format!("it exited ({status})"),
                _ => {
                    let _ = child.kill();
                    let status = child.wait();
                    format!("it was stopped ({status:?})")
                }
            };
            Err(io::Error::new(err.kind(), format!("{err}; {status}")))
        }
    }
}

/// Wait for the ready byte on `rx`, at most `patience`.
fn wait_ready(rx: &mut io::PipeReader, patience: Duration) -> io::Result<()> {
    let mut poll = libc::pollfd {
        fd: rx.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = patience.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, for the duration of the call.
    let n = unsafe { libc::poll(&mut poll, 1, millis) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the new process did not report accepting within {patience:?}"),
        ));
    }
    let mut byte = [0u8; 1];
    match rx.read(&mut byte) {
        Ok(1) if byte[0] == READY => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the new process ended before it was accepting",
        )),
        Err(err) => Err(err),
    }
}

/// Everything the child does between fork and exec, prepared before the fork.
struct ExecPlan {
    /// The program, NUL-terminated.
    exe: CString,
    /// Owns the argument strings `argv` points into.
    _args: Vec<CString>,
    /// `argv` for execve, NULL-terminated.
    argv: Vec<*const libc::c_char>,
    /// Owns the environment strings `envp` points into.
    _env: Vec<CString>,
    /// `LISTEN_PID=` followed by room for the child's pid, which only the child knows.
    listen_pid: Vec<u8>,
    /// `envp` for execve, NULL-terminated; its last entry points into `listen_pid`.
    envp: Vec<*const libc::c_char>,
    /// Descriptors to place at 3, 4, …: the listeners, then the ready pipe.
    sources: Vec<RawFd>,
    /// Scratch for the descriptors' temporary copies.
    scratch: Vec<RawFd>,
}

// SAFETY: the raw pointers point into heap buffers owned by the same value, which moves
// into the child's `pre_exec` closure and is used only there.
unsafe impl Send for ExecPlan {}
// SAFETY: as above; nothing is shared between threads through `&ExecPlan`.
unsafe impl Sync for ExecPlan {}

impl ExecPlan {
    /// Prepare argv, envp and the descriptor moves.
    fn new(
        exe: &Path,
        args: &[OsString],
        listeners: &[BorrowedFd<'_>],
        ready: RawFd,
    ) -> io::Result<ExecPlan> {
        let c = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL"))
        };
        let exe = c(exe.as_os_str().as_bytes())?;
        let mut args_c = vec![exe.clone()];
        for arg in args {
            args_c.push(c(arg.as_bytes())?);
        }
        let ready_fd = FIRST_FD + listeners.len() as RawFd;
        let mut env_c = Vec::new();
        for (key, value) in env::vars_os() {
            let skip = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", READY_FD_VAR];
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
        env_c.push(c(format!("LISTEN_FDS={}", listeners.len()).as_bytes())?);
        env_c.push(c(format!("{READY_FD_VAR}={ready_fd}").as_bytes())?);
        let mut listen_pid = b"LISTEN_PID=".to_vec();
        listen_pid.resize(listen_pid.len() + 24, 0);
        let argv = args_c
            .iter()
            .map(|s| s.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        let envp = env_c
            .iter()
            .map(|s| s.as_ptr())
            .chain([listen_pid.as_ptr().cast(), std::ptr::null()])
            .collect();
        let mut sources: Vec<RawFd> = listeners.iter().map(|fd| fd.as_raw_fd()).collect();
        sources.push(ready);
        Ok(ExecPlan {
            exe,
            _args: args_c,
            argv,
            _env: env_c,
            listen_pid,
            envp,
            scratch: vec![-1; sources.len()],
            sources,
        })
    }

    /// In the child: move the descriptors to 3, 4, …, fill in `LISTEN_PID`, and exec.
    /// Returns only on failure.
    fn exec(&mut self) -> io::Result<()> {
        let count = self.sources.len() as RawFd;
        // First copy every source above the target range, so that no move overwrites a
        // source not yet moved; then place each copy (dup2 clears close-on-exec).
        for (source, copy) in self.sources.iter().zip(self.scratch.iter_mut()) {
            // SAFETY: duplicating a descriptor this process holds.
            *copy = unsafe { libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, FIRST_FD + count) };
            if *copy < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        for (index, copy) in self.scratch.iter().enumerate() {
            // SAFETY: as above.
            if unsafe { libc::dup2(*copy, FIRST_FD + index as RawFd) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: getpid cannot fail.
        let mut pid = unsafe { libc::getpid() } as u64;
        let start = b"LISTEN_PID=".len();
        let mut digits = [0u8; 20];
        let mut len = 0;
        loop {
            digits[len] = b'0' + (pid % 10) as u8;
            len += 1;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        for i in 0..len {
            self.listen_pid[start + i] = digits[len - 1 - i];
        }
        self.listen_pid[start + len] = 0;
        // SAFETY: argv and envp are NULL-terminated arrays of pointers to NUL-terminated
        // strings that live as long as `self`.
        unsafe { libc::execve(self.exe.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        Err(io::Error::last_os_error())
    }
}

/// Take the descriptor a parent gave this process to announce readiness on, if any, and
/// unset the variable.
///
/// # Safety
///
/// Call at most once, before any other thread exists, and only when nothing else owns
/// the descriptor the variable names.
pub unsafe fn take_ready_fd() -> Option<OwnedFd> {
    let value = env::var(READY_FD_VAR).ok()?;
    // SAFETY: the caller guarantees no other thread touches the environment.
    unsafe { env::remove_var(READY_FD_VAR) };
    let fd: RawFd = value.trim().parse().ok()?;
    // SAFETY: only queries and sets flags on the descriptor.
    if fd < FIRST_FD || unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return None;
    }
    // SAFETY: the caller guarantees nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
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
    use std::os::unix::fs::PermissionsExt;

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
