//! Listening descriptors inherited the systemd way (`sd_listen_fds`): `LISTEN_PID` names
//! this process and `LISTEN_FDS` counts descriptors starting at 3. A binary upgrade hands
//! its sockets to the new process the same way, so either parent works.
//!
//! This file only reads and clears the variables and takes the descriptors; binding and
//! serving them is the rest of `listener`'s job.

use std::env;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The first inherited descriptor, as systemd defines it.
pub const FIRST_FD: RawFd = 3;

/// What the environment says about inherited listeners.
#[derive(Debug)]
#[non_exhaustive]
pub enum Activation {
    /// No `LISTEN_FDS`: bind the configured addresses.
    None,
    /// `LISTEN_PID` names another process (the variables leaked from a parent): ignored,
    /// as systemd specifies.
    OtherProcess {
        /// The pid the variables were meant for.
        listen_pid: String,
    },
    /// Descriptors handed to this process, from fd 3 on.
    Fds(Vec<OwnedFd>),
}

/// Read `LISTEN_PID`/`LISTEN_FDS`, take the descriptors they name, and unset the
/// variables (also `LISTEN_FDNAMES`) so that child processes do not inherit them.
///
/// # Safety
///
/// Call at most once, before any other thread exists (it changes the environment), and
/// only when nothing else in the process owns descriptors 3 and up that the variables
/// name: they become owned by the returned values.
pub unsafe fn take() -> Result<Activation, String> {
    let pid = env::var("LISTEN_PID").ok();
    let fds = env::var("LISTEN_FDS").ok();
    // SAFETY: the caller guarantees no other thread reads or writes the environment.
    unsafe {
        env::remove_var("LISTEN_PID");
        env::remove_var("LISTEN_FDS");
        env::remove_var("LISTEN_FDNAMES");
    }
    let count = match parse(pid.as_deref(), fds.as_deref(), std::process::id())? {
        Parsed::None => return Ok(Activation::None),
        Parsed::OtherProcess(listen_pid) => return Ok(Activation::OtherProcess { listen_pid }),
        Parsed::Count(count) => count,
    };
    let mut taken = Vec::with_capacity(count);
    for fd in FIRST_FD..FIRST_FD + count as RawFd {
        // SAFETY: `fcntl(F_GETFD)` only queries the descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(format!(
                "LISTEN_FDS={count}, but descriptor {fd} is not open"
            ));
        }
        // Our own children get these only when handed over explicitly.
        // SAFETY: as above; setting FD_CLOEXEC on an open descriptor.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        // SAFETY: the caller guarantees nothing else owns the descriptors named.
        taken.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    Ok(Activation::Fds(taken))
}

/// What the two variables say, before any descriptor is touched.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// Not activated.
    None,
    /// Meant for that pid.
    OtherProcess(String),
    /// This many descriptors from fd 3.
    Count(usize),
}

/// Interpret `LISTEN_PID` and `LISTEN_FDS` for process `me`.
fn parse(pid: Option<&str>, fds: Option<&str>, me: u32) -> Result<Parsed, String> {
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(Parsed::None);
    };
    if pid.trim().parse::<u32>().ok() != Some(me) {
        return Ok(Parsed::OtherProcess(pid.to_string()));
    }
    match fds.trim().parse::<usize>() {
        Ok(0) => Ok(Parsed::None),
        Ok(count) if count <= 1024 => Ok(Parsed::Count(count)),
        _ => Err(format!("LISTEN_FDS={fds:?} is not a descriptor count")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_process_takes_the_descriptors() {
        assert_eq!(parse(Some("42"), Some("2"), 42), Ok(Parsed::Count(2)));
        assert_eq!(
            parse(Some("41"), Some("2"), 42),
            Ok(Parsed::OtherProcess("41".into()))
        );
        assert_eq!(parse(None, Some("2"), 42), Ok(Parsed::None));
        assert_eq!(parse(Some("42"), None, 42), Ok(Parsed::None));
        assert_eq!(parse(Some("42"), Some("0"), 42), Ok(Parsed::None));
        assert!(parse(Some("42"), Some("x"), 42).is_err());
    }
}
