//! The thread-per-client model: std::net, one blocking OS thread per client, running the
//! same [`Handler`]s as the reactor.
//!
//! This is the classic server the reactor is measured against, written to be a fair
//! opponent: small thread stacks, `TCP_NODELAY`, a read buffer that grows to
//! `Config::read_chunk`, one `write` per handler batch, and no shared lock on the path of
//! a message that stays within its own connection.
//!
//! This module owns the accept thread, the client threads and the [`Registry`] through
//! which client threads reach each other (`Context::send_to`). It must not use `mio`, and
//! it must not hold a lock while calling a handler.
//!
//! # How the pieces meet
//!
//! - The **accept thread** (the worker's `run`) blocks in `accept`, registers each client
//!   and spawns its thread. It reaps finished client threads as it goes and, on stop, joins
//!   every one and sums their counters.
//! - A **client thread** blocks in `read`, hands input to the handler, and writes the
//!   handler's batch of output at once. A batch ends with the input, or as soon as its
//!   output passes the high-water mark; the rest of the input is then fed after the write.
//!   Handler timers and the idle timeout become read timeouts.
//! - A client's socket lives in a [`Peer`], shared by its owner thread and by any thread
//!   that sends it a message. A [`Gate`] makes writes to one socket take turns, so two
//!   messages never interleave; a sender waits at most `Config::linger` for its turn and
//!   for the socket to take the bytes, and otherwise closes the stuck receiver
//!   ([`CloseReason::OutputLimit`]).
//! - **Stopping**: `wake` shuts down the listening socket (which makes a blocked `accept`
//!   return at once on Linux; elsewhere it connects to the listener instead) and shuts
//!   down the read side of every client of the worker, so each blocked `read` returns
//!   what has arrived, then 0. Each client thread answers the input that has arrived
//!   (reading without blocking), flushes, sends FIN, reads what is left, and closes with
//!   [`CloseReason::Shutdown`]. Unlike the reactor it cannot wait for the client's EOF:
//!   once the read side is shut, Linux answers any data arriving after our FIN with a
//!   reset (RFC 1122). The client has already received the replies and the FIN by then,
//!   so a client that closes on EOF sees EOF; a reply to a request sent after the stop is
//!   not owed.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::mem;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::handler::{Actions, CloseRequest, Outbox, TimerRequest};
use crate::server::{Live, Prepared, Shared, WorkerSetup};
use crate::{CloseReason, Config, ConnId, Context, Handler, Stats};

/// Stack of each client thread. Handlers run on it; buffers live on the heap. Small stacks
/// are what let a thread-per-client server hold thousands of clients at all.
const CLIENT_STACK: usize = 128 * 1024;

/// First size of a client's read buffer. It doubles, up to `Config::read_chunk`, each time
/// a read fills it, so idle clients stay cheap and busy ones read in large chunks.
const FIRST_READ_BUFFER: usize = 4 * 1024;

/// A client's input buffer above this capacity is released once empty.
const KEEP_INPUT: usize = 16 * 1024;

/// Capacity a client's output buffer keeps once a batch is written: a large reply does
/// not leave its size behind for the life of the connection.
const KEEP_OUTPUT: usize = 16 * 1024;

/// A read timeout this much longer than needed is still accepted, to save a `setsockopt`
/// per read: deadlines fire at most this late.
const TIMEOUT_SLACK: Duration = Duration::from_millis(5);

/// Every live client of a server's threads-model workers, by id, for `send_to`.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// The last id handed out; ids are never reused while the server runs.
    last_id: AtomicU64,
    /// Live clients. Read-locked per message sent to another client, write-locked only
    /// when a client comes or goes.
    peers: RwLock<HashMap<ConnId, Arc<Peer>>>,
}

impl Registry {
    /// A new id, unique within the server.
    fn next_id(&self) -> ConnId {
        ConnId(self.last_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Make `peer` reachable by its id.
    fn insert(&self, id: ConnId, peer: Arc<Peer>) {
        self.peers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, peer);
    }

    /// Forget a client; messages to it are dropped from now on.
    fn remove(&self, id: ConnId) {
        self.peers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// The client with this id, if it is still connected.
    fn get(&self, id: ConnId) -> Option<Arc<Peer>> {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        peers.get(&id).cloned()
    }

    /// Shut down the read side of every client of `worker`, so each blocked `read`
    /// returns 0 and its thread notices the stop flag.
    fn shut_reads(&self, worker: usize) {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        for peer in peers.values().filter(|peer| peer.worker == worker) {
            // An error means the socket is already shut or broken: its thread will notice.
            let _ = peer.stream.shutdown(Shutdown::Read);
        }
    }
}

/// One client's socket, shared by its own thread and by threads that send it messages.
#[derive(Debug)]
struct Peer {
    /// The connection. Reads and writes go through `&TcpStream`, so no lock is needed to
    /// read while another thread writes.
    stream: TcpStream,
    /// Which worker accepted it (stop wakes only its own clients).
    worker: usize,
    /// Writes take turns through this.
    gate: Gate,
    /// Set when a sender gave up on this client: its owner closes with `OutputLimit`.
    overflowed: AtomicBool,
}

impl Peer {
    /// Write a message from another client, waiting at most `patience` for a turn and
    /// for the socket to take the bytes. Returns the bytes written.
    fn deliver(&self, bytes: &[u8], patience: Duration) -> u64 {
        let deadline = Instant::now() + patience;
        let mut written = 0;
        let Some(_turn) = self.gate.enter(Some(deadline)) else {
            self.overflow();
            return written;
        };
        match write_all(&self.stream, bytes, Patience::Until(deadline), &mut written) {
            Ok(()) => {}
            Err(WriteError::Stalled) => self.overflow(),
            // The receiver is gone or broken; its own thread sees the error and closes.
            Err(WriteError::Failed(_)) => {}
        }
        written
    }

    /// Give up on a receiver that does not take its messages: mark it and wake its
    /// thread, which closes it with `OutputLimit` (as the reactor does when unsent output
    /// passes its cap).
    fn overflow(&self) {
        self.overflowed.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A turn-taking lock for writers of one socket, with a deadline for waiting.
///
/// (`std::sync::Mutex` cannot time out; a sender must not wait forever on a receiver
/// whose own thread is stuck writing to a client that does not read.)
#[derive(Debug, Default)]
struct Gate {
    /// Who holds and who waits for the turn.
    state: Mutex<GateState>,
    /// Signalled when a writer leaves and another waits.
    freed: Condvar,
}

/// The state behind a [`Gate`].
#[derive(Debug, Default)]
struct GateState {
    /// True while some thread is writing.
    busy: bool,
    /// Threads waiting for their turn. Without any, leaving skips the wake-up, which is a
    /// system call even when nobody waits: the owner's writes stay one syscall each.
    waiting: u32,
}

/// A turn at writing; the next writer may enter when it is dropped.
#[derive(Debug)]
struct Turn<'a>(&'a Gate);

impl Gate {
    /// The state. Nothing can panic while it is locked, so a poisoned lock is still sound.
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait for the turn to write, until `deadline` if given.
    fn enter(&self, deadline: Option<Instant>) -> Option<Turn<'_>> {
        let mut state = self.lock();
        while state.busy {
            let left = match deadline {
                None => None,
                Some(deadline) => Some(deadline.checked_duration_since(Instant::now())?),
            };
            state.waiting += 1;
            state = match left {
                None => self
                    .freed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(left) => {
                    let waited = self.freed.wait_timeout(state, left);
                    waited.unwrap_or_else(PoisonError::into_inner).0
                }
            };
            state.waiting -= 1;
        }
        state.busy = true;
        Some(Turn(self))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.busy = false;
        if state.waiting > 0 {
            self.0.freed.notify_one();
        }
    }
}

/// How long a writer keeps trying while the peer takes nothing. Each `write` blocks at
/// most the socket's send timeout (`linger`), so "timed out" means "no progress for
/// `linger`".
#[derive(Debug, Clone, Copy)]
enum Patience<'a> {
    /// The owner of an open connection: as long as the server runs (this is
    /// backpressure: the client thread reads nothing more until its client takes the
    /// reply, as the reactor stops reading above its high-water mark).
    WhileRunning(&'a AtomicBool),
    /// A connection that is closing: until the first timeout, so a closing connection
    /// goes at most `linger` without progress, as in the reactor.
    NoStall,
    /// A sender of a message: until this instant.
    Until(Instant),
}

/// Why a write did not complete.
#[derive(Debug)]
enum WriteError {
    /// The peer took nothing for longer than the writer's patience.
    Stalled,
    /// The connection failed.
    Failed(io::Error),
}

/// Write all of `data`, counting written bytes into `written`. Every write result is
/// classified here.
fn write_all(
    stream: &TcpStream,
    mut data: &[u8],
    patience: Patience<'_>,
    written: &mut u64,
) -> Result<(), WriteError> {
    while !data.is_empty() {
        match (&*stream).write(data) {
            // The socket accepts no more bytes: the connection is unusable.
            Ok(0) => return Err(WriteError::Failed(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                *written += n as u64;
                data = &data[n..];
            }
            // A signal interrupted the call before anything was written: try again.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // The send timeout passed with nothing written: the peer is not reading.
            Err(err) if is_timeout(&err) => {
                let give_up = match patience {
                    // A peer that has finished sending and takes nothing for `linger`
                    // is held no longer: the linger bound of a half-closed connection.
                    Patience::WhileRunning(stop) => {
                        stop.load(Ordering::Relaxed) || peer_finished_sending(stream)
                    }
                    Patience::NoStall => true,
                    Patience::Until(deadline) => Instant::now() >= deadline,
                };
                if give_up {
                    return Err(WriteError::Stalled);
                }
            }
            Err(err) => return Err(WriteError::Failed(err)),
        }
    }
    Ok(())
}

/// True if the peer has shut down its sending side (or the connection is gone), without
/// reading: `poll` for `POLLRDHUP` with a zero timeout. Unread input before the EOF does
/// not hide it, as a read would.
fn peer_finished_sending(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout; poll only writes `revents`.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready > 0 && fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// One read of what has already arrived on `stream`, never blocking (`MSG_DONTWAIT`): the
/// socket stays blocking for every other read and write of its thread.
fn read_arrived(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    // A negative count means failure, with the reason in errno.
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// True for the error a socket timeout produces (`EAGAIN` on Unix, `TimedOut` elsewhere).
fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// What every thread of one worker shares.
#[derive(Debug)]
struct WorkerShared<H> {
    /// Index of the worker, to tell its clients from other workers' in the registry.
    index: usize,
    /// The protocol.
    handler: Arc<H>,
    /// Limits and timeouts.
    config: Config,
    /// Raised when the server must stop.
    stop: Arc<AtomicBool>,
    /// Server-wide gauges.
    live: Arc<Live>,
    /// The registry (and the reactor's mailboxes, unused here).
    shared: Arc<Shared>,
}

/// What a client thread reports when it ends.
#[derive(Debug)]
struct Finished {
    /// Why the connection closed.
    reason: CloseReason,
    /// Bytes read from the client.
    bytes_in: u64,
    /// Bytes written to the client and, for messages, to other clients.
    bytes_out: u64,
}

/// Build a threads-model worker.
pub(crate) fn prepare<H: Handler>(setup: WorkerSetup<H>) -> io::Result<Prepared> {
    // The wake function keeps its own handle on the listening socket to shut it down.
    let waker_listener = setup.listener.try_clone()?;
    let local = setup.listener.local_addr()?;
    let shared = Arc::new(WorkerShared {
        index: setup.index,
        handler: setup.handler,
        config: setup.config,
        stop: setup.stop,
        live: setup.live,
        shared: setup.shared,
    });
    let registry_owner = Arc::clone(&shared.shared);
    let index = shared.index;
    let wake = Box::new(move || {
        wake_accept(&waker_listener, local);
        registry_owner.registry.shut_reads(index);
    });
    let listener = setup.listener;
    let run = Box::new(move || {
        let (done_tx, done_rx) = mpsc::channel();
        let mut worker = AcceptLoop {
            shared,
            listener,
            clients: HashMap::new(),
            done_tx,
            done_rx,
            stats: Stats::default(),
        };
        worker.run()
    });
    Ok(Prepared { run, wake })
}

/// Make a blocked `accept` on `listener` return.
///
/// On Linux, shutting down a listening socket wakes every thread blocked in `accept` on it
/// (with `EINVAL`) and stops the listen queue, whatever address it is bound to and however
/// many `SO_REUSEPORT` siblings it has. Where that is not supported, connect to it instead
/// (with several workers on one port, the kernel may route that connection to a sibling;
/// each worker is woken once, so every one sees at least its share).
fn wake_accept(listener: &TcpListener, local: SocketAddr) {
    if socket2::SockRef::from(listener)
        .shutdown(Shutdown::Both)
        .is_ok()
    {
        return;
    }
    let mut target = local;
    if target.ip().is_unspecified() {
        // A listener on every address is reachable on loopback.
        target.set_ip(match local {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    if let Err(err) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
        log::warn!("could not wake the accept thread on {local}: {err}");
    }
}

/// The accept thread of one worker and the client threads it spawned.
struct AcceptLoop<H> {
    /// What client threads share.
    shared: Arc<WorkerShared<H>>,
    /// The listening socket.
    listener: TcpListener,
    /// Client threads not yet joined, by connection id.
    clients: HashMap<ConnId, JoinHandle<Finished>>,
    /// Cloned into each client thread, which sends its id as it ends.
    done_tx: Sender<ConnId>,
    /// Ids of client threads that have ended and can be joined without waiting.
    done_rx: Receiver<ConnId>,
    /// Counters of this worker.
    stats: Stats,
}

impl<H: Handler> AcceptLoop<H> {
    /// Accept until stopped, then close every client and return the counters.
    fn run(&mut self) -> io::Result<Stats> {
        let result = self.accept_until_stopped();
        // Whatever ended the loop, stop listening and close this worker's clients.
        let _ = socket2::SockRef::from(&self.listener).shutdown(Shutdown::Both);
        if result.is_err() {
            self.shared.shared.registry.shut_reads(self.shared.index);
        }
        let clients: Vec<_> = self.clients.drain().collect();
        for (_, thread) in clients {
            self.join(thread);
        }
        log::debug!("threads worker {} stopped", self.shared.index);
        result.map(|()| std::mem::take(&mut self.stats))
    }

    /// The accept loop proper. Each arm says why it goes on or ends.
    fn accept_until_stopped(&mut self) -> io::Result<()> {
        loop {
            let accepted = self.listener.accept();
            if self.shared.stop.load(Ordering::SeqCst) {
                // A connection accepted as the server stops is closed unserved.
                return Ok(());
            }
            match accepted {
                Ok((stream, peer)) => self.admit(stream, peer),
                // A signal interrupted the call: try again.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // The client gave up before we accepted it: nothing to serve.
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                    ) => {}
                // Out of descriptors or memory: back off instead of spinning; clients
                // closing will free some.
                Err(err) if is_resource_exhausted(&err) => {
                    self.stats.fd_exhausted += 1;
                    log::warn!(
                        "accept: {err}; retrying in {:?}",
                        self.shared.config.accept_backoff
                    );
                    self.reap();
                    thread::sleep(self.shared.config.accept_backoff);
                }
                // Anything else is a failure of the listener itself, fatal to this worker.
                Err(err) => {
                    log::error!("accept failed: {err}");
                    return Err(err);
                }
            }
        }
    }

    /// Serve a new client on its own thread, or refuse it when the server is full.
    fn admit(&mut self, stream: TcpStream, addr: SocketAddr) {
        self.reap();
        let live = &self.shared.live;
        if !live.try_open(self.shared.index, self.shared.config.max_connections) {
            self.refuse(stream, addr);
            return;
        }
        let registry = &self.shared.shared.registry;
        let id = registry.next_id();
        log::trace!("accepted {id} from {addr}");
        let peer = Arc::new(Peer {
            stream,
            worker: self.shared.index,
            gate: Gate::default(),
            overflowed: AtomicBool::new(false),
        });
        // Register before the client thread first checks the stop flag (it does before
        // every read): `wake` either finds this client in the registry and shuts its read
        // side, or raised the flag before the registration, and then the client thread
        // sees it. Either way no client sleeps through a stop.
        registry.insert(id, Arc::clone(&peer));
        self.stats.accepted += 1;
        let guard = Departure {
            shared: Arc::clone(&self.shared),
            id,
            done: self.done_tx.clone(),
        };
        let client = Client::new(Arc::clone(&self.shared), id, addr, peer);
        let spawned = thread::Builder::new()
            .name(format!("tcp-client-{id}"))
            .stack_size(CLIENT_STACK)
            .spawn(move || {
                let _guard = guard;
                client.serve()
            });
        match spawned {
            Ok(thread) => {
                self.clients.insert(id, thread);
            }
            Err(err) => {
                // The closure (and with it the socket and the guard) was dropped: the
                // client is closed and unregistered.
                log::warn!("could not start a thread for {id} ({addr}): {err}");
                self.stats.count_close(CloseReason::Error(err.kind()));
            }
        }
    }

    /// Send the busy reply and close, without ever blocking the accept thread.
    fn refuse(&mut self, stream: TcpStream, addr: SocketAddr) {
        log::debug!(
            "refusing {addr}: {} connections open",
            self.shared.config.max_connections
        );
        self.shared.live.refused();
        self.stats.refused += 1;
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let reply = self.shared.handler.busy_reply();
        if !reply.is_empty() {
            // One attempt: a fresh socket's send buffer takes a short reply whole.
            let _ = (&stream).write(reply);
        }
        // Read what the client already sent, so closing sends FIN, not a reset that could
        // destroy the reply.
        let mut sink = [0u8; 1024];
        for _ in 0..16 {
            match (&stream).read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let _ = stream.shutdown(Shutdown::Write);
    }

    /// Join client threads that have ended, adding their counters.
    fn reap(&mut self) {
        while let Ok(id) = self.done_rx.try_recv() {
            if let Some(thread) = self.clients.remove(&id) {
                self.join(thread);
            }
        }
    }

    /// Join one client thread and add its counters.
    fn join(&mut self, thread: JoinHandle<Finished>) {
        match thread.join() {
            Ok(finished) => {
                self.stats.count_close(finished.reason);
                self.stats.bytes_in += finished.bytes_in;
                self.stats.bytes_out += finished.bytes_out;
            }
            Err(_) => {
                log::error!("a client thread panicked");
                self.stats
                    .count_close(CloseReason::Error(io::ErrorKind::Other));
            }
        }
    }
}

/// True when `accept` failed for lack of descriptors or memory (`EMFILE`, `ENFILE`,
/// `ENOBUFS`, `ENOMEM`).
fn is_resource_exhausted(err: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    #[cfg(target_os = "linux")]
    const ENOBUFS: i32 = 105;
    #[cfg(not(target_os = "linux"))]
    const ENOBUFS: i32 = 55;
    err.kind() == io::ErrorKind::OutOfMemory
        || matches!(err.raw_os_error(), Some(ENFILE | EMFILE | ENOBUFS))
}

/// Runs when a client thread ends, however it ends (even by a handler panic): the
/// client leaves the registry and the gauges, and the accept thread learns it can join.
struct Departure<H> {
    /// Gauges and registry.
    shared: Arc<WorkerShared<H>>,
    /// The client.
    id: ConnId,
    /// Tells the accept thread.
    done: Sender<ConnId>,
}

impl<H> Drop for Departure<H> {
    fn drop(&mut self) {
        self.shared.shared.registry.remove(self.id);
        self.shared.live.closed();
        // The accept thread may be gone (it joins everyone before leaving, so only when
        // the thread could not be spawned): nothing to tell then.
        let _ = self.done.send(self.id);
    }
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Output is flushed: send FIN and close (EOF, shutdown, idle timeout).
    Graceful(CloseReason),
    /// Send FIN, then read and discard input until the client's EOF or the linger
    /// timeout, so closing cannot reset away the reply (handler close, input limit).
    Lingering(CloseReason),
    /// Close at once (reset, error, abort, output limit).
    Abrupt(CloseReason),
}

/// What one blocking read produced.
#[derive(Debug)]
enum ReadOutcome {
    /// This many bytes are in the read buffer.
    Data(usize),
    /// The read side is closed: the client finished sending, or the server shut it.
    Closed,
    /// The read timeout passed: a deadline may be due.
    TimedOut,
    /// The connection failed.
    Failed(CloseReason),
}

/// One client, served by its own thread.
struct Client<H: Handler> {
    /// What the worker's threads share.
    shared: Arc<WorkerShared<H>>,
    /// This connection's id.
    id: ConnId,
    /// The client's address.
    addr: SocketAddr,
    /// The socket, shared with senders of messages.
    peer: Arc<Peer>,
    /// Bytes read into, grown up to `read_chunk`.
    buf: Vec<u8>,
    /// Input the handler has not consumed yet.
    input: Vec<u8>,
    /// What the handler's callbacks asked for.
    fx: Effects,
    /// When the handler's timer fires, if set.
    timer: Option<Instant>,
    /// When the connection last made progress: the handler consumed input or output was
    /// written (for the idle timeout).
    last_progress: Instant,
    /// The read timeout set on the socket, to skip `setsockopt` when it is unchanged.
    read_timeout: Option<Duration>,
    /// Bytes read.
    bytes_in: u64,
    /// Bytes written.
    bytes_out: u64,
}

impl<H: Handler> Client<H> {
    /// A client ready to be served.
    fn new(shared: Arc<WorkerShared<H>>, id: ConnId, addr: SocketAddr, peer: Arc<Peer>) -> Self {
        let first = FIRST_READ_BUFFER.min(shared.config.read_chunk).max(1);
        Client {
            shared,
            id,
            addr,
            peer,
            buf: vec![0; first],
            input: Vec::new(),
            fx: Effects::default(),
            timer: None,
            last_progress: Instant::now(),
            read_timeout: None,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Serve the client from `open` to `close`.
    fn serve(mut self) -> Finished {
        let ending = match self.configure_socket() {
            Ok(()) => {
                let (mut session, opened) = self.open();
                let ending = match self.after_callback(opened, false) {
                    Some(ending) => ending,
                    None => self.run(&mut session),
                };
                let reason = self.end(ending);
                self.shared.handler.close(session, self.id, reason);
                reason
            }
            Err(err) => {
                // The socket failed before the handler saw it: no open, so no close.
                let reason = CloseReason::from_io(&err);
                self.end(Ending::Abrupt(reason))
            }
        };
        Finished {
            reason: ending,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
        }
    }

    /// Socket options: no Nagle delay (like the reactor), and a send timeout so that no
    /// writer waits on a silent client without checking back.
    fn configure_socket(&self) -> io::Result<()> {
        let stream = &self.peer.stream;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(self.write_slice()))
    }

    /// How long one `write` may block: the linger timeout (at least a millisecond, as a
    /// zero timeout means "none" to the OS).
    fn write_slice(&self) -> Duration {
        self.shared.config.linger.max(Duration::from_millis(1))
    }

    /// Call `Handler::open`; return the session and what the callback asked for.
    fn open(&mut self) -> (H::Session, Actions) {
        let handler = Arc::clone(&self.shared.handler);
        let mut actions = Actions::default();
        let ctx = &mut self
            .fx
            .context(&mut actions, self.id, self.addr, Instant::now());
        (handler.open(ctx), actions)
    }

    /// The read loop, after `open`: returns how the connection must end.
    fn run(&mut self, session: &mut H::Session) -> Ending {
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                return self.answer_arrived(session);
            }
            if let Some(ending) = self.expire(session) {
                return ending;
            }
            let outcome = self.read();
            let ending = match outcome {
                ReadOutcome::Data(n) => self.on_input(session, n),
                ReadOutcome::Closed => Some(match self.closed_reason(CloseReason::Eof) {
                    // The stop shut our read side: answer what is left, close lingering.
                    CloseReason::Shutdown => self.answer_arrived(session),
                    reason => Ending::Graceful(reason),
                }),
                ReadOutcome::TimedOut => None,
                ReadOutcome::Failed(reason) => Some(Ending::Abrupt(self.closed_reason(reason))),
            };
            if let Some(ending) = ending {
                return ending;
            }
        }
    }

    /// The server is stopping: answer the input that has already arrived (what the socket
    /// holds, within one read budget, read without blocking), then end the lingering way,
    /// so the client gets every reply it is owed, then EOF.
    fn answer_arrived(&mut self, session: &mut H::Session) -> Ending {
        let mut budget = self.shared.config.read_budget.max(1);
        while budget > 0 {
            match read_arrived(&self.peer.stream, &mut self.buf) {
                // EOF, or the stop shut our read side: nothing more has arrived.
                Ok(0) => break,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    if let Some(ending) = self.on_input(session, n) {
                        return ending;
                    }
                }
                // A signal interrupted the call before any data: try again.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // Everything that arrived has been read.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => {
                    return Ending::Abrupt(self.closed_reason(CloseReason::from_io(&err)));
                }
            }
        }
        Ending::Lingering(CloseReason::Shutdown)
    }

    /// Why the connection closed, when its socket reported `seen`: a sender may have shut
    /// it for overflowing, or the server may be stopping.
    fn closed_reason(&self, seen: CloseReason) -> CloseReason {
        if self.peer.overflowed.load(Ordering::Relaxed) {
            CloseReason::OutputLimit
        } else if self.shared.stop.load(Ordering::Relaxed) {
            CloseReason::Shutdown
        } else {
            seen
        }
    }

    /// One blocking read into the read buffer, bounded by the next deadline.
    fn read(&mut self) -> ReadOutcome {
        let timeout = self.next_deadline().map(|deadline| {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        });
        if let Err(err) = self.set_read_timeout(timeout) {
            return ReadOutcome::Failed(CloseReason::from_io(&err));
        }
        loop {
            return match (&self.peer.stream).read(&mut self.buf) {
                Ok(0) => ReadOutcome::Closed,
                Ok(n) => {
                    log::trace!("read {n} bytes from {} ({})", self.id, self.addr);
                    ReadOutcome::Data(n)
                }
                // A signal interrupted the call before any data: try again.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                // The read timeout passed: not an error, a deadline may be due.
                Err(err) if is_timeout(&err) => ReadOutcome::TimedOut,
                Err(err) => ReadOutcome::Failed(CloseReason::from_io(&err)),
            };
        }
    }

    /// Set the socket's read timeout, unless the one set is close enough: one shorter
    /// only wakes the thread early, one at most `TIMEOUT_SLACK` longer fires a little late.
    fn set_read_timeout(&mut self, wanted: Option<Duration>) -> io::Result<()> {
        let close_enough = match (self.read_timeout, wanted) {
            (None, None) => true,
            (Some(set), Some(wanted)) => set <= wanted + TIMEOUT_SLACK && set >= wanted / 2,
            _ => false,
        };
        if !close_enough {
            self.peer.stream.set_read_timeout(wanted)?;
            self.read_timeout = wanted;
        }
        Ok(())
    }

    /// The earliest of the handler's timer and the idle deadline.
    fn next_deadline(&self) -> Option<Instant> {
        let idle = self
            .shared
            .config
            .idle_timeout
            .map(|idle| self.last_progress + idle);
        match (idle, self.timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Close an idle client, or fire the handler's timer, when due.
    fn expire(&mut self, session: &mut H::Session) -> Option<Ending> {
        // Most connections have no deadline at all: no need to read the clock.
        let due = self.next_deadline()?;
        let now = Instant::now();
        if now < due {
            return None;
        }
        if let Some(idle) = self.shared.config.idle_timeout
            && now >= self.last_progress + idle
        {
            log::debug!("{} ({}) idle for {idle:?}", self.id, self.addr);
            return Some(Ending::Graceful(CloseReason::IdleTimeout));
        }
        if self.timer.is_some_and(|at| now >= at) {
            self.timer = None;
            let handler = Arc::clone(&self.shared.handler);
            let mut actions = Actions::default();
            handler.timer(
                session,
                &mut self.fx.context(&mut actions, self.id, self.addr, now),
            );
            return self.after_callback(actions, false);
        }
        None
    }

    /// Hand `n` freshly read bytes (and any input left over) to the handler.
    ///
    /// Whenever the output of the batch passes the high-water mark, feeding pauses: that
    /// output is written (blocking, as any batch) and messages are delivered, then the rest
    /// of the input is offered. So a client that sends many requests without reading holds
    /// at most the mark plus one reply, not the replies to a whole read.
    fn on_input(&mut self, session: &mut H::Session, n: usize) -> Option<Ending> {
        self.bytes_in += n as u64;
        let handler = Arc::clone(&self.shared.handler);
        let high_water = self.shared.config.high_water;
        let (id, addr) = (self.id, self.addr);
        // Fresh bytes of the read buffer not yet consumed nor moved to `input`.
        let mut fresh = 0;
        // The requests of the current batch of callbacks, consumed by `after_callback`.
        let mut actions = Actions::default();
        loop {
            let now = Instant::now();
            let (used, held) = if self.input.is_empty() {
                // The common case: hand the read buffer over without copying it.
                let (used, held) = self.fx.feed(
                    &*handler,
                    session,
                    (id, addr, now),
                    &mut actions,
                    &self.buf[fresh..n],
                    high_water,
                );
                fresh += used;
                (used, held)
            } else {
                self.input.extend_from_slice(&self.buf[fresh..n]);
                fresh = n;
                let input = &self.input;
                let (used, held) = self.fx.feed(
                    &*handler,
                    session,
                    (id, addr, now),
                    &mut actions,
                    input,
                    high_water,
                );
                self.input.drain(..used);
                (used, held)
            };
            if used > 0 {
                self.last_progress = now;
            }
            if !held {
                break;
            }
            if let Some(ending) = self.after_callback(mem::take(&mut actions), false) {
                return Some(ending);
            }
        }
        self.input.extend_from_slice(&self.buf[fresh..n]);
        if self.input.is_empty() && self.input.capacity() > KEEP_INPUT {
            // A large partial frame is over: an idle client does not keep its memory.
            self.input = Vec::new();
        }
        self.resize_read_buffer(n);
        // The handler consumed nothing of a full input buffer: it never will.
        let over_limit = !self.input.is_empty() && self.input.len() >= self.shared.config.max_input;
        let ending = self.after_callback(actions, over_limit);
        if ending.is_none() && over_limit {
            log::warn!(
                "{} ({}): {} bytes of input not consumed",
                id,
                addr,
                self.input.len()
            );
            return Some(Ending::Lingering(CloseReason::InputLimit));
        }
        ending
    }

    /// Size the read buffer after a read of `n` bytes: double it (up to `read_chunk`) when
    /// the read filled it, as more is probably waiting; go back to the first size after a
    /// short read, so a client that once streamed does not keep a large buffer while idle.
    fn resize_read_buffer(&mut self, n: usize) {
        let first = FIRST_READ_BUFFER.min(self.shared.config.read_chunk).max(1);
        if n == self.buf.len() && n < self.shared.config.read_chunk {
            let grown = (n * 2).min(self.shared.config.read_chunk);
            self.buf.resize(grown, 0);
        } else if n < first && self.buf.len() > first {
            self.buf.truncate(first);
            self.buf.shrink_to_fit();
        }
    }

    /// Carry out what a callback asked: timer, messages to others, this client's output,
    /// close. Returns how to end, if the connection must end.
    /// `actions` is consumed: a callback's requests never outlive it.
    /// `closing` says the caller closes the connection anyway (its input is over the cap).
    fn after_callback(&mut self, actions: Actions, closing: bool) -> Option<Ending> {
        match actions.timer {
            Some(TimerRequest::Set(at)) => self.timer = Some(at),
            Some(TimerRequest::Cancel) => self.timer = None,
            None => {}
        }
        if !self.fx.outbox.is_empty() {
            self.deliver_outbox();
        }
        let close = actions.close;
        if close == Some(CloseRequest::Now) {
            self.fx.out.clear();
            return Some(Ending::Abrupt(CloseReason::Handler));
        }
        if let Err(ending) = self.flush(closing || close.is_some()) {
            return Some(ending);
        }
        close.map(|_| Ending::Lingering(CloseReason::Handler))
    }

    /// Write the batch of output, all of it, in as few writes as the socket allows.
    /// A connection that is `closing` gives up after `linger` without progress.
    fn flush(&mut self, closing: bool) -> Result<(), Ending> {
        if self.fx.out.is_empty() {
            return Ok(());
        }
        if self.fx.out.len() > self.shared.config.max_output {
            log::warn!(
                "{} ({}): {} bytes of output",
                self.id,
                self.addr,
                self.fx.out.len()
            );
            return Err(Ending::Abrupt(CloseReason::OutputLimit));
        }
        let patience = if closing {
            Patience::NoStall
        } else {
            Patience::WhileRunning(&self.shared.stop)
        };
        let before = self.bytes_out;
        let result = {
            let _turn = self.peer.gate.enter(None);
            write_all(
                &self.peer.stream,
                &self.fx.out,
                patience,
                &mut self.bytes_out,
            )
        };
        let wrote = self.bytes_out - before;
        log::trace!("wrote {wrote} bytes to {} ({})", self.id, self.addr);
        if wrote > 0 && self.shared.config.idle_timeout.is_some() {
            // Output taken by the client is progress too (a write may have blocked long).
            self.last_progress = Instant::now();
        }
        self.fx.out.clear();
        // A burst of output is over: give its memory back (a shrink in place, and a
        // growth that usually extends in place again, for a client that streams).
        self.fx.out.shrink_to(KEEP_OUTPUT);
        match result {
            Ok(()) => Ok(()),
            Err(WriteError::Stalled) => Err(Ending::Abrupt(CloseReason::LingerTimeout)),
            Err(WriteError::Failed(err)) => Err(Ending::Abrupt(
                self.closed_reason(CloseReason::from_io(&err)),
            )),
        }
    }

    /// Deliver the callback's messages to other clients; unknown ids are dropped.
    ///
    /// Messages for one recipient are joined and written at once (a chat line to many
    /// clients, or many lines to one, cost one write per recipient, not per message).
    fn deliver_outbox(&mut self) {
        let mut mail: HashMap<ConnId, Vec<u8>> = HashMap::new();
        self.fx.outbox.drain(|to, bytes| {
            mail.entry(to).or_default().extend_from_slice(bytes);
        });
        let registry = &self.shared.shared.registry;
        let patience = self.shared.config.linger;
        for (to, bytes) in mail {
            match registry.get(to) {
                Some(peer) => self.bytes_out += peer.deliver(&bytes, patience),
                None => log::trace!("dropped {} bytes for {to}: gone", bytes.len()),
            }
        }
    }

    /// Close the connection as `ending` says; returns the reason.
    fn end(&mut self, ending: Ending) -> CloseReason {
        // Shut the socket explicitly rather than only dropping it: a sender may still hold
        // the peer (and so the descriptor) for a moment.
        let stream = &self.peer.stream;
        let reason = match ending {
            Ending::Graceful(reason) => {
                let _ = stream.shutdown(Shutdown::Write);
                reason
            }
            Ending::Lingering(reason) => {
                let _ = stream.shutdown(Shutdown::Write);
                self.drain_input();
                reason
            }
            Ending::Abrupt(reason) => {
                let _ = stream.shutdown(Shutdown::Both);
                reason
            }
        };
        log::trace!("closed {} ({}): {reason}", self.id, self.addr);
        reason
    }

    /// Read and discard input until the client's EOF or the linger timeout.
    fn drain_input(&mut self) {
        let deadline = Instant::now() + self.shared.config.linger;
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            let left = left.max(Duration::from_millis(1));
            if self.peer.stream.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match (&self.peer.stream).read(&mut self.buf) {
                Ok(0) => return,
                Ok(n) => self.bytes_in += n as u64,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // Timed out or failed: nothing more to wait for.
                Err(_) => return,
            }
        }
    }
}

/// Where a client's callbacks put output and messages. Reused across callbacks, so a warm
/// connection allocates nothing per message. (Close and timer requests are not kept here:
/// each callback gets its own [`Actions`], which `after_callback` consumes.)
#[derive(Debug, Default)]
struct Effects {
    /// Output of the current handler batch.
    out: Vec<u8>,
    /// Messages to other clients from the current callback.
    outbox: Outbox,
}

impl Effects {
    /// A context for one callback of connection `id` at `addr`, recording its requests in
    /// `actions`.
    fn context<'a>(
        &'a mut self,
        actions: &'a mut Actions,
        id: ConnId,
        addr: SocketAddr,
        now: Instant,
    ) -> Context<'a> {
        Context::new(id, addr, now, &mut self.out, actions, &mut self.outbox)
    }

    /// Offer `input` to the handler until it consumes all of it, needs more, asks to
    /// close, or its output (own or to others) passes `high_water`. Returns the bytes
    /// consumed, and whether it stopped at high water with input left.
    fn feed<H: Handler>(
        &mut self,
        handler: &H,
        session: &mut H::Session,
        (id, addr, now): (ConnId, SocketAddr, Instant),
        actions: &mut Actions,
        input: &[u8],
        high_water: usize,
    ) -> (usize, bool) {
        let mut used = 0;
        while used < input.len() && actions.close.is_none() {
            let ctx = &mut self.context(actions, id, addr, now);
            let consumed = handler.data(session, ctx, &input[used..]);
            if consumed == 0 {
                break;
            }
            // A handler claiming more than it was given consumed everything.
            used += consumed.min(input.len() - used);
            if ctx.over_high_water(high_water) {
                return (used, used < input.len());
            }
        }
        (used, false)
    }
}
