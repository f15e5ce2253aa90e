//! The thread-per-client model: std::net, one blocking OS thread per client, running the
//! same [`Handler`]s as the reactor.
//!
//! This is the classic server the reactor is measured against, written to be a fair
//! opponent: small thread stacks, `TCP_NODELAY`, a read buffer that grows to
//! `Config::read_chunk`, one `write` per handler batch, and no shared lock on the path of
//! a message that stays within its own connection.
//!
//! This module owns the accept thread, the client threads and the registry through which
//! client threads reach each other (`Context::send_to`). It follows `rules` for everything
//! the reactor does too (feeding, limits, requests, accept errors, refusals). It must not
//! use `mio`, must not import the server that starts it, and must not hold a lock while
//! calling a handler. How the threads meet and how a stop proceeds: docs/architecture.md.
//!
//! # Files
//!
//! - `accept` — the accept thread: admitting, refusing, joining client threads;
//! - `connection` — one connection's thread: read, feed, write, deadlines, the close; with
//!   `connection/dial` (connections a handler dials, each on a thread of its own) and
//!   `connection/requests` (what a callback sends to and asks of connections by id),
//!   `connection/deadlines` (the timer, idle and handshake deadlines) and
//!   `connection/admission` (the PROXY header and per-address limits);
//! - `memory` — the budget for buffered bytes, as one client thread applies it;
//! - `peer` — a client's socket as other threads see it;
//! - `registry` — every live client by id;
//! - `wire` — what a client's bytes travel through: the socket, or TLS over it;
//! - `write` — the gate writers take turns at, and every blocking write.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::worker::{Live, Prepared, WorkerSetup};
use crate::{Config, ConnId, Handler, Stats};

mod accept;
mod connection;
mod memory;
mod peer;
mod registry;
mod wire;
mod write;

use accept::AcceptLoop;
use connection::Finished;
use registry::Registry;

/// Stack of each client thread. Handlers run on it; buffers live on the heap. Small stacks
/// are what let a thread-per-client server hold thousands of clients at all.
const CLIENT_STACK: usize = 128 * 1024;

/// What every thread of one worker shares.
#[derive(Debug)]
struct WorkerShared<H> {
    /// Index of the worker, to tell its clients from other workers' in the registry.
    index: usize,
    /// Shared by every client thread; each client's state is its session.
    handler: Arc<H>,
    /// Limits and timeouts.
    config: Config,
    /// Raised when the server must stop.
    stop: Arc<AtomicBool>,
    /// Readable once this worker's clients must end (a stop, or a broken listener), for
    /// threads that wait on a socket no read-side shutdown can wake (half-closed ones).
    ending: Arc<EndSignal>,
    /// Server-wide gauges.
    live: Arc<Live>,
    /// Every client of the server (all workers), for `send_to` and stops.
    registry: Arc<Registry>,
    /// Threads of connections this worker's handlers dialed, by connection id, joined by
    /// the accept thread once each sends its id on `done`. A thread is added while this
    /// lock is held, so its id never arrives before its handle is here.
    dialed: Mutex<HashMap<ConnId, JoinHandle<Finished>>>,
    /// Every client thread (accepted or dialed) sends its connection's id as it ends, so
    /// the accept thread can join it without waiting.
    done: Sender<ConnId>,
    /// Serve TLS with this configuration; `None` serves plaintext.
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// Build the threads-model workers of one server, sharing one registry.
pub(crate) fn prepare<H: Handler>(setups: Vec<WorkerSetup<H>>) -> io::Result<Vec<Prepared>> {
    let registry = Arc::new(Registry::default());
    if let Some(setup) = setups.first() {
        let registry = Arc::clone(&registry);
        let rows = Box::new(move || registry.rows());
        setup.live.watch.set_thread_rows(rows);
    }
    setups
        .into_iter()
        .map(|setup| prepare_one(setup, Arc::clone(&registry)))
        .collect()
}

/// Build one threads-model worker.
fn prepare_one<H: Handler>(setup: WorkerSetup<H>, registry: Arc<Registry>) -> io::Result<Prepared> {
    // The accept thread polls its listeners, so they need not block; a byte on the wake
    // pipe makes the poll return.
    for listener in &setup.listeners {
        listener.set_nonblocking(true)?;
    }
    let (wake_rx, wake_tx) = io::pipe()?;
    set_nonblocking(&wake_rx)?;
    set_nonblocking(&wake_tx)?;
    let (done_tx, done_rx) = mpsc::channel();
    let ending = Arc::new(EndSignal::new()?);
    let shared = Arc::new(WorkerShared {
        index: setup.index,
        handler: setup.handler,
        config: setup.config,
        stop: setup.stop,
        ending: Arc::clone(&ending),
        live: setup.live,
        registry,
        dialed: Mutex::new(HashMap::new()),
        done: done_tx,
        #[cfg(feature = "tls")]
        tls: setup.tls,
    });
    let registry_owner = Arc::clone(&shared.registry);
    let stopping = Arc::clone(&shared.stop);
    let index = shared.index;
    let wake = Box::new(move || {
        // A full pipe already holds a wake-up: nothing is lost when this write fails.
        let _ = (&wake_tx).write(&[1]);
        // Woken for a handover, clients go on; woken for a stop, each blocked read ends.
        if stopping.load(std::sync::atomic::Ordering::SeqCst) {
            ending.raise();
            registry_owner.shut_reads(index);
        }
    });
    let listeners = setup.listeners;
    let handover = setup.handover;
    let run = Box::new(move || {
        let mut worker = AcceptLoop {
            shared,
            listeners,
            wake: wake_rx,
            handover,
            clients: HashMap::new(),
            done_rx,
            stats: Stats::default(),
        };
        worker.run()
    });
    Ok(Prepared { run, wake })
}

/// A pipe that becomes readable for good once raised (nothing ever reads it), so every
/// thread that polls it, now or later, sees that its worker's clients must end.
#[derive(Debug)]
struct EndSignal {
    /// Polled for `POLLIN` by waiting threads.
    rx: io::PipeReader,
    /// Written once to raise the signal.
    tx: io::PipeWriter,
}

impl EndSignal {
    /// A signal not yet raised.
    fn new() -> io::Result<Self> {
        let (rx, tx) = io::pipe()?;
        // Raising never blocks, even if it was raised often enough to fill the pipe.
        set_nonblocking(&tx)?;
        Ok(EndSignal { rx, tx })
    }

    /// Make the signal readable (again, harmlessly, if it already is).
    fn raise(&self) {
        // A full pipe is readable already: nothing is lost when this write fails.
        let _ = (&self.tx).write(&[1]);
    }

    /// The descriptor to poll for `POLLIN`.
    fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.rx.as_raw_fd()
    }
}

/// Put a pipe end in nonblocking mode.
fn set_nonblocking(pipe: &impl AsFd) -> io::Result<()> {
    crate::io::sys::set_nonblocking(pipe.as_fd())
}
