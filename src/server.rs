//! Starting and stopping a server: the builder, the running server's handle, and workers.
//!
//! This module binds listeners and spawns the threads of the chosen model; it must not run
//! any protocol or loop itself (that is `reactor` and `threads`).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};

use socket2::{Domain, Protocol, Socket, Type};

use crate::{Config, Handler, Stats, mailbox, reactor, threads};

/// Which concurrency model serves the clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Model {
    /// One thread, one `mio::Poll`, a slab of connections (per worker).
    #[default]
    Reactor,
    /// One blocking OS thread per client (std::net), the classic baseline.
    Threads,
}

/// Live gauges of a running server, readable from any thread.
#[derive(Debug, Default)]
pub struct Live {
    /// Connections open right now.
    pub connections: AtomicU64,
    /// Most connections open at once so far, server-wide.
    pub peak_connections: AtomicU64,
    /// Connections accepted so far.
    pub accepted: AtomicU64,
    /// Connections refused so far because the server was full.
    pub refused: AtomicU64,
    /// Connections accepted so far by each worker.
    pub accepted_by_worker: Vec<AtomicU64>,
}

impl Live {
    /// Gauges for a server of `workers` workers.
    pub(crate) fn new(workers: usize) -> Self {
        Live {
            accepted_by_worker: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            ..Live::default()
        }
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

    pub(crate) fn closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// A wake-up function for one worker, called after the stop flag is raised.
type WakeFn = Box<dyn Fn() + Send + Sync>;

/// Stops a running server from any thread. Cheap to clone.
#[derive(Clone)]
pub struct StopHandle {
    /// Raised once; every worker checks it after waking.
    flag: Arc<AtomicBool>,
    /// One wake-up per worker (a mio `Waker`, or a self-connect for the threads model).
    wakers: Arc<Vec<WakeFn>>,
}

impl fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopping", &self.is_stopping())
            .field("workers", &self.wakers.len())
            .finish()
    }
}

impl StopHandle {
    /// Ask the server to stop: stop accepting, flush and close every connection.
    /// Returns at once; [`Running::wait`] collects the result.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        for wake in self.wakers.iter() {
            wake();
        }
    }

    /// True once [`stop`](StopHandle::stop) has been called.
    pub fn is_stopping(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Everything one worker needs, whatever its model.
pub(crate) struct WorkerSetup<H> {
    /// Index of this worker, `0..workers`.
    pub(crate) index: usize,
    /// How many workers share the server (for routing messages between them).
    pub(crate) workers: usize,
    /// The protocol.
    pub(crate) handler: Arc<H>,
    /// Limits.
    pub(crate) config: Config,
    /// This worker's own listener (bound with `SO_REUSEPORT` when there are several).
    pub(crate) listener: std::net::TcpListener,
    /// Raised when the server must stop.
    pub(crate) stop: Arc<AtomicBool>,
    /// Shared gauges.
    pub(crate) live: Arc<Live>,
    /// State shared by all workers of this server (message routing between them).
    pub(crate) shared: Arc<Shared>,
}

/// State shared by every worker of one server.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Reactor model: one mailbox per worker, for `send_to` across workers.
    pub(crate) mailboxes: mailbox::Mailboxes,
    /// Threads model: every live client, for `send_to` between client threads.
    pub(crate) registry: threads::Registry,
}

/// A worker that has been built but not started, with the function that wakes it.
pub(crate) struct Prepared {
    /// Runs the worker to completion on the current thread.
    pub(crate) run: Box<dyn FnOnce() -> io::Result<Stats> + Send>,
    /// Wakes the worker so it notices the stop flag.
    pub(crate) wake: WakeFn,
}

/// Builds a server: a protocol, a model, limits and a worker count.
///
/// ```no_run
/// use tcp_reactor::{protocols::Echo, Server};
///
/// let running = Server::new(Echo).bind("127.0.0.1:8866".parse().unwrap())?;
/// println!("listening on {}", running.local_addr());
/// let stats = running.wait()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Server<H> {
    /// The protocol, shared by every connection and worker.
    handler: Arc<H>,
    /// Limits and timeouts.
    config: Config,
    /// Reactor or threads.
    model: Model,
    /// Independent event loops (or accept loops) sharing the port.
    workers: usize,
}

impl<H: Handler> Server<H> {
    /// A server for `handler`, with the reactor model, one worker and default limits.
    pub fn new(handler: H) -> Self {
        Server::from_arc(Arc::new(handler))
    }

    /// Like [`new`](Server::new), for a handler the caller keeps a reference to.
    pub fn from_arc(handler: Arc<H>) -> Self {
        Server {
            handler,
            config: Config::default(),
            model: Model::Reactor,
            workers: 1,
        }
    }

    /// Use these limits and timeouts.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Serve with this model.
    pub fn model(mut self, model: Model) -> Self {
        self.model = model;
        self
    }

    /// Run `n` independent workers (at least one), each with its own listener on the same
    /// address (`SO_REUSEPORT`); the kernel spreads connections between them.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Bind `addr` and start serving on background threads.
    ///
    /// Port 0 picks a free port: see [`Running::local_addr`].
    pub fn bind(self, addr: SocketAddr) -> io::Result<Running> {
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Live::new(self.workers));
        let first = listen(addr, &self.config, self.workers > 1)?;
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..self.workers {
            // Later workers bind the port the first one got (it may have been 0).
            listeners.push(listen(local_addr, &self.config, true)?);
        }
        let workers = listeners.len();
        let shared = Arc::new(Shared {
            mailboxes: mailbox::Mailboxes::new(workers),
            registry: threads::Registry::default(),
        });
        let mut runs = Vec::with_capacity(workers);
        let mut wakers = Vec::with_capacity(workers);
        for (index, listener) in listeners.into_iter().enumerate() {
            let setup = WorkerSetup {
                index,
                workers,
                handler: Arc::clone(&self.handler),
                config: self.config.clone(),
                listener,
                stop: Arc::clone(&stop),
                live: Arc::clone(&live),
                shared: Arc::clone(&shared),
            };
            let prepared = match self.model {
                Model::Reactor => reactor::prepare(setup)?,
                Model::Threads => threads::prepare(setup)?,
            };
            wakers.push(prepared.wake);
            runs.push(prepared.run);
        }
        let stop_handle = StopHandle {
            flag: stop,
            wakers: Arc::new(wakers),
        };
        let mut threads = Vec::with_capacity(workers);
        for (index, run) in runs.into_iter().enumerate() {
            let spawned = thread::Builder::new()
                .name(format!("tcp-reactor-{index}"))
                .spawn(run);
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(err) => {
                    // Stop the workers already running before reporting the failure.
                    stop_handle.stop();
                    for thread in threads {
                        let _ = thread.join();
                    }
                    return Err(err);
                }
            }
        }
        Ok(Running {
            local_addr,
            stop: stop_handle,
            live,
            threads,
        })
    }

    /// Bind `addr` and serve on the calling thread's behalf until stopped; returns the
    /// final stats.
    pub fn run(self, addr: SocketAddr) -> io::Result<Stats> {
        self.bind(addr)?.wait()
    }
}

/// A server that is serving. Dropping it stops it and waits for its workers.
#[derive(Debug)]
pub struct Running {
    /// The address actually bound.
    local_addr: SocketAddr,
    /// Stops every worker.
    stop: StopHandle,
    /// Shared gauges.
    live: Arc<Live>,
    /// One thread per worker.
    threads: Vec<JoinHandle<io::Result<Stats>>>,
}

impl Running {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops the server from any thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Live gauges: connections open now, accepted and refused so far.
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// Connections accepted so far by each worker, in worker order.
    pub fn accepted_by_worker(&self) -> Vec<u64> {
        self.live
            .accepted_by_worker
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect()
    }

    /// Connections open right now.
    pub fn connections(&self) -> u64 {
        self.live.connections.load(Ordering::Relaxed)
    }

    /// Stop gracefully and return the final stats, summed over workers.
    pub fn stop(self) -> io::Result<Stats> {
        self.stop.stop();
        self.wait()
    }

    /// Wait until the server stops (through a [`StopHandle`]) and return its stats: the
    /// workers' counters summed, and the server-wide peak of open connections.
    pub fn wait(mut self) -> io::Result<Stats> {
        let mut total = Stats::default();
        let mut first_error = None;
        for thread in std::mem::take(&mut self.threads) {
            match thread.join() {
                Ok(Ok(stats)) => total += &stats,
                Ok(Err(err)) => {
                    first_error.get_or_insert(err);
                }
                Err(_) => {
                    first_error.get_or_insert(io::Error::other("a worker thread panicked"));
                }
            }
        }
        // Workers' peaks need not coincide; the shared count saw the real one.
        total.peak_connections = self.live.peak_connections.load(Ordering::Relaxed);
        match first_error {
            Some(err) => Err(err),
            None => Ok(total),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop.stop();
            for thread in self.threads.drain(..) {
                let _ = thread.join();
            }
        }
    }
}

/// Create a listening socket on `addr` with `SO_REUSEADDR`, and `SO_REUSEPORT` when
/// several workers share the address.
fn listen(
    addr: SocketAddr,
    config: &Config,
    reuse_port: bool,
) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // An IPv6 listener serves IPv6 only; bind 0.0.0.0 separately for IPv4.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(config.backlog)?;
    Ok(socket.into())
}
