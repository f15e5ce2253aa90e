//! Every direct libc call of the crate, each behind a safe function: the only `unsafe` in
//! the library. Callers pass borrowed descriptors (`BorrowedFd`) wherever a call acts on
//! a descriptor, so the borrow checker, not a comment, keeps it open for the call.
//!
//! What this file must not do: decide anything. Each function makes one call (or one
//! fixed sequence, for the upgrade's fork/exec) and reports the kernel's answer; the
//! callers say what an answer means for a connection.

use std::env;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Mutex;

/// One descriptor for [`poll`]: the kernel's `struct pollfd`, whose layout poll reads.
#[derive(Debug, Clone, Copy)]
#[repr(transparent)]
pub(crate) struct PollFd(libc::pollfd);

impl PollFd {
    /// Watch `fd` for `events` (`libc::POLLIN`, …). A negative `fd` is ignored by poll,
    /// which is how a slot is left empty. Any number is sound here: poll reports a
    /// descriptor that is not open as `POLLNVAL` and touches nothing else.
    pub(crate) fn new(fd: RawFd, events: libc::c_short) -> PollFd {
        PollFd(libc::pollfd {
            fd,
            events,
            revents: 0,
        })
    }

    /// What the last [`poll`] found on this descriptor (0: nothing).
    pub(crate) fn revents(&self) -> libc::c_short {
        self.0.revents
    }
}

/// `poll(2)`: wait up to `timeout_ms` (-1: no limit, 0: just look) until one of `fds` has
/// one of its events; the number of descriptors with something to report (0: the time
/// ran out). `Interrupted` is the caller's to retry, with the time that is left.
pub(crate) fn poll(fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
    let count = fds.len() as libc::nfds_t;
    // SAFETY: `PollFd` is `repr(transparent)` over `libc::pollfd`, so `fds` is a valid
    // array of `count` pollfds, borrowed mutably for the whole call; poll only writes
    // their `revents`.
    let n = unsafe { libc::poll(fds.as_mut_ptr().cast::<libc::pollfd>(), count, timeout_ms) };
    // A negative count means failure, with the reason in errno.
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// [`poll`] on one descriptor: what it found there (0: the time ran out).
pub(crate) fn poll_one(
    fd: RawFd,
    events: libc::c_short,
    timeout_ms: i32,
) -> io::Result<libc::c_short> {
    let mut fds = [PollFd::new(fd, events)];
    poll(&mut fds, timeout_ms)?;
    Ok(fds[0].revents())
}

/// `connect(fd, AF_UNSPEC)`: dissolve a connected TCP socket's association at once. An
/// established or half-closed connection sends its peer a reset, and the socket reports
/// `ECONNRESET` (`POLLERR`, `POLLHUP`) to whoever polls or reads it, which wakes a thread
/// blocked on it even when no other event could come. The descriptor stays open.
pub(crate) fn disconnect(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: an all-zero `sockaddr` is a valid value (family 0 is `AF_UNSPEC`).
    let mut addr: libc::sockaddr = unsafe { std::mem::zeroed() };
    addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
    // SAFETY: `fd` is borrowed, so open, for the call; `addr` is a valid sockaddr of
    // `len` bytes, which connect only reads.
    let rc = unsafe { libc::connect(fd.as_raw_fd(), &raw const addr, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Put `fd` in nonblocking mode (`O_NONBLOCK`), keeping its other status flags.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `F_GETFL` only reads the status flags of a descriptor borrowed for the call.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: `F_SETFL` sets status flags on the same borrowed descriptor; no memory is
    // passed.
    if flags < 0
        || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Set close-on-exec on `fd`, so that processes this one starts do not inherit it.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `F_SETFD` sets the descriptor flags of a descriptor borrowed for the call;
    // no memory is passed.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The descriptor flags of `fd` (`F_GETFD`): `EBADF` when it is not open.
fn fd_flags(fd: RawFd) -> io::Result<libc::c_int> {
    // SAFETY: `F_GETFD` only queries the flags of a descriptor number; a number that is
    // not open gives `EBADF` and touches nothing.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(flags)
    }
}

/// Take ownership of descriptor `fd` that whoever started this process handed it (named
/// by `LISTEN_FDS` or an upgrade's variable), and set close-on-exec on it.
///
/// Errors: `EBADF` when `fd` is not open; `AlreadyExists` when it has close-on-exec set,
/// which no descriptor inherited across `exec` can have: it was opened (or taken) in this
/// process, and belongs to something else.
pub(crate) fn take_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    // Check and take under one lock, so two threads cannot both take the same number.
    static TAKING: Mutex<()> = Mutex::new(());
    let _alone = TAKING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    if fd_flags(fd)? & libc::FD_CLOEXEC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("descriptor {fd} was opened by this process, not inherited"),
        ));
    }
    // SAFETY: `fd` is open and lacks close-on-exec, so it came through `exec` from the
    // parent, which handed it to this process by naming it: std, mio and socket2 open
    // every descriptor of this process with close-on-exec, so none of them owns it. The
    // lock above and the close-on-exec flag set next make this the only owner: a later
    // call for the same number finds the flag and refuses.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_cloexec(owned.as_fd())?;
    Ok(owned)
}

/// Unset the environment variables `names` if this process has one thread (the caller),
/// and say whether it did. With other threads, any of which may read the environment,
/// the variables are left as they are.
pub(crate) fn unset_env_while_alone(names: &[&str]) -> bool {
    // Linux lists the process's threads in /proc/self/task; unreadable counts as "not
    // alone". Only this thread could start another, and it is busy here.
    let alone = std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.count() == 1);
    if alone {
        for name in names {
            // SAFETY: the process has a single thread, this one, so no other thread reads
            // or writes the environment during the call.
            unsafe { env::remove_var(name) };
        }
    }
    alone
}

/// `recv(2)` with `flags` (`MSG_PEEK`, `MSG_DONTWAIT`, or 0) into `buf`: the bytes taken
/// (or seen, with `MSG_PEEK`).
pub(crate) fn recv_flags(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call, and the
    // descriptor is borrowed for it.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    // A negative count means failure, with the reason in errno.
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `recv` with `MSG_DONTWAIT`: what has already arrived on `fd`, without blocking
/// (`WouldBlock` if nothing has), even on a blocking socket.
pub(crate) fn recv_dontwait(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    recv_flags(fd, buf, libc::MSG_DONTWAIT)
}

/// `send` with `MSG_NOSIGNAL`: a peer that has gone yields `EPIPE` instead of raising
/// `SIGPIPE`.
pub(crate) fn send_nosignal(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole call, and the
    // descriptor is borrowed for it.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    // A negative count means failure, with the reason in errno.
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// The credentials of the peer of a connected Unix stream socket (`SO_PEERCRED`), as they
/// were when it connected.
pub(crate) fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the size passed in `len`, and the
    // descriptor is borrowed for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred)
}

/// Bytes written to socket `fd` that its peer has not taken yet (`SIOCOUTQ`: for TCP,
/// what is unsent or unacknowledged; for a Unix stream, what the peer has not read).
pub(crate) fn outq(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut queued: libc::c_int = 0;
    // SAFETY: `SIOCOUTQ` (on Linux the same request as `TIOCOUTQ`) writes one `int`
    // through the pointer, which is valid for the call; the descriptor is borrowed for it.
    let done = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if done < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(queued.max(0) as u64)
    }
}

/// Give the memory the allocator holds free back to the system (`malloc_trim(0)`).
pub(crate) fn malloc_trim() {
    // SAFETY: `malloc_trim` only releases memory the allocator holds free; it takes no
    // pointer and may be called from any thread at any time.
    unsafe { libc::malloc_trim(0) };
}

/// Send `signal` to process `pid`.
pub(crate) fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill takes no memory; it only sends a signal.
    if unsafe { libc::kill(pid, signal) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Start `exe` with `args` and exactly the environment `env` (entries `KEY=VALUE`) plus
/// `pid_var=<the new process's pid>`, with `fds` placed at descriptors `first`,
/// `first + 1`, … (close-on-exec cleared there); every other descriptor of this process
/// keeps its close-on-exec flag. This is how a binary upgrade hands its sockets on the
/// systemd way (`LISTEN_FDS`, `LISTEN_PID`), which names a pid only the child knows.
pub(crate) fn spawn_with_fds(
    exe: &Path,
    args: &[OsString],
    env: Vec<CString>,
    pid_var: &str,
    fds: &[BorrowedFd<'_>],
    first: RawFd,
) -> io::Result<Child> {
    let mut plan = ExecPlan::new(exe, args, env, pid_var, fds, first)?;
    let mut command = Command::new(exe);
    command.args(args);
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe calls (fcntl, dup2, getpid, execve) on memory `plan` prepared
    // before the fork; it allocates nothing. The descriptors it copies are borrowed by
    // `fds` until `spawn` returns, so they are open in the parent at the fork.
    unsafe { command.pre_exec(move || plan.exec()) };
    command.spawn()
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
    /// `<pid_var>=` followed by room for the child's pid, which only the child knows.
    pid_entry: Vec<u8>,
    /// The length of `<pid_var>=`: where the digits go.
    pid_at: usize,
    /// `envp` for execve, NULL-terminated; its last entry points into `pid_entry`.
    envp: Vec<*const libc::c_char>,
    /// Descriptors to place at `first`, `first + 1`, …
    sources: Vec<RawFd>,
    /// Scratch for the descriptors' temporary copies.
    scratch: Vec<RawFd>,
    /// Where the first source goes.
    first: RawFd,
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
        env: Vec<CString>,
        pid_var: &str,
        fds: &[BorrowedFd<'_>],
        first: RawFd,
    ) -> io::Result<ExecPlan> {
        let c = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL"))
        };
        let exe = c(exe.as_os_str().as_bytes())?;
        let mut args_c = vec![exe.clone()];
        for arg in args {
            args_c.push(c(arg.as_bytes())?);
        }
        let mut pid_entry = c(pid_var.as_bytes())?.into_bytes();
        pid_entry.push(b'=');
        let pid_at = pid_entry.len();
        pid_entry.resize(pid_at + 24, 0);
        let argv = args_c
            .iter()
            .map(|s| s.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        let envp = env
            .iter()
            .map(|s| s.as_ptr())
            .chain([pid_entry.as_ptr().cast(), std::ptr::null()])
            .collect();
        Ok(ExecPlan {
            exe,
            _args: args_c,
            argv,
            _env: env,
            pid_entry,
            pid_at,
            envp,
            scratch: vec![-1; fds.len()],
            sources: fds.iter().map(|fd| fd.as_raw_fd()).collect(),
            first,
        })
    }

    /// In the child: move the descriptors to `first`, `first + 1`, …, fill in the pid,
    /// and exec. Returns only on failure.
    fn exec(&mut self) -> io::Result<()> {
        let count = self.sources.len() as RawFd;
        // First copy every source above the target range, so that no move overwrites a
        // source not yet moved; then place each copy (dup2 clears close-on-exec).
        for (source, copy) in self.sources.iter().zip(self.scratch.iter_mut()) {
            // SAFETY: duplicating a descriptor that was open in the parent at the fork
            // (see `spawn_with_fds`); the copy is new, so it replaces nothing.
            *copy = unsafe { libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, self.first + count) };
            if *copy < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        for (index, copy) in self.scratch.iter().enumerate() {
            // SAFETY: in the child, which execs next: replacing whatever is at the target
            // number closes a descriptor no code of the child uses again.
            if unsafe { libc::dup2(*copy, self.first + index as RawFd) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: getpid takes nothing and cannot fail.
        let mut pid = unsafe { libc::getpid() } as u64;
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
            self.pid_entry[self.pid_at + i] = digits[len - 1 - i];
        }
        self.pid_entry[self.pid_at + len] = 0;
        // SAFETY: argv and envp are NULL-terminated arrays of pointers to NUL-terminated
        // strings owned by `self`, which outlives the call (execve returns only on
        // failure).
        unsafe { libc::execve(self.exe.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::IntoRawFd;

    #[test]
    fn poll_one_reports_a_pipe_readable_only_once_a_byte_is_in_it() {
        let (rx, mut tx) = io::pipe().expect("pipe");
        let fd = rx.as_raw_fd();
        assert_eq!(poll_one(fd, libc::POLLIN, 0).expect("poll"), 0);
        tx.write_all(b"x").expect("write");
        let found = poll_one(fd, libc::POLLIN, 1000).expect("poll");
        assert_ne!(found & libc::POLLIN, 0, "revents {found:#x}");
        // A slot left empty is ignored; the other is still reported.
        let mut fds = [PollFd::new(-1, libc::POLLIN), PollFd::new(fd, libc::POLLIN)];
        assert_eq!(poll(&mut fds, 0).expect("poll"), 1);
        assert_eq!(fds[0].revents(), 0);
    }

    #[test]
    fn only_a_descriptor_without_close_on_exec_is_taken_and_only_once() {
        // Opened here, close-on-exec as std opens everything: refused, and left open.
        let (rx, mut tx) = io::pipe().expect("pipe");
        let err = take_inherited(tx.as_raw_fd()).expect_err("opened here");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        tx.write_all(b"still open").expect("write");
        // As a parent hands it over: ownership given up, close-on-exec cleared.
        let rx = OwnedFd::from(rx);
        let cleared = nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty());
        nix::fcntl::fcntl(&rx, cleared).expect("clear close-on-exec");
        let raw = rx.into_raw_fd();
        let owned = take_inherited(raw).expect("inherited");
        assert_ne!(
            fd_flags(owned.as_fd().as_raw_fd()).expect("flags") & libc::FD_CLOEXEC,
            0
        );
        // Taken: a second call finds close-on-exec set and refuses.
        let again = take_inherited(raw).expect_err("taken twice");
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists, "{again}");
        let closed = 1_000_000;
        let err = take_inherited(closed).expect_err("not open");
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
    }

    #[test]
    fn set_nonblocking_makes_an_empty_pipe_read_would_block() {
        use std::io::Read;
        let (mut rx, _tx) = io::pipe().expect("pipe");
        set_nonblocking(rx.as_fd()).expect("nonblocking");
        let err = rx.read(&mut [0u8; 1]).expect_err("nothing to read");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}
