//! Starting and stopping a server: the builder, the running server's handle, and workers.
//!
//! The top layer: this module binds listeners, chooses a model and starts its workers, and
//! reads the server-wide gauges for the [`Running`] handle. It must not run any protocol
//! or loop itself (that is `reactor` and `threads`), and no module below imports it.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

use crate::listen::{self, SocketFile};
use crate::reactor::EventLoop;
use crate::worker::{Live, WakeFn, WorkerRun, WorkerSetup};
use crate::{Config, Handler, ListenAddr, Listener, Stats, reactor, threads};

/// A running worker's thread, which returns the worker's counters.
type WorkerThread = JoinHandle<io::Result<Stats>>;

/// Which concurrency model serves the clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Model {
    /// One thread, one `mio::Poll`, a slab of connections (per worker).
    #[default]
    Reactor,
    /// One blocking OS thread per client (std::net), the classic baseline.
    Threads,
}

/// Stops a running server from any thread. Cheap to clone.
///
/// ```
/// use std::thread;
/// use tcp_reactor::{Server, protocols::Echo};
///
/// let running = Server::new(Echo).bind("127.0.0.1:0".parse().unwrap())?;
/// let stop = running.stop_handle();
/// // Another thread (a signal handler, an admin command) decides when to stop.
/// thread::spawn(move || stop.stop());
/// let stats = running.wait()?;
/// assert_eq!(stats.accepted, 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct StopHandle {
    /// Raised once; every worker checks it after waking.
    flag: Arc<AtomicBool>,
    /// Raised when a successor takes the listeners: workers stop accepting only.
    handover: Arc<AtomicBool>,
    /// One wake-up per worker (a mio `Waker`, or a wake pipe for the threads model).
    wakers: Arc<Vec<WakeFn>>,
    /// One descriptor of every listening socket, for [`Running::listener_fds`]; closed
    /// when the server stops accepting, so that a stopped server's queue is not kept.
    sockets: Arc<Mutex<Vec<OwnedFd>>>,
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
        self.release_sockets();
        for wake in self.wakers.iter() {
            wake();
        }
    }

    /// Stop accepting, and keep serving the connections already accepted until they close
    /// or [`stop`](StopHandle::stop) is called. The listening sockets are closed here, not
    /// shut down: a process they were handed to goes on accepting from the same queues,
    /// and no client waiting in them is reset.
    pub fn stop_accepting(&self) {
        self.handover.store(true, Ordering::SeqCst);
        self.release_sockets();
        for wake in self.wakers.iter() {
            wake();
        }
    }

    /// Close this handle's own descriptors of the listening sockets.
    fn release_sockets(&self) {
        self.sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// True once [`stop`](StopHandle::stop) has been called.
    pub fn is_stopping(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Builds a server: a protocol, a model, limits and a worker count.
///
/// ```no_run
/// use std::time::Duration;
/// use tcp_reactor::{Config, Model, Server, protocols::Echo};
///
/// let config = Config::default()
///     .with_max_connections(1_000)
///     .with_idle_timeout(Some(Duration::from_secs(60)));
/// let running = Server::new(Echo)
///     .config(config)
///     .model(Model::Reactor)
///     .workers(2)
///     .bind("127.0.0.1:8866".parse().unwrap())?;
/// println!("listening on {}", running.local_addr());
/// let stats = running.wait()?;
/// println!("{stats}");
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
    /// Start paused, one turn per `POST /step` on the metrics endpoint (reactor only).
    step: bool,
    /// Serve TLS with this configuration; `None` serves plaintext.
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The draining flag the server sets as it stops, shared with whoever was given it.
    draining: crate::Draining,
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
            step: false,
            #[cfg(feature = "tls")]
            tls: None,
            draining: crate::Draining::new(),
        }
    }

    /// Share `draining` with the server: it is set as the server stops or hands its
    /// listeners over, and `/healthz` reads it. Give the same flag to a handler that
    /// behaves differently while draining (`protocols::Http::with_draining`).
    pub fn draining(mut self, draining: crate::Draining) -> Self {
        self.draining = draining;
        self
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

    /// Step mode (reactor model): every worker starts paused and runs one turn per
    /// `POST /step` to the metrics endpoint (or runs freely after `POST /run`), recording
    /// each turn in detail for the live page (docs/live.md). A stop still works while
    /// paused. [`listen`](Server::listen) refuses it with the threads model.
    pub fn step(mut self) -> Self {
        self.step = true;
        self
    }

    /// Run `n` independent workers (at least one: [`bind`](Server::bind) refuses 0). On a
    /// TCP address each accepts from a `SO_REUSEPORT` socket of its own, which the kernel
    /// fills by a hash of the client's address and port; on any other listener all share
    /// one socket, and whichever worker wakes first takes a client.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Serve TLS with `config` on every connection (feature `tls`): the handler still sees
    /// plaintext, and limits count plaintext bytes. Its ALPN protocols, certificates and
    /// versions are the caller's choice. Both models serve it.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Bind `addr` and start serving on background threads.
    ///
    /// Port 0 picks a free port: see [`Running::local_addr`]. An inconsistent [`Config`]
    /// or a worker count of 0 fails with [`InvalidInput`](io::ErrorKind::InvalidInput)
    /// holding a [`ConfigError`](crate::ConfigError) (see [`Config::validate`]).
    pub fn bind(self, addr: SocketAddr) -> io::Result<Running> {
        self.listen([Listener::tcp(addr)])
    }

    /// Bind every listener (TCP addresses, Unix socket paths, sockets handed in, inherited
    /// descriptors) and start serving them all on background threads.
    ///
    /// A TCP address gets one `SO_REUSEPORT` socket per worker, so the kernel spreads
    /// clients over the workers, after a probe bound without `SO_REUSEPORT`: an address
    /// another server listens on fails with [`AddrInUse`](io::ErrorKind::AddrInUse).
    /// Inherited `SO_REUSEPORT` sockets of one address are one listener again (more
    /// sockets than workers: each is served; fewer: more are bound). Any other listener is
    /// one socket whose queue every worker polls. Fails like
    /// [`bind`](Server::bind), and with `InvalidInput` when `listeners` is empty.
    pub fn listen(self, listeners: impl IntoIterator<Item = Listener>) -> io::Result<Running> {
        crate::config::validate_server(&self.config, self.workers)?;
        let bound = listen::bind_all(listeners, self.config.backlog, self.workers)?;
        if bound.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a server needs at least one listener",
            ));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let handover = Arc::new(AtomicBool::new(false));
        if self.step && self.model == Model::Threads {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "step mode needs the reactor model: the threads model has no turns",
            ));
        }
        let mut live = Live::new(self.workers, self.config.max_buffered);
        live.draining = self.draining.clone();
        let live = Arc::new(live);
        if self.step {
            live.watch.enable_step_mode();
        }
        let workers = self.workers;
        let mut setups = Vec::with_capacity(workers);
        for index in 0..workers {
            let mut listeners = Vec::new();
            for listener in &bound {
                listeners.extend(listener.for_worker(index, workers)?);
            }
            setups.push(WorkerSetup {
                index,
                workers,
                handler: Arc::clone(&self.handler),
                config: self.config.clone(),
                listeners,
                handover: Arc::clone(&handover),
                stop: Arc::clone(&stop),
                live: Arc::clone(&live),
                #[cfg(feature = "tls")]
                tls: self.tls.clone(),
            });
        }
        let mut sockets = Vec::new();
        for listener in &bound {
            sockets.extend(listener.descriptors()?);
        }
        let prepared = match self.model {
            Model::Reactor => reactor::prepare(setups)?,
            Model::Threads => threads::prepare(setups)?,
        };
        let (runs, wakers): (Vec<_>, Vec<_>) = prepared
            .into_iter()
            .map(|worker| (worker.run, worker.wake))
            .unzip();
        let stop_handle = StopHandle {
            flag: stop,
            handover,
            wakers: Arc::new(wakers),
            sockets: Arc::new(Mutex::new(sockets)),
        };
        let addrs: Vec<ListenAddr> = bound.iter().map(|b| b.addr.clone()).collect();
        let local_addr = addrs
            .iter()
            .find_map(|addr| match addr {
                ListenAddr::Tcp(addr) => Some(*addr),
                _ => None,
            })
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        let files = bound.into_iter().filter_map(|b| b.file).collect();
        let threads = spawn_workers(runs, &stop_handle)?;
        Ok(Running {
            local_addr,
            addrs,
            files,
            stop: stop_handle,
            live,
            threads,
        })
    }

    /// Bind `addr` and return a reactor to be driven on the calling thread, one
    /// [`turn`](EventLoop::turn) at a time, with a [`Poster`](crate::Poster) for other
    /// threads. Always the reactor model, with one worker.
    pub fn event_loop(self, addr: SocketAddr) -> io::Result<EventLoop<H>> {
        let bound = listen::bind_all([Listener::tcp(addr)], self.config.backlog, 1)?;
        let live = Arc::new(Live::new(1, self.config.max_buffered));
        EventLoop::new(WorkerSetup {
            #[cfg(feature = "tls")]
            tls: self.tls,
            index: 0,
            workers: 1,
            handler: self.handler,
            config: self.config,
            listeners: bound
                .iter()
                .map(|listener| listener.for_worker(0, 1))
                .collect::<io::Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect(),
            handover: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
            live,
        })
    }

    /// Bind `addr` and serve on the calling thread's behalf until stopped; returns the
    /// final stats.
    pub fn run(self, addr: SocketAddr) -> io::Result<Stats> {
        self.bind(addr)?.wait()
    }
}

/// A server that is serving. Dropping it stops it and waits for its workers.
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::TcpStream;
/// use tcp_reactor::{Server, protocols::Echo};
///
/// let running = Server::new(Echo).bind("127.0.0.1:0".parse().unwrap())?;
/// let mut client = TcpStream::connect(running.local_addr())?;
/// client.write_all(b"hello")?;
/// let mut reply = [0; 5];
/// client.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"hello");
/// drop(client);
/// let stats = running.stop()?;
/// assert_eq!(stats.accepted, 1);
/// assert_eq!(stats.bytes_out, 5);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Running {
    /// The first TCP address actually bound.
    local_addr: SocketAddr,
    /// Every listener's address, in the order given.
    addrs: Vec<ListenAddr>,
    /// Socket files to remove once the server has stopped (none after a handover).
    files: Vec<SocketFile>,
    /// Stops every worker.
    stop: StopHandle,
    /// Shared gauges.
    live: Arc<Live>,
    /// One thread per worker.
    threads: Vec<WorkerThread>,
}

impl Running {
    /// The address of the server's first TCP listener (`0.0.0.0:0` when it has none:
    /// see [`listen_addrs`](Running::listen_addrs)).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where every listener accepts, in the order the listeners were given.
    pub fn listen_addrs(&self) -> &[ListenAddr] {
        &self.addrs
    }

    /// A new descriptor of every listening socket, in the order the listeners were given
    /// (a TCP address's per-worker sockets one after another), to hand to a successor
    /// process, which serves them all whatever its worker count. Empty once the server
    /// has stopped accepting.
    pub fn listener_fds(&self) -> io::Result<Vec<OwnedFd>> {
        self.stop
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(OwnedFd::try_clone)
            .collect()
    }

    /// Hand the listeners over: stop accepting (the successor given
    /// [`listener_fds`](Running::listener_fds) accepts from the same queues), keep serving
    /// the connections held, and leave the Unix socket files in place for the successor.
    pub fn hand_over(&mut self) {
        self.live.draining.set(true);
        self.files.clear();
        self.stop.stop_accepting();
    }

    /// Report the server as draining (`/healthz` answers 503, a handler sharing the
    /// flag sends clients elsewhere) or, with `false`, as serving again: for an upgrade
    /// that has begun, and then failed. [`stop`](Running::stop) and
    /// [`hand_over`](Running::hand_over) set it themselves.
    pub fn set_draining(&self, draining: bool) {
        self.live.draining.set(draining);
    }

    /// True once a stop or an upgrade has begun (see [`set_draining`](Running::set_draining)).
    pub fn is_draining(&self) -> bool {
        self.live.draining.is_draining()
    }

    /// A handle that stops the server from any thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Connections open right now, over every worker.
    pub fn connections(&self) -> u64 {
        self.live.connections()
    }

    /// False once every worker has closed its listeners (after
    /// [`StopHandle::stop_accepting`] or a stop): from then on no connection is accepted,
    /// and [`connections`](Running::connections) only falls.
    pub fn is_accepting(&self) -> bool {
        self.live.accepting() > 0
    }

    /// Connections accepted so far, over every worker.
    pub fn accepted(&self) -> u64 {
        self.live.accepted()
    }

    /// Connections refused so far because the server was full.
    pub fn refused(&self) -> u64 {
        self.live.refused()
    }

    /// Connections accepted so far by each worker, in worker order.
    pub fn accepted_by_worker(&self) -> Vec<u64> {
        self.live.accepted_by_worker()
    }

    /// The server's counters now, summed over workers, without stopping it: each worker
    /// publishes its counters once per turn of its loop (under the threads model, a
    /// client's bytes and close count once it has closed).
    pub fn stats(&self) -> Stats {
        self.live_stats().snapshot().total
    }

    /// A handle that takes live [`Snapshot`](crate::metrics::Snapshot)s of this server from
    /// any thread, e.g. for [`metrics::serve`](crate::metrics::serve).
    pub fn live_stats(&self) -> crate::metrics::LiveStats {
        crate::metrics::LiveStats::new(Arc::clone(&self.live))
    }

    /// Stop gracefully and return the final stats, summed over workers.
    pub fn stop(self) -> io::Result<Stats> {
        self.live.draining.set(true);
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
        total.peak_connections = self.live.peak_connections();
        self.live.admission.fill(&mut total);
        self.remove_files();
        match first_error {
            Some(err) => Err(err),
            None => Ok(total),
        }
    }
}

impl Running {
    /// Remove the socket files this server made, now that nothing accepts on them.
    fn remove_files(&mut self) {
        for file in self.files.drain(..) {
            file.remove();
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
        self.remove_files();
    }
}

/// Start each worker on a thread of its own. If one cannot start, stop and join the ones
/// already running before reporting the failure.
fn spawn_workers(runs: Vec<WorkerRun>, stop: &StopHandle) -> io::Result<Vec<WorkerThread>> {
    let mut threads = Vec::with_capacity(runs.len());
    for (index, run) in runs.into_iter().enumerate() {
        let spawned = thread::Builder::new()
            .name(format!("tcp-reactor-{index}"))
            .spawn(run);
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(err) => {
                stop.stop();
                for thread in threads {
                    let _ = thread.join();
                }
                return Err(err);
            }
        }
    }
    Ok(threads)
}
