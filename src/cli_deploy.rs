//! The `serve` command's deployment side: which listeners it serves (`--addr`, repeated,
//! `unix:PATH`, or descriptors inherited through `LISTEN_FDS`), the pid file, and the
//! signals that stop it (SIGINT, SIGTERM) or upgrade it in place (SIGUSR2).
//!
//! Part of the command line, not the library: it only wires `tcp_reactor::listener` and a
//! [`Running`] server to the process's signals and files.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use log::{info, warn};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR2};
use signal_hook::iterator::Signals;
use tcp_reactor::activation::{self, Activation};
use tcp_reactor::upgrade;
use tcp_reactor::{Listener, Running, Stats};

/// How long a new process may take to start accepting before the upgrade is abandoned.
const UPGRADE_PATIENCE: Duration = Duration::from_secs(30);

/// How often the control loop looks at a draining server's connection count.
const DRAIN_CHECK: Duration = Duration::from_millis(20);

/// What the process inherited from whoever started it, taken before any thread starts.
#[derive(Debug)]
pub(crate) struct Inherited {
    /// Listening descriptors named by `LISTEN_FDS`, or why there are none.
    activation: Activation,
    /// Where to say "accepting" when an old server started this one for an upgrade.
    ready: Option<OwnedFd>,
}

impl Inherited {
    /// Take `LISTEN_FDS`/`LISTEN_PID` and the upgrade's readiness descriptor, and unset
    /// their variables so that no child inherits them.
    ///
    /// # Safety
    ///
    /// Call once, first thing in `main`, before any thread exists.
    pub(crate) unsafe fn take() -> io::Result<Inherited> {
        // SAFETY: the caller guarantees a single thread and a single call.
        let activation = unsafe { activation::take() }
            .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
        // SAFETY: as above.
        let ready = unsafe { upgrade::take_ready_fd() };
        Ok(Inherited { activation, ready })
    }
}

/// The deployment flags of `serve`.
#[derive(Debug, Clone)]
pub(crate) struct Deploy {
    /// `--addr` values: addresses and `unix:PATH`s.
    pub(crate) addrs: Vec<String>,
    /// `--unix-mode`, octal.
    pub(crate) unix_mode: Option<u32>,
    /// `--pid-file`.
    pub(crate) pid_file: Option<PathBuf>,
    /// `--drain-timeout`.
    pub(crate) drain_timeout: Duration,
}

/// Parse `--unix-mode` (octal, as chmod takes it: `660`, `0660`).
pub(crate) fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("{text:?} is not an octal permission mode like 660"))
}

/// The listeners to serve: inherited descriptors when `LISTEN_FDS` names this process,
/// otherwise every `--addr`.
pub(crate) fn listeners(deploy: &Deploy, inherited: &mut Inherited) -> io::Result<Vec<Listener>> {
    match std::mem::replace(&mut inherited.activation, Activation::None) {
        Activation::Fds(fds) => {
            let from = if inherited.ready.is_some() {
                "the previous server (binary upgrade)"
            } else {
                "the service manager (socket activation)"
            };
            info!(
                "serving {} listening socket(s) inherited from {from} through LISTEN_FDS, instead of binding --addr",
                fds.len()
            );
            let upgrade = inherited.ready.is_some();
            Ok(fds
                .into_iter()
                .map(|fd| {
                    let listener = Listener::inherited(fd);
                    // After an upgrade, the socket files are ours to remove on stop.
                    if upgrade {
                        listener.remove_file_on_stop()
                    } else {
                        listener
                    }
                })
                .collect())
        }
        other => {
            if let Activation::OtherProcess { listen_pid } = other {
                info!(
                    "ignoring LISTEN_FDS: LISTEN_PID={listen_pid} is not this process ({})",
                    std::process::id()
                );
            }
            deploy
                .addrs
                .iter()
                .map(|addr| {
                    let listener: Listener = addr
                        .parse()
                        .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
                    Ok(match deploy.unix_mode {
                        Some(mode) => listener.mode(mode),
                        None => listener,
                    })
                })
                .collect()
        }
    }
}

/// Signals the control loop handles, registered before the server starts so that none of
/// them can kill the process with its default action.
pub(crate) fn signals() -> io::Result<Signals> {
    Signals::new([SIGINT, SIGTERM, SIGUSR2])
}

/// What the control loop waits for.
enum Event {
    /// A signal arrived.
    Signal(i32),
    /// An upgrade attempt ended: the new process's pid, or why it failed.
    Upgraded(io::Result<u32>),
}

/// Where the process is in its life.
enum State {
    /// Accepting; an upgrade may start.
    Serving,
    /// A new process is starting.
    Upgrading,
    /// Handed over: serving what is held until it closes or this deadline.
    Draining(Instant),
}

/// Write the pid file, tell an upgrading parent that this process accepts, then serve
/// until SIGINT/SIGTERM or a completed upgrade; return the stats.
pub(crate) fn run(
    mut running: Running,
    mut signals: Signals,
    deploy: &Deploy,
    inherited: Inherited,
) -> io::Result<Stats> {
    let me = std::process::id();
    if let Some(path) = &deploy.pid_file {
        upgrade::write_pid_file(path, me).map_err(|err| {
            io::Error::new(err.kind(), format!("pid file {}: {err}", path.display()))
        })?;
    }
    if let Some(ready) = inherited.ready
        && let Err(err) = upgrade::announce_ready(ready)
    {
        warn!("could not tell the previous server that this one accepts: {err}");
    }
    let (tx, rx) = mpsc::channel();
    let signal_handle = signals.handle();
    let signal_tx = tx.clone();
    thread::spawn(move || {
        for signal in signals.forever() {
            if signal_tx.send(Event::Signal(signal)).is_err() {
                break;
            }
        }
    });
    let mut state = State::Serving;
    loop {
        match rx.recv_timeout(DRAIN_CHECK) {
            Ok(Event::Signal(SIGUSR2)) => match state {
                State::Serving => {
                    info!("SIGUSR2: starting a new server process to take over the listeners");
                    start_upgrade(&running, tx.clone());
                    state = State::Upgrading;
                }
                State::Upgrading | State::Draining(_) => {
                    info!("SIGUSR2 ignored: an upgrade is already under way");
                }
            },
            Ok(Event::Signal(signal)) => {
                info!("signal {signal}: stopping");
                break;
            }
            Ok(Event::Upgraded(Ok(pid))) => {
                info!(
                    "new server process {pid} is accepting; this one ({me}) stops accepting and serves its {} connection(s) for up to {:?}",
                    running.connections(),
                    deploy.drain_timeout
                );
                running.hand_over();
                state = State::Draining(Instant::now() + deploy.drain_timeout);
            }
            Ok(Event::Upgraded(Err(err))) => {
                warn!("upgrade failed, this process keeps serving: {err}");
                state = State::Serving;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let State::Draining(deadline) = state {
            let open = running.connections();
            // Until every worker has closed its listeners it may still accept a client.
            if open == 0 && !running.is_accepting() {
                info!("every connection has closed; exiting");
                break;
            }
            if Instant::now() >= deadline {
                info!("drain timeout: closing the last {open} connection(s) gracefully");
                break;
            }
        }
    }
    signal_handle.close();
    let stats = running.stop();
    if let Some(path) = &deploy.pid_file {
        upgrade::remove_pid_file(path, me);
    }
    stats
}

/// Start the new process on a thread of its own; its outcome arrives as an event.
fn start_upgrade(running: &Running, events: mpsc::Sender<Event>) {
    let fds = running.listener_fds();
    thread::spawn(move || {
        let outcome = fds.and_then(|fds| {
            let exe = upgrade::current_exe()?;
            let args: Vec<OsString> = std::env::args_os().skip(1).collect();
            let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
            let child = upgrade::start_successor(&exe, &args, &borrowed, UPGRADE_PATIENCE)
                .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", exe.display())))?;
            Ok(child.id())
        });
        let _ = events.send(Event::Upgraded(outcome));
    });
}
