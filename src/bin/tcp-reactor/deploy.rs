//! The `serve` command's deployment side: which listeners it serves (`--addr`, repeated,
//! `unix:PATH`, or descriptors inherited through `LISTEN_FDS`), the pid file, and the
//! signals that stop it (SIGINT, SIGTERM) or upgrade it in place (SIGUSR2, which starts
//! the path this process was started as).
//!
//! Part of the command line, not the library: it only wires `tcp_reactor::listener` and a
//! [`Running`] server to the process's signals and files.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use log::{info, warn};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR2};
use signal_hook::iterator::Signals;
use tcp_reactor::activation::{self, Activation};
use tcp_reactor::upgrade;
use tcp_reactor::{Listener, Running, Stats};

/// How long `--stop-drain` serves on at least, even with no connection open, so that a
/// balancer checking `/healthz` every second or faster has seen the 503.
const BALANCER_NOTICE: Duration = Duration::from_secs(1);

/// How long a new process may take to start accepting before the upgrade is abandoned.
const UPGRADE_PATIENCE: Duration = Duration::from_secs(30);

/// How long a stop waits for an abandoned upgrade to have stopped the new process: its
/// SIGTERM grace, and time to reap it after SIGKILL.
const ABANDON_PATIENCE: Duration = Duration::from_secs(upgrade::STOP_GRACE.as_secs() + 5);

/// How often the control loop looks at a draining server's connection count.
const DRAIN_CHECK: Duration = Duration::from_millis(20);

/// What the process inherited from whoever started it, taken before any thread starts.
#[derive(Debug)]
pub(crate) struct Inherited {
    /// Listening descriptors named by `LISTEN_FDS`, or why there are none.
    activation: Activation,
    /// Where to say "accepting" when an old server started this one for an upgrade.
    ready: Option<OwnedFd>,
    /// The metrics endpoint's listening socket, handed over by an old server.
    pub(crate) metrics: Option<OwnedFd>,
    /// What an upgrade starts: the path this process was started as, resolved now.
    exe: io::Result<PathBuf>,
}

impl Inherited {
    /// Take `LISTEN_FDS`/`LISTEN_PID` and the upgrade's readiness and metrics descriptors,
    /// unset their variables so that no child inherits them, and resolve the path this
    /// process was started as. Call it first thing in `main`, before any thread exists:
    /// the variables are unset only then.
    pub(crate) fn take() -> io::Result<Inherited> {
        let activation =
            activation::take().map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
        let ready = upgrade::take_ready_fd();
        let metrics = upgrade::take_metrics_fd();
        Ok(Inherited {
            activation,
            ready,
            metrics,
            exe: upgrade::started_as(),
        })
    }

    /// Log what an upgrade will start. Called once the server listens (a start-up error
    /// stays the only line) and before it says so (a reader of that line sees a process
    /// whose start-up logging is done).
    pub(crate) fn log_upgrade_path(&self) {
        match &self.exe {
            Ok(exe) => info!("SIGUSR2 upgrades this server by starting {}", exe.display()),
            Err(err) => warn!("SIGUSR2 cannot upgrade: the path of this program is unknown: {err}"),
        }
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
    /// `--stop-drain`.
    pub(crate) stop_drain: Duration,
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
    /// The new process of an upgrade has been started, with this pid.
    Started(u32),
    /// An upgrade attempt ended: the new process's pid, or why it failed.
    Upgraded(io::Result<u32>),
}

/// Where the process is in its life.
enum State {
    /// Accepting; an upgrade may start.
    Serving,
    /// A new process is starting. Dropping `abandon` tells the upgrade to stop it.
    Upgrading {
        /// The write end of the pipe the upgrade watches.
        abandon: io::PipeWriter,
        /// The new process, once started.
        pid: Option<u32>,
    },
    /// Handed over: serving what is held until it closes or this deadline.
    Draining(Instant),
    /// Asked to stop with `--stop-drain`: still serving, reported draining, since the
    /// first instant until no connection is open (and a balancer has had time to see the
    /// 503) or the second.
    StopDraining(Instant, Instant),
}

/// Write the pid file, tell an upgrading parent that this process accepts, then serve
/// until SIGINT/SIGTERM or a completed upgrade; return the stats. `metrics` is the metrics
/// endpoint's listening socket, handed to a successor with the listeners.
pub(crate) fn run(
    mut running: Running,
    mut signals: Signals,
    deploy: &Deploy,
    inherited: Inherited,
    metrics: Option<BorrowedFd<'_>>,
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
                State::Serving => match &inherited.exe {
                    Ok(exe) => {
                        info!(
                            "SIGUSR2: starting {} to take over the listeners",
                            exe.display()
                        );
                        // A balancer's health check sees the upgrade from now on.
                        running.set_draining(true);
                        match start_upgrade(&running, exe, metrics, tx.clone()) {
                            Ok(abandon) => state = State::Upgrading { abandon, pid: None },
                            Err(err) => {
                                running.set_draining(false);
                                warn!("upgrade failed, this process keeps serving: {err}");
                            }
                        }
                    }
                    Err(err) => {
                        warn!("SIGUSR2 ignored: the path of this program is unknown: {err}")
                    }
                },
                State::Upgrading { .. } | State::Draining(_) => {
                    info!("SIGUSR2 ignored: an upgrade is already under way");
                }
                State::StopDraining(..) => info!("SIGUSR2 ignored: the server is stopping"),
            },
            Ok(Event::Signal(signal))
                if matches!(state, State::Serving) && !deploy.stop_drain.is_zero() =>
            {
                info!(
                    "signal {signal}: draining for up to {:?}, then stopping (a second signal stops at once)",
                    deploy.stop_drain
                );
                running.set_draining(true);
                let now = Instant::now();
                state = State::StopDraining(now, now + deploy.stop_drain);
            }
            Ok(Event::Signal(signal)) => {
                running.set_draining(true);
                info!("signal {signal}: stopping");
                if let State::Upgrading { abandon, pid } = state {
                    abandon_upgrade(&mut running, abandon, pid, &rx, deploy);
                }
                break;
            }
            Ok(Event::Started(pid)) => {
                info!(
                    "new server process {pid} started; waiting up to {UPGRADE_PATIENCE:?} for it to accept"
                );
                if let State::Upgrading { pid: started, .. } = &mut state {
                    *started = Some(pid);
                }
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
                running.set_draining(false);
                warn!("upgrade failed, this process keeps serving: {err}");
                state = State::Serving;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let State::StopDraining(since, deadline) = state {
            let open = running.connections();
            // A balancer checks health every so often: until it has seen the 503 it may
            // still send a client, which a stop would cut off.
            let noticed = since.elapsed() >= BALANCER_NOTICE.min(deploy.stop_drain);
            if open == 0 && noticed {
                info!("drained: no connection open; stopping");
                break;
            }
            if Instant::now() >= deadline {
                info!("stop drain over: stopping with {open} connection(s) open");
                break;
            }
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

/// A stop during an upgrade: stop the new process unless it is already accepting, and
/// wait until it has, so that no half-started process keeps the listening sockets after
/// this one exits. One that reported accepting in the meantime is a server: it keeps the
/// sockets, and this process hands them over before it stops.
fn abandon_upgrade(
    running: &mut Running,
    abandon: io::PipeWriter,
    pid: Option<u32>,
    events: &mpsc::Receiver<Event>,
    deploy: &Deploy,
) {
    let which = pid.map_or("the new process".to_string(), |pid| {
        format!("new process {pid}")
    });
    info!("an upgrade is under way: stopping {which}, which has not reported accepting");
    drop(abandon);
    let deadline = Instant::now() + ABANDON_PATIENCE;
    let mut pid = pid;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(Event::Started(started)) => pid = Some(started),
            Ok(Event::Upgraded(Ok(new))) => {
                info!("new server process {new} reported accepting first; it keeps the listeners");
                running.hand_over();
                return;
            }
            Ok(Event::Upgraded(Err(err))) => {
                info!("upgrade abandoned: {err}");
                // It may have written the pid file before it was stopped.
                if let (Some(path), Some(pid)) = (&deploy.pid_file, pid) {
                    upgrade::remove_pid_file(path, pid);
                }
                return;
            }
            Ok(Event::Signal(_)) => {}
            Err(_) => break,
        }
    }
    warn!("{which} was not confirmed stopped; stopping anyway");
}

/// Start the new process on a thread of its own; its pid and its outcome arrive as
/// events. Returns the write end of the pipe whose closing abandons the upgrade.
fn start_upgrade(
    running: &Running,
    exe: &Path,
    metrics: Option<BorrowedFd<'_>>,
    events: mpsc::Sender<Event>,
) -> io::Result<io::PipeWriter> {
    let fds = running.listener_fds()?;
    let metrics = metrics.map(|fd| fd.try_clone_to_owned()).transpose()?;
    let (abandoned, abandon) = io::pipe()?;
    let exe = exe.to_path_buf();
    thread::spawn(move || {
        let args: Vec<OsString> = std::env::args_os().skip(1).collect();
        let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
        let metrics = metrics.as_ref().map(|fd| fd.as_fd());
        let outcome = upgrade::start_successor(&exe, &args, &borrowed, metrics)
            .and_then(|starting| {
                let _ = events.send(Event::Started(starting.id()));
                starting.wait_ready(UPGRADE_PATIENCE, Some(abandoned.as_fd()))
            })
            .map(|child| child.id())
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", exe.display())));
        let _ = events.send(Event::Upgraded(outcome));
    });
    Ok(abandon)
}
