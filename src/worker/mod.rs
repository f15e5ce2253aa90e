//! What every worker is given, whatever its model: its setup, the server-wide gauges it
//! updates, and the shape in which it is handed back to the server before it starts.
//!
//! A leaf: both models and the server import it, and it imports neither. It must not hold
//! any model's own state (the reactor's mailboxes, the threads model's registry): each
//! model builds and shares that among its own workers.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) mod drain;
pub(crate) mod watch;

use crate::budget::Budget;
use crate::io::stream::BlockingListener;
use crate::{Config, Stats};

/// Server-wide gauges, written by every worker and read through [`Running`]'s methods.
///
/// [`Running`]: crate::Running
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// Connections open right now; also the reservation that enforces `max_connections`.
    connections: AtomicU64,
    /// Most connections open at once so far, server-wide.
    peak_connections: AtomicU64,
    /// Connections accepted so far.
    accepted: AtomicU64,
    /// Connections refused so far because the server was full.
    refused: AtomicU64,
    /// Connections accepted so far by each worker, to show how the kernel spread them.
    accepted_by_worker: Vec<AtomicU64>,
    /// Bytes held in connection buffers, server-wide, against `Config::max_buffered`.
    pub(crate) budget: Budget,
    /// Each worker's counters as of its last turn, for live statistics: written once per
    /// turn by its worker, read by [`Running::stats`](crate::Running::stats).
    published: Vec<Mutex<Stats>>,
    /// Workers that still hold listeners: once 0, every connection the server will ever
    /// accept is counted in `connections`.
    accepting: AtomicUsize,
    /// What the live page sees of each worker's loop, and the step mode's controls.
    pub(crate) watch: crate::worker::watch::Watch,
    /// The per-address limit's table and the admission counters (PROXY, per address).
    pub(crate) admission: crate::rules::per_address::Admission,
    /// Set once a stop or an upgrade begins: `/healthz` answers 503.
    pub(crate) draining: crate::Draining,
}

impl Live {
    /// Gauges for a server of `workers` workers.
    pub(crate) fn new(workers: usize, max_buffered: usize) -> Self {
        Live {
            accepted_by_worker: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            budget: Budget::new(max_buffered, workers),
            published: (0..workers).map(|_| Mutex::default()).collect(),
            accepting: AtomicUsize::new(workers),
            watch: crate::worker::watch::Watch::new(workers),
            ..Live::default()
        }
    }

    /// Publish `worker`'s counters as they stand (once per turn of its loop, not per
    /// message: one uncontended lock).
    pub(crate) fn publish(&self, worker: usize, stats: &Stats) {
        if let Some(slot) = self.published.get(worker) {
            slot.lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .clone_from(stats);
        }
    }

    /// Add to `worker`'s published counters (the threads model, whose client threads report
    /// once, as they end).
    pub(crate) fn add_published(&self, worker: usize, add: impl FnOnce(&mut Stats)) {
        if let Some(slot) = self.published.get(worker) {
            add(&mut slot.lock().unwrap_or_else(|poison| poison.into_inner()));
        }
    }

    /// Each worker's counters as last published, in worker order.
    pub(crate) fn published(&self) -> Vec<Stats> {
        self.published
            .iter()
            .map(|slot| {
                slot.lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .clone()
            })
            .collect()
    }

    /// Count a connection accepted by `worker` if fewer than `max` are open server-wide;
    /// return false (counting nothing) when the server is full. Atomic, so workers
    /// accepting at the same moment cannot together exceed the limit; the peak is taken
    /// from the same reservation, so it is the server-wide one.
    pub(crate) fn try_open(&self, worker: usize, max: usize) -> bool {
        let reserved =
            self.connections
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
                    (open < max as u64).then_some(open + 1)
                });
        let Ok(before) = reserved else {
            return false;
        };
        self.peak_connections
            .fetch_max(before + 1, Ordering::Relaxed);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        if let Some(count) = self.accepted_by_worker.get(worker) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// A connection counted by [`try_open`](Live::try_open) has closed.
    pub(crate) fn closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// A client was turned away because the server was full.
    pub(crate) fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A worker has closed its listeners for good.
    pub(crate) fn stopped_accepting(&self) {
        self.accepting.fetch_sub(1, Ordering::SeqCst);
    }

    /// Workers that may still accept.
    pub(crate) fn accepting(&self) -> usize {
        self.accepting.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub(crate) fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Most connections open at once so far, server-wide.
    pub(crate) fn peak_connections(&self) -> u64 {
        self.peak_connections.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections accepted so far by each worker, in worker order.
    pub(crate) fn accepted_by_worker(&self) -> Vec<u64> {
        self.accepted_by_worker
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect()
    }
}

/// Everything one worker needs from the server, whatever its model.
#[derive(Debug)]
pub(crate) struct WorkerSetup<H> {
    /// Index of this worker, `0..workers`: names its thread and its share of ids.
    pub(crate) index: usize,
    /// How many workers share the server (ids and messages are routed by it).
    pub(crate) workers: usize,
    /// Shared by every connection of every worker; sessions hold per-connection state.
    pub(crate) handler: Arc<H>,
    /// Limits and timeouts, the same for every worker.
    pub(crate) config: Config,
    /// This worker's listeners: a duplicate descriptor of each listening socket, which
    /// every worker shares.
    pub(crate) listeners: Vec<BlockingListener>,
    /// Raised when a successor serves the listeners: the worker closes its listener
    /// descriptors and serves the connections it holds until they close or a stop.
    pub(crate) handover: Arc<AtomicBool>,
    /// Raised once by a `StopHandle`; the worker checks it whenever it wakes.
    pub(crate) stop: Arc<AtomicBool>,
    /// Server-wide gauges, so the connection limit holds across workers.
    pub(crate) live: Arc<Live>,
    /// Serve TLS with this configuration; `None` serves plaintext.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

/// A wake-up function for one worker, called after the stop flag is raised.
pub(crate) type WakeFn = Box<dyn Fn() + Send + Sync>;

/// A worker's whole life, run on the thread it is given; returns its counters.
pub(crate) type WorkerRun = Box<dyn FnOnce() -> io::Result<Stats> + Send>;

/// A worker that has been built but not started, with the function that wakes it.
pub(crate) struct Prepared {
    /// Runs the worker to completion on the current thread.
    pub(crate) run: WorkerRun,
    /// Wakes the worker so it notices the stop flag.
    pub(crate) wake: WakeFn,
}
