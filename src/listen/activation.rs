//! Listening descriptors inherited the systemd way (`sd_listen_fds`): `LISTEN_PID` names
//! this process and `LISTEN_FDS` counts descriptors starting at 3. A binary upgrade hands
//! its sockets to the new process the same way, so either parent works.
//!
//! This file only reads and clears the variables and takes the descriptors; binding and
//! serving them is the rest of `listener`'s job.

use std::env;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::io::sys;

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
/// Call it first thing in `main`: the variables are unset only while the process has a
/// single thread (another thread may read the environment at any time); with more they
/// stay, naming this process, which no child takes for its own pid. Only the first call
/// takes anything (later ones return [`Activation::None`]), and only descriptors that
/// are open and not close-on-exec, as inherited ones are: a number this process opened
/// itself is an error, never a second owner.
pub fn take() -> Result<Activation, String> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Activation::None);
    }
    let pid = env::var("LISTEN_PID").ok();
    let fds = env::var("LISTEN_FDS").ok();
    sys::unset_env_while_alone(&["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]);
    let count = match parse(pid.as_deref(), fds.as_deref(), std::process::id())? {
        Parsed::None => return Ok(Activation::None),
        Parsed::OtherProcess(listen_pid) => return Ok(Activation::OtherProcess { listen_pid }),
        Parsed::Count(count) => count,
    };
    let mut taken = Vec::with_capacity(count);
    for fd in FIRST_FD..FIRST_FD + count as RawFd {
        // Our own children get these only when handed over explicitly: taking sets
        // close-on-exec.
        match sys::take_inherited(fd) {
            Ok(owned) => taken.push(owned),
            Err(err) if err.raw_os_error() == Some(libc::EBADF) => {
                return Err(format!(
                    "LISTEN_FDS={count}, but descriptor {fd} is not open"
                ));
            }
            Err(err) => return Err(format!("LISTEN_FDS={count}, but {err}")),
        }
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
