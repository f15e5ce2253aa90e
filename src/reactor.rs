//! The event loop: one thread, one `mio::Poll`, a slab of connections.
//!
//! This module owns the order of work in a turn and every decision about a connection's
//! life (accept, feed the handler, pause, close, reap). It leaves the socket calls and their
//! classification to `connection`, and never interprets the bytes: that is the handler's.
//!
//! One turn of the loop, in order:
//!
//! 1. **poll** for readiness, sleeping no longer than the next timer (not at all when some
//!    connection is waiting for a revisit);
//! 2. **handle events**: accept on the listener, read and write on connections;
//! 3. **revisit** the listener and connections that a budget stopped early: edge-triggered
//!    readiness will not be reported again for data already waiting;
//! 4. **deliver mail** sent by other workers to our connections;
//! 5. **flush** output queued during the turn: output handlers sent to other connections,
//!    and under a deferring [`WritePolicy`](crate::WritePolicy) every connection's own
//!    replies, each connection written once;
//! 6. **expire timers**: idle, linger, handler timers, accept back-off (their output is
//!    written at once);
//! 7. **reap** connections that finished, telling the handler why;
//! 8. **check stop**: begin or finish a graceful shutdown.
//!
//! The write policy is decided once per turn, from the number of events the poll returned
//! ([`WritePolicy::defers`](crate::WritePolicy::defers)); `after_callback` is the one place
//! that acts on it.

use std::collections::HashMap;
use std::io::{self, Write};
use std::mem;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{debug, info, trace, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::connection::{Connection, FlushOutcome, ReadOutcome};
use crate::handler::{Actions, CloseRequest, Outbox, TimerRequest};
use crate::server::{Live, Prepared, Shared, WorkerSetup};
use crate::spare::SpareBuffers;
use crate::timer::{TimerKind, Timers};
use crate::{CloseReason, Config, ConnId, Context, Handler, Stats};

/// The listener's token; connection tokens never reach it (their key fits in 32 bits).
const LISTENER: Token = Token(usize::MAX);
/// The waker's token: another thread wants our attention (stop, or mail).
const WAKER: Token = Token(usize::MAX - 1);
/// Connection tokens keep the slab key in these low bits and a generation above them.
const KEY_MASK: usize = 0xFFFF_FFFF;
/// Readiness events taken per `poll`.
const EVENTS_PER_POLL: usize = 1024;
/// The shared output buffer is trimmed back to this capacity after a large burst.
const KEEP_SCRATCH: usize = 1024 * 1024;
/// Deferred output is written at once when a connection has more than this queued (or more
/// than its high-water mark): batching saves nothing on writes this large, and the pause
/// at high water must still mean "the kernel refused it", whatever the policy.
const DEFER_LIMIT: usize = 64 * 1024;
/// A connection's input buffer above this capacity is released once empty, so a client that
/// once sent a large partial frame does not keep the memory while idle.
const KEEP_INPUT: usize = 16 * 1024;

/// Messages the mail queue keeps room for once delivered.
const KEEP_MAIL: usize = 256;

/// Which handler callback [`Reactor::invoke`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `Handler::open`, right after accept.
    Open,
    /// `Handler::data`, with this many fresh bytes in the read buffer (0: only buffered input).
    Data(usize),
    /// `Handler::timer`.
    Timer,
}

/// Build a reactor worker: its `Poll`, waker and listener registration.
pub(crate) fn prepare<H: Handler>(setup: WorkerSetup<H>) -> io::Result<Prepared> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    setup.listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(setup.listener);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    setup
        .shared
        .mailboxes
        .set_waker(setup.index, Arc::clone(&waker));
    let reactor = Reactor {
        poll,
        listener: Some(listener),
        conns: Slab::new(),
        ids: HashMap::new(),
        handler: setup.handler,
        read_buf: vec![0; setup.config.read_chunk.max(1)],
        config: setup.config,
        stats: Stats::default(),
        live: setup.live,
        shared: setup.shared,
        stop: setup.stop,
        index: setup.index,
        workers: setup.workers,
        next_seq: 0,
        generation: 0,
        timers: Timers::default(),
        ready: Vec::new(),
        listener_ready: false,
        dirty: Vec::new(),
        defer: false,
        spare: SpareBuffers::default(),
        reap: Vec::new(),
        scratch_out: Vec::new(),
        outbox: Outbox::default(),
        inbox: Vec::new(),
        now: Instant::now(),
        accept_paused: false,
        fd_episode: false,
        stop_deadline: None,
    };
    Ok(Prepared {
        run: Box::new(move || reactor.run()),
        wake: Box::new(move || {
            // Failure means the poll is already gone: the worker has stopped.
            let _ = waker.wake();
        }),
    })
}

/// A single-threaded event loop serving one listener.
struct Reactor<H: Handler> {
    /// The readiness queue (epoll on Linux).
    poll: Poll,
    /// Accepts new clients; `None` once stopping.
    listener: Option<TcpListener>,
    /// Live connections, keyed by the low bits of their token.
    conns: Slab<Connection<H::Session>>,
    /// Connection id to slab key, for `send_to`.
    ids: HashMap<ConnId, usize>,
    /// The protocol.
    handler: Arc<H>,
    /// Shared read buffer: every read lands here first, so idle connections own none.
    read_buf: Vec<u8>,
    /// Limits and timeouts.
    config: Config,
    /// Counters returned at the end.
    stats: Stats,
    /// Gauges readable from other threads.
    live: Arc<Live>,
    /// Mailboxes of all workers.
    shared: Arc<Shared>,
    /// Raised by a `StopHandle`.
    stop: Arc<AtomicBool>,
    /// This worker's index.
    index: usize,
    /// How many workers share the server.
    workers: usize,
    /// Connections accepted by this worker so far (to make ids).
    next_seq: u64,
    /// Bumped per accept and put in the token's high bits.
    generation: u32,
    /// Idle, linger, handler and back-off deadlines.
    timers: Timers,
    /// Connections a budget stopped early, to read again next turn.
    ready: Vec<Token>,
    /// The accept budget ran out with clients possibly still waiting.
    listener_ready: bool,
    /// Connections with output to write at the end of this turn (sent by other
    /// connections, or deferred by the write policy); each is listed once.
    dirty: Vec<Token>,
    /// This turn's output waits for the end-of-turn flush
    /// ([`WritePolicy::defers`](crate::WritePolicy::defers)); false once the flush step has
    /// run, so timer callbacks write at once.
    defer: bool,
    /// Output buffers of connections with nothing left to write, for the next to need one.
    spare: SpareBuffers,
    /// Finished connections, freed at the end of the turn.
    reap: Vec<usize>,
    /// Output of a connection with nothing pending is written here first and sent at once;
    /// only what the kernel refuses is copied into the connection's own buffer.
    scratch_out: Vec<u8>,
    /// What the current callback sent to other connections.
    outbox: Outbox,
    /// Mail taken from other workers (buffer reused).
    inbox: Vec<(ConnId, Vec<u8>)>,
    /// When the current turn started.
    now: Instant,
    /// Accepting is suspended after running out of file descriptors.
    accept_paused: bool,
    /// An fd-exhaustion episode is in progress (logged once).
    fd_episode: bool,
    /// Set when stopping: when the last connections are dropped regardless.
    stop_deadline: Option<Instant>,
}

impl<H: Handler> Reactor<H> {
    /// Run until stopped; return the stats.
    fn run(mut self) -> io::Result<Stats> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        debug!("worker {} serving", self.index);
        loop {
            self.poll_events(&mut events)?;
            self.handle_events(&events);
            self.revisit_ready();
            self.deliver_mail();
            self.flush_dirty();
            // The batch is over: output of timer callbacks goes out at once.
            self.defer = false;
            self.expire_timers();
            self.reap_finished();
            if self.check_stop() {
                break;
            }
        }
        debug!("worker {} stopped", self.index);
        Ok(self.stats)
    }

    /// Step 1: wait for readiness, no longer than the next deadline, and not at all when
    /// work is already waiting.
    fn poll_events(&mut self, events: &mut Events) -> io::Result<()> {
        let now = Instant::now();
        let timeout = if !self.ready.is_empty() || self.listener_ready {
            Some(Duration::ZERO)
        } else {
            self.timers.timeout(now)
        };
        match self.poll.poll(events, timeout) {
            Ok(()) => {}
            // A signal arrived while waiting: nothing happened, go round again.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => events.clear(),
            // The poll itself failed: the reactor cannot go on.
            Err(err) => return Err(err),
        }
        self.stats.polls += 1;
        self.now = Instant::now();
        Ok(())
    }

    /// Step 2: act on each readiness event.
    fn handle_events(&mut self, events: &Events) {
        self.defer = self.config.write_policy.defers(events.iter().count());
        for event in events {
            self.stats.events += 1;
            let token = event.token();
            trace!(
                "event {:#x}: readable={} writable={} read_closed={} error={}",
                token.0,
                event.is_readable(),
                event.is_writable(),
                event.is_read_closed(),
                event.is_error()
            );
            match token {
                LISTENER => self.accept(),
                // Mail and the stop flag are checked every turn.
                WAKER => {}
                token => {
                    let Some(key) = self.live_key(token) else {
                        // The connection closed earlier in this batch (or its slot now
                        // holds another): the event is stale.
                        continue;
                    };
                    // Data that arrived before the peer's FIN raises no further edge, so
                    // then (and on error) read until the kernel says WouldBlock or EOF.
                    let drain = event.is_read_closed() || event.is_error();
                    if event.is_readable() || drain {
                        self.read(key, drain);
                    }
                    if event.is_read_closed() {
                        self.peer_finished(key);
                    }
                    if event.is_writable() {
                        if self.defer {
                            // Output deferred this turn is written with the rest.
                            self.mark_dirty(key);
                        } else {
                            self.flush(key);
                        }
                    }
                }
            }
        }
    }

    /// The slab key for `token` if it still names a live connection.
    fn live_key(&self, token: Token) -> Option<usize> {
        let key = token.0 & KEY_MASK;
        match self.conns.get(key) {
            Some(conn) if conn.token == token && conn.dead.is_none() => Some(key),
            _ => None,
        }
    }

    /// Accept clients until the kernel has none, or the per-turn budget is spent.
    fn accept(&mut self) {
        if self.accept_paused {
            return;
        }
        self.listener_ready = false;
        for _ in 0..self.config.accept_budget.max(1) {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    if self.fd_episode {
                        self.fd_episode = false;
                        info!("file descriptors available again; accepting");
                    }
                    self.admit(stream, peer);
                }
                // Not an error: the backlog is empty until the next edge.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                // A signal interrupted accept: retry.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // Out of descriptors or memory: stop accepting for a while. Retrying now
                // would spin, and the waiting clients raise no new edge, so a timer
                // resumes us.
                Err(err) if is_resource_exhaustion(&err) => {
                    self.back_off_accept(&err);
                    return;
                }
                // The waiting client failed (e.g. ECONNABORTED): its problem, not ours.
                Err(err) => debug!("accept failed: {err}"),
            }
        }
        // Budget spent: clients may still wait, and no new edge will announce them.
        self.listener_ready = true;
    }

    /// Suspend accepting for the back-off period, logging once per episode.
    fn back_off_accept(&mut self, err: &io::Error) {
        self.stats.fd_exhausted += 1;
        if !self.fd_episode {
            self.fd_episode = true;
            warn!(
                "accept: {err}; pausing accept for {:?} ({} connections open)",
                self.config.accept_backoff,
                self.conns.len()
            );
        }
        self.accept_paused = true;
        self.timers.arm(
            self.now + self.config.accept_backoff,
            LISTENER,
            TimerKind::AcceptBackoff,
        );
    }

    /// Take a freshly accepted client into the slab, or refuse it when full.
    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        // The limit is server-wide: every worker counts against it.
        if self.stop_deadline.is_some()
            || !self.live.try_open(self.index, self.config.max_connections)
        {
            self.refuse(stream, peer);
            return;
        }
        // Replies are written whole; do not let Nagle hold the last segment back.
        if let Err(err) = stream.set_nodelay(true) {
            debug!("{peer}: TCP_NODELAY: {err}");
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.generation = self.generation.wrapping_add(1);
        let token = Token(key | ((self.generation as usize) << 32));
        // Register once, for both directions: no epoll_ctl per message afterwards.
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(err) = self.poll.registry().register(&mut stream, token, interest) {
            warn!("{peer}: cannot register: {err}; dropping");
            self.live.closed();
            return;
        }
        let id = ConnId(self.index as u64 + 1 + self.next_seq * self.workers as u64);
        self.next_seq += 1;
        entry.insert(Connection::new(stream, token, id, peer, self.now));
        self.ids.insert(id, key);
        self.stats.accepted += 1;
        trace!("accept {peer} as connection {id} (slot {key})");
        if let Some(idle) = self.config.idle_timeout {
            self.timers.arm(self.now + idle, token, TimerKind::Idle);
        }
        self.invoke(key, Call::Open);
    }

    /// Turn a client away: best-effort busy reply, then close.
    fn refuse(&mut self, stream: TcpStream, peer: SocketAddr) {
        let reply = self.handler.busy_reply();
        if !reply.is_empty() {
            // Best effort: a fresh socket's send buffer is empty, so this rarely blocks.
            let _ = (&stream).write(reply);
        }
        self.stats.refused += 1;
        self.live.refused();
        debug!("refused {peer}: {} connections open", self.conns.len());
    }

    /// Read from connection `key` and feed the handler, within the read budget.
    ///
    /// With `drain` false, a short read ends the visit: on Linux, bytes arriving after it
    /// raise a new edge, so reading again would only return `WouldBlock` (a wasted syscall
    /// per message). With `drain` true (the peer has closed, or a revisit) read until
    /// `WouldBlock`, EOF or the budget.
    fn read(&mut self, key: usize, drain: bool) {
        let mut budget = self.config.read_budget.max(1);
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if !conn.wants_read() {
                return;
            }
            if budget == 0 {
                self.queue_ready(key);
                return;
            }
            let want = budget.min(self.read_buf.len());
            self.stats.reads += 1;
            match conn.read_into(&mut self.read_buf[..want]) {
                ReadOutcome::Data(n) => {
                    self.stats.bytes_in += n as u64;
                    budget -= n;
                    trace!("read {n} bytes from connection {}", conn.id);
                    // A closing connection reads only to reach the peer's EOF.
                    if conn.closing.is_none() && self.invoke(key, Call::Data(n)) {
                        // Output passed high water with input left: the rest waits for a
                        // revisit, and reading more now would only pile it up.
                        return;
                    }
                    if n < want && !drain {
                        return;
                    }
                }
                ReadOutcome::Eof => {
                    trace!("read 0 bytes: connection {} sent EOF", conn.id);
                    self.on_eof(key);
                    return;
                }
                ReadOutcome::WouldBlock => return,
                ReadOutcome::Failed(err) => {
                    debug!("read from connection {}: {err}", conn.id);
                    self.kill(key, CloseReason::from_io(&err));
                    return;
                }
            }
        }
    }

    /// Make one handler callback for connection `key`, then act on what it asked for.
    ///
    /// Returns true when feeding stopped at the high-water mark with input left over. That
    /// input is offered again by a revisit (queued here, unless reads are paused: then the
    /// drain below low water queues it), so other connections are served in between.
    fn invoke(&mut self, key: usize, call: Call) -> bool {
        let handler = &*self.handler;
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        // Written at once with nothing pending, output goes to the shared buffer and
        // straight to the socket. Otherwise it queues behind what is pending, or stays in
        // the connection's own buffer until the end of the turn: no copy either way.
        let use_scratch = !self.defer && conn.pending() == 0;
        if !use_scratch && conn.output.capacity() == 0 {
            conn.output = self.spare.take();
        }
        let mark = conn.output.len();
        let out = if use_scratch {
            &mut self.scratch_out
        } else {
            &mut conn.output
        };
        let already_sent = if use_scratch { 0 } else { conn.sent };
        // The callback's close and timer requests live exactly as long as the callback:
        // they are handed to `after_callback` by value, so no path out of it can leave
        // them behind for the next callback (of another connection).
        let mut actions = Actions::default();
        let mut ctx = Context::new(
            conn.id,
            conn.peer,
            self.now,
            out,
            &mut actions,
            &mut self.outbox,
        )
        .already_sent(already_sent);
        let mut consumed = 0;
        let mut held = false;
        match (call, conn.session.as_mut()) {
            (Call::Open, _) => conn.session = Some(handler.open(&mut ctx)),
            (Call::Data(fresh), Some(session)) => {
                (consumed, held) = feed(
                    handler,
                    session,
                    &mut conn.input,
                    &self.read_buf[..fresh],
                    &mut ctx,
                    self.config.high_water,
                );
            }
            (Call::Timer, Some(session)) => handler.timer(session, &mut ctx),
            (_, None) => {}
        }
        if consumed > 0 {
            conn.last_active = self.now;
        }
        self.after_callback(key, use_scratch, mark, actions);
        if held
            && let Some(conn) = self.conns.get(key)
            && conn.wants_input()
        {
            self.queue_ready(key);
        }
        held
    }

    /// Send what the callback wrote (or leave it for the end of the turn), carry out its
    /// `actions`, enforce the limits. `actions` is consumed whatever path returns: requests
    /// never outlive their callback. `mark` is the length of the connection's own buffer
    /// before the callback.
    fn after_callback(&mut self, key: usize, used_scratch: bool, mark: usize, actions: Actions) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if actions.close == Some(CloseRequest::Now) {
            // `abort` discards this callback's output: nothing of it may reach the peer.
            self.scratch_out.clear();
            if self.defer {
                // Earlier callbacks' output would already be on the wire under the eager
                // policy: give it its one write, as that policy would have.
                conn.output.truncate(mark);
                let _ = conn.flush(&mut self.stats);
            }
            self.kill(key, CloseReason::Handler);
            self.outbox_route();
            return;
        }
        let mut outcome = FlushOutcome::Done;
        let before = self.stats.bytes_out;
        let pending = conn.pending();
        // The one decision point of the write policy: leave the output for the end of the
        // turn, unless there is too much of it to gain from waiting.
        let deferred = self.defer && pending <= self.config.high_water.min(DEFER_LIMIT);
        if deferred {
            // Written by `flush_dirty`, which also counts it as progress.
        } else if used_scratch && !self.scratch_out.is_empty() {
            outcome = conn.send(&self.scratch_out, &mut self.stats);
            trace!(
                "wrote {} of {} bytes to connection {}",
                self.stats.bytes_out - before,
                self.scratch_out.len(),
                conn.id
            );
            self.scratch_out.clear();
            if self.scratch_out.capacity() > KEEP_SCRATCH {
                self.scratch_out.shrink_to(KEEP_SCRATCH);
            }
        } else if pending > 0 {
            outcome = conn.flush(&mut self.stats);
        }
        if self.stats.bytes_out > before {
            // Output written is progress, for the idle timeout (as in `flush`).
            conn.last_active = self.now;
        }
        if let FlushOutcome::Failed(err) = outcome {
            debug!("write to connection {}: {err}", conn.id);
            self.kill(key, CloseReason::from_io(&err));
            self.outbox_route();
            return;
        }
        if deferred {
            self.mark_dirty(key);
        }
        self.apply_actions(key, actions);
        self.enforce_limits(key);
        self.outbox_route();
        self.settle(key);
    }

    /// Carry out the timer and close requests of a callback.
    fn apply_actions(&mut self, key: usize, actions: Actions) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match actions.timer {
            Some(TimerRequest::Set(at)) => {
                conn.handler_timer = Some(at);
                self.timers.arm(at, conn.token, TimerKind::Handler);
            }
            Some(TimerRequest::Cancel) => conn.handler_timer = None,
            None => {}
        }
        match actions.close {
            Some(CloseRequest::Now) => self.kill(key, CloseReason::Handler),
            Some(CloseRequest::AfterFlush) => self.begin_close(key, CloseReason::Handler),
            None => {}
        }
    }

    /// Apply the input cap, output cap and high-water mark to connection `key`.
    fn enforce_limits(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.dead.is_some() {
            return;
        }
        if conn.pending() > self.config.max_output {
            warn!(
                "connection {} ({}): {} bytes of unsent output exceed the cap of {}; closing",
                conn.id,
                conn.peer,
                conn.pending(),
                self.config.max_output
            );
            self.kill(key, CloseReason::OutputLimit);
        } else if conn.input.len() >= self.config.max_input && conn.closing.is_none() {
            warn!(
                "connection {} ({}): {} bytes of unconsumed input reach the cap of {}; closing",
                conn.id,
                conn.peer,
                conn.input.len(),
                self.config.max_input
            );
            self.begin_close(key, CloseReason::InputLimit);
        } else if conn.pending() > self.config.high_water && !conn.paused {
            trace!(
                "connection {}: output above high water; pausing reads",
                conn.id
            );
            conn.paused = true;
        }
    }

    /// Deliver what the last callback sent to other connections, here or on other workers.
    fn outbox_route(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let mut outbox = mem::take(&mut self.outbox);
        let mut wake = Vec::new();
        outbox.drain(|to, bytes| {
            let owner = self.owner(to);
            if owner == self.index {
                self.deliver(to, bytes);
            } else if self.shared.mailboxes.post(owner, to, bytes) {
                wake.push(owner);
            }
        });
        self.outbox = outbox;
        for worker in wake {
            self.shared.mailboxes.wake(worker);
        }
    }

    /// The worker that owns connection `id` (ids are striped over workers).
    fn owner(&self, id: ConnId) -> usize {
        (id.0.saturating_sub(1) % self.workers.max(1) as u64) as usize
    }

    /// Queue `bytes` on local connection `to`, to be flushed at the end of the turn.
    /// Bytes for a connection that is gone or closing are dropped.
    fn deliver(&mut self, to: ConnId, bytes: &[u8]) {
        let Some(&key) = self.ids.get(&to) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.dead.is_some() || conn.write_shut {
            return;
        }
        conn.output.extend_from_slice(bytes);
        self.mark_dirty(key);
        self.enforce_limits(key);
    }

    /// Put connection `key` on the end-of-turn flush list if it has output to write.
    fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && !conn.dirty
            && conn.pending() > 0
        {
            conn.dirty = true;
            self.dirty.push(conn.token);
        }
    }

    /// Write pending output of connection `key`; then see whether it can close or resume.
    fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.dead.is_some() || conn.pending() == 0 {
            return;
        }
        let before = self.stats.bytes_out;
        match conn.flush(&mut self.stats) {
            FlushOutcome::Done | FlushOutcome::Blocked => {}
            FlushOutcome::Failed(err) => {
                debug!("write to connection {}: {err}", conn.id);
                self.kill(key, CloseReason::from_io(&err));
                return;
            }
        }
        if self.stats.bytes_out > before {
            conn.last_active = self.now;
            trace!(
                "wrote {} bytes to connection {}",
                self.stats.bytes_out - before,
                conn.id
            );
        }
        self.settle(key);
    }

    /// Decide what a connection does next after its output changed: resume reading below
    /// the low-water mark, and close once everything is flushed if it is closing.
    fn settle(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.dead.is_some() {
            return;
        }
        if conn.paused && conn.pending() <= self.config.low_water {
            trace!("connection {}: output drained; resuming reads", conn.id);
            conn.paused = false;
            // Input that arrived while paused raised its edge already: revisit.
            self.queue_ready(key);
            return;
        }
        if conn.pending() > 0 {
            return;
        }
        // Nothing left to write: an idle connection keeps no output buffer.
        if conn.output.capacity() > 0 {
            self.spare.give(mem::take(&mut conn.output));
        }
        match (conn.read_closed, conn.closing) {
            // The peer is done and so are we.
            (true, reason) => self.kill(key, reason.unwrap_or(CloseReason::Eof)),
            // Lingering close (stopping too): send our FIN, then read until the peer's EOF
            // (or the linger deadline) so unread input does not turn the close into a reset.
            // A client that closes on EOF sends nothing more, so it waits no longer.
            (false, Some(_)) if !conn.write_shut => {
                trace!(
                    "connection {}: output flushed; shutting down writes",
                    conn.id
                );
                conn.shutdown_write();
            }
            _ => {}
        }
    }

    /// The peer sent EOF: stop reading, flush what is queued (bounded by the linger
    /// timeout), then close.
    fn on_eof(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.read_closed = true;
            self.arm_linger(key);
            self.settle(key);
        }
    }

    /// The poll reports that the peer has finished sending. A connection with reads paused
    /// does not read its EOF until its output drains, which a peer that never reads
    /// prevents: bound its life with the linger deadline now.
    fn peer_finished(&mut self, key: usize) {
        if let Some(conn) = self.conns.get(key)
            && conn.paused
            && !conn.read_closed
            && conn.dead.is_none()
        {
            self.arm_linger(key);
        }
    }

    /// Start closing connection `key` for `reason` once its output is flushed.
    fn begin_close(&mut self, key: usize, reason: CloseReason) {
        if let Some(conn) = self.conns.get_mut(key) {
            if conn.closing.is_none() {
                conn.closing = Some(reason);
                trace!("connection {}: closing ({reason}) after flush", conn.id);
            }
            self.arm_linger(key);
        }
    }

    /// Bound how long a closing connection may live.
    fn arm_linger(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && conn.linger_deadline.is_none()
        {
            let at = self.now + self.config.linger;
            conn.linger_deadline = Some(at);
            self.timers.arm(at, conn.token, TimerKind::Linger);
        }
    }

    /// Mark connection `key` finished; it is freed in the reap step.
    fn kill(&mut self, key: usize, reason: CloseReason) {
        if let Some(conn) = self.conns.get_mut(key)
            && conn.dead.is_none()
        {
            conn.dead = Some(reason);
            self.reap.push(key);
        }
    }

    /// Put connection `key` on the list to read again next turn.
    fn queue_ready(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && !conn.queued
        {
            conn.queued = true;
            self.ready.push(conn.token);
        }
    }

    /// Step 3: serve again what a budget or a pause stopped early, without a new edge.
    fn revisit_ready(&mut self) {
        if self.listener_ready {
            self.accept();
        }
        let mut ready = mem::take(&mut self.ready);
        for token in ready.drain(..) {
            let Some(key) = self.live_key(token) else {
                continue;
            };
            let conn = &mut self.conns[key];
            conn.queued = false;
            // Input buffered while paused (or held at high water) is offered first; only
            // once it is all taken is the socket read again.
            if !conn.input.is_empty() && conn.wants_input() && self.invoke(key, Call::Data(0)) {
                continue;
            }
            self.read(key, true);
        }
        // Keep the allocation unless new entries arrived meanwhile.
        if self.ready.is_empty() {
            self.ready = ready;
        }
    }

    /// Step 4: deliver messages other workers sent to our connections.
    fn deliver_mail(&mut self) {
        if self.workers < 2 {
            return;
        }
        let mut inbox = mem::take(&mut self.inbox);
        self.shared.mailboxes.take(self.index, &mut inbox);
        for (to, bytes) in inbox.drain(..) {
            self.deliver(to, &bytes);
        }
        // A burst of mail is over: do not keep its peak (the mailbox gets this vector
        // back at the next swap).
        inbox.shrink_to(KEEP_MAIL);
        self.inbox = inbox;
    }

    /// Step 5: flush output queued for connections other than the one being served.
    fn flush_dirty(&mut self) {
        let mut dirty = mem::take(&mut self.dirty);
        for token in dirty.drain(..) {
            if let Some(key) = self.live_key(token) {
                self.conns[key].dirty = false;
                self.flush(key);
            }
        }
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Step 6: act on every deadline that has passed; stale entries are skipped.
    fn expire_timers(&mut self) {
        while let Some((_, token, kind)) = self.timers.pop_due(self.now) {
            if kind == TimerKind::AcceptBackoff {
                self.accept_paused = false;
                self.listener_ready = true;
                continue;
            }
            let Some(key) = self.live_key(token) else {
                continue;
            };
            match kind {
                TimerKind::Idle => self.expire_idle(key),
                TimerKind::Linger => self.expire_linger(key),
                TimerKind::Handler => {
                    let conn = &mut self.conns[key];
                    if conn.handler_timer.is_some_and(|at| at <= self.now) {
                        conn.handler_timer = None;
                        if conn.closing.is_none() {
                            self.invoke(key, Call::Timer);
                        }
                    }
                }
                TimerKind::AcceptBackoff => {}
            }
        }
    }

    /// Close connection `key` if it made no progress for the idle timeout; otherwise re-arm
    /// for its current deadline.
    fn expire_idle(&mut self, key: usize) {
        let Some(idle) = self.config.idle_timeout else {
            return;
        };
        let conn = &self.conns[key];
        if conn.closing.is_some() || conn.read_closed {
            // The linger deadline bounds it now.
            return;
        }
        let due = conn.last_active + idle;
        if due <= self.now {
            debug!(
                "connection {} ({}): idle for {idle:?}; closing",
                conn.id, conn.peer
            );
            self.kill(key, CloseReason::IdleTimeout);
        } else {
            self.timers.arm(due, conn.token, TimerKind::Idle);
        }
    }

    /// A closing connection ran out of time: drop it. The bound counts from the last
    /// progress, so a large reply that a slow reader keeps draining is not cut off.
    fn expire_linger(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let Some(deadline) = conn.linger_deadline else {
            return;
        };
        let deadline = deadline.max(conn.last_active + self.config.linger);
        if deadline > self.now {
            conn.linger_deadline = Some(deadline);
            self.timers.arm(deadline, conn.token, TimerKind::Linger);
            return;
        }
        // Flushed but the peer never sent EOF: the close itself went as planned.
        let reason = match conn.closing {
            Some(reason) if conn.pending() == 0 => reason,
            _ => CloseReason::LingerTimeout,
        };
        debug!("connection {}: linger deadline passed ({reason})", conn.id);
        self.kill(key, reason);
    }

    /// Step 7: free finished connections and tell the handler why each closed.
    fn reap_finished(&mut self) {
        for key in self.reap.drain(..) {
            if !self.conns.contains(key) {
                continue;
            }
            let conn = self.conns.remove(key);
            let reason = conn.dead.unwrap_or(CloseReason::Shutdown);
            self.ids.remove(&conn.id);
            self.stats.count_close(reason);
            self.live.closed();
            trace!("close connection {} ({}): {reason}", conn.id, conn.peer);
            if let Some(session) = conn.session {
                self.handler.close(session, conn.id, reason);
            }
            // Dropping the stream closes the descriptor, which also removes it from epoll.
        }
    }

    /// Step 8: begin a graceful stop when asked; report true when it is complete.
    fn check_stop(&mut self) -> bool {
        if self.stop_deadline.is_none() && self.stop.load(Ordering::SeqCst) {
            self.begin_stop();
        }
        let Some(deadline) = self.stop_deadline else {
            return false;
        };
        if self.conns.is_empty() {
            return true;
        }
        if self.now >= deadline {
            let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
            for key in keys {
                self.kill(key, CloseReason::Shutdown);
            }
            self.reap_finished();
            return true;
        }
        false
    }

    /// A graceful stop: stop accepting; answer the input that has already arrived; then
    /// close every connection the lingering way (flush, shut down writes, discard input
    /// until the peer's EOF). The whole stop is bounded by `linger`: `check_stop` drops
    /// whatever is left at that deadline.
    fn begin_stop(&mut self) {
        info!(
            "worker {} stopping: {} connections to close",
            self.index,
            self.conns.len()
        );
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.listener_ready = false;
        self.stop_deadline = Some(self.now + self.config.linger);
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.answer_arrived(key);
            self.begin_close(key, CloseReason::Shutdown);
            self.settle(key);
        }
        self.reap_finished();
    }

    /// Feed the handler what connection `key` has received and not yet offered: its
    /// buffered input, then what waits in the socket (within one read budget). Closing
    /// with a request unanswered would lose a reply the client is owed.
    fn answer_arrived(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if !conn.wants_input() {
            // Paused above high water, closing, or finished: it reads no more requests.
            return;
        }
        if !conn.input.is_empty() {
            self.invoke(key, Call::Data(0));
        }
        self.read(key, true);
    }
}

/// Offer input to the handler: straight from `fresh` when nothing is buffered, otherwise
/// appended to `buffered`. Whatever the handler leaves unconsumed ends up in `buffered`.
/// Returns the bytes consumed, and whether feeding stopped at high water with input left.
fn feed<H: Handler>(
    handler: &H,
    session: &mut H::Session,
    buffered: &mut Vec<u8>,
    fresh: &[u8],
    ctx: &mut Context<'_>,
    high_water: usize,
) -> (usize, bool) {
    if buffered.is_empty() {
        // The common case: no copy at all unless a partial frame is left over.
        let (consumed, held) = consume(handler, session, fresh, ctx, high_water);
        buffered.extend_from_slice(&fresh[consumed..]);
        (consumed, held)
    } else {
        buffered.extend_from_slice(fresh);
        let (consumed, held) = consume(handler, session, buffered, ctx, high_water);
        buffered.drain(..consumed);
        if buffered.is_empty() && buffered.capacity() > KEEP_INPUT {
            *buffered = Vec::new();
        }
        (consumed, held)
    }
}

/// Call `Handler::data` while it makes progress, input remains, it has not asked to close,
/// and its output (own and to others) is below the high-water mark. Returns the bytes
/// consumed, and whether it stopped at high water with input left.
fn consume<H: Handler>(
    handler: &H,
    session: &mut H::Session,
    input: &[u8],
    ctx: &mut Context<'_>,
    high_water: usize,
) -> (usize, bool) {
    let mut consumed = 0;
    while consumed < input.len() {
        let rest = &input[consumed..];
        // A handler claiming more than it was given is clamped, not trusted.
        let n = handler.data(session, ctx, rest).min(rest.len());
        consumed += n;
        if n == 0 || ctx.close_requested() {
            break;
        }
        if ctx.over_high_water(high_water) {
            return (consumed, consumed < input.len());
        }
    }
    (consumed, false)
}

/// True for accept errors that mean "the process or system is out of a resource", where
/// retrying at once would spin.
fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
