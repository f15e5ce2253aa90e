//! One threads-model client, served by its own thread from `open` to `close`: blocking
//! reads bounded by the next deadline, the handler fed by `rules::feed`, its output written
//! as one batch, and the close (graceful, lingering or abrupt).
//!
//! Limits and a callback's requests mean what `rules` says, as in the reactor. This file
//! must not touch another client's socket except through its `Peer`.

use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::peer::Peer;
use super::write::{Open, Patience, WriteError};
use super::{WorkerShared, memory};
use crate::handler::{Actions, Outbox};
use crate::io::stream::BlockingStream;
use crate::rules::{self, Ending, Fed, Limit, ReadOutcome, Stop};
use crate::{CloseReason, ConnId, Context, Handler, PeerAddr};

mod admission;
mod deadlines;
mod dial;
mod requests;

pub(super) use dial::dial;

/// First size of a client's read buffer. It doubles, up to `Config::read_chunk`, each time
/// a read fills it, so idle clients stay cheap and busy ones read in large chunks.
const FIRST_READ_BUFFER: usize = 4 * 1024;

/// Capacity a client's output buffer keeps once a batch is written: a large reply does
/// not leave its size behind for the life of the connection.
const KEEP_OUTPUT: usize = 16 * 1024;

/// A read timeout this much longer than needed is still accepted, to save a `setsockopt`
/// per read: deadlines fire at most this late.
const TIMEOUT_SLACK: Duration = Duration::from_millis(5);

/// What a client thread reports when it ends.
#[derive(Debug)]
pub(super) struct Finished {
    /// Why the connection closed.
    pub(super) reason: CloseReason,
    /// Bytes read from the client.
    pub(super) bytes_in: u64,
    /// Bytes written to the client and, for messages, to other clients.
    pub(super) bytes_out: u64,
    /// Turned away by `max_per_address` before `open` (counted as refused, not closed).
    pub(super) refused: bool,
}

/// One client, served by its own thread.
pub(super) struct Client<H: Handler> {
    /// What the worker's threads share.
    shared: Arc<WorkerShared<H>>,
    /// This connection's id.
    id: ConnId,
    /// The client's address.
    addr: PeerAddr,
    /// The socket, shared with senders of messages.
    peer: Arc<Peer>,
    /// Bytes read into, grown up to `read_chunk`.
    buf: Vec<u8>,
    /// Input the handler has not consumed yet.
    input: Vec<u8>,
    /// What the handler's callbacks write, here or to other clients.
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
    /// Bytes this client is counted for in the server-wide budget.
    accounted: usize,
    /// The address group counted for `max_per_address`, given back as it ends.
    group: Option<std::net::IpAddr>,
}

impl<H: Handler> Client<H> {
    /// A client ready to be served.
    pub(super) fn new(
        shared: Arc<WorkerShared<H>>,
        id: ConnId,
        addr: PeerAddr,
        peer: Arc<Peer>,
    ) -> Self {
        let first = FIRST_READ_BUFFER.min(shared.config.read_chunk).max(1);
        let outbox = Client::outbox(&shared);
        Client {
            shared,
            id,
            addr,
            peer,
            buf: vec![0; first],
            input: Vec::new(),
            fx: Effects {
                out: Vec::new(),
                outbox,
            },
            timer: None,
            last_progress: Instant::now(),
            read_timeout: None,
            bytes_in: 0,
            bytes_out: 0,
            accounted: 0,
            group: None,
        }
    }

    /// Serve the client from `open` to `close`.
    pub(super) fn serve(mut self) -> Finished {
        match self.configure_socket().and_then(|()| self.take_header()) {
            Ok(()) if !self.take_address() => self.refuse(),
            Ok(()) => {
                let (mut session, actions) = self.open();
                let ending = match self.after_callback(actions, false) {
                    Some(ending) => ending,
                    None => self.run(&mut session),
                };
                let reason = self.end(ending);
                let finished = self.finish(session, reason);
                self.release_address();
                finished
            }
            Err(err) => {
                // The socket failed before the handler saw it: no open, so no close.
                let reason = CloseReason::from_io(&err);
                let reason = self.end(Ending::Abrupt(reason));
                self.report(reason)
            }
        }
    }

    /// Socket options: no Nagle delay where there is one (TCP, like the reactor), and a
    /// send timeout so that no writer waits on a silent client without checking back.
    fn configure_socket(&self) -> io::Result<()> {
        let stream = &self.peer.stream;
        stream.set_nodelay()?;
        stream.set_write_timeout(Some(write_slice(&self.shared.config)))
    }

    /// Call `Handler::open`; returns the session and what the callback asked for.
    fn open(&mut self) -> (H::Session, Actions) {
        let mut actions = Actions::default();
        let handler = Arc::clone(&self.shared.handler);
        let mut ctx = self
            .fx
            .context(self.id, self.addr, Instant::now(), &mut actions);
        (handler.open(&mut ctx), actions)
    }

    /// The read loop: returns how the connection must end.
    fn run(&mut self, session: &mut H::Session) -> Ending {
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                return self.answer_arrived(session);
            }
            if let Some(ending) = self.expire(session) {
                return ending;
            }
            let verdict = memory::wait_for_budget(
                &self.shared.live,
                self.holding(),
                &self.shared.stop,
                self.next_deadline(),
            );
            if verdict == memory::Verdict::Close {
                return Ending::Abrupt(CloseReason::MemoryBudget);
            }
            let ending = match self.read() {
                ReadOutcome::Data(n) => self.on_input(session, n),
                ReadOutcome::Eof => Some(match self.closed_reason(CloseReason::Eof) {
                    // The stop shut our read side: answer what is left, close lingering.
                    CloseReason::Shutdown => self.answer_arrived(session),
                    CloseReason::Eof => self.on_read_closed(session),
                    CloseReason::Reset => Ending::Abrupt(CloseReason::Reset),
                    reason => Ending::Graceful(reason),
                }),
                // The read timeout passed: a deadline may be due.
                ReadOutcome::WouldBlock => None,
                // Through TLS, the stop's shut read side looks like a truncation.
                ReadOutcome::Failed(err) if stop_seen_through_tls(&err, &self.shared.stop) => {
                    Some(self.answer_arrived(session))
                }
                ReadOutcome::Failed(err) => Some(Ending::Abrupt(
                    self.closed_reason(CloseReason::from_io(&err)),
                )),
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
            match self.peer.read(
                Arrived(&self.peer.stream),
                &mut self.buf,
                None,
                Patience::NoStall(self.shared.config.linger),
            ) {
                ReadOutcome::Data(n) => {
                    budget = budget.saturating_sub(n);
                    if let Some(ending) = self.on_input(session, n) {
                        return ending;
                    }
                }
                // EOF (or the stop shut our read side), or everything arrived is read.
                ReadOutcome::Eof | ReadOutcome::WouldBlock => break,
                ReadOutcome::Failed(err) if stop_seen_through_tls(&err, &self.shared.stop) => {
                    break;
                }
                ReadOutcome::Failed(err) => {
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
        } else if self.peer.reset.load(Ordering::Relaxed) {
            CloseReason::Reset
        } else if self.shared.stop.load(Ordering::Relaxed) {
            CloseReason::Shutdown
        } else {
            seen
        }
    }

    /// One blocking read into the read buffer, bounded by the next deadline.
    fn read(&mut self) -> ReadOutcome {
        let now = Instant::now();
        let timeout = self.next_deadline().map(|deadline| {
            deadline
                .saturating_duration_since(now)
                .max(Duration::from_millis(1))
        });
        let timeout = match (timeout, memory::read_bound(self.holding())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Err(err) = self.set_read_timeout(timeout) {
            return ReadOutcome::Failed(err);
        }
        // The timeout bounds one read of the socket; the deadline bounds them all (a TLS
        // record may take several).
        let deadline = timeout.map(|timeout| now + timeout);
        let patience = open_patience(&self.shared, self.last_progress);
        let outcome = self
            .peer
            .read(&self.peer.stream, &mut self.buf, deadline, patience);
        if let ReadOutcome::Data(n) = outcome {
            log::trace!("read {n} bytes from {} ({})", self.id, self.addr);
        }
        outcome
    }

    /// Bytes held for this client, as the budget judges it: its buffers, and output kept
    /// until its TLS handshake completes (counted in the budget by the wire).
    fn holding(&self) -> usize {
        self.input.capacity() + self.fx.out.capacity() + self.peer.wire.queued()
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

    /// Hand `n` freshly read bytes (and any input left over) to the handler. When it
    /// stops only because its output passed the high-water mark, write that output and
    /// go on with the buffered input before reading again.
    fn on_input(&mut self, session: &mut H::Session, n: usize) -> Option<Ending> {
        let now = Instant::now();
        self.bytes_in += n as u64;
        let mut fresh = n;
        loop {
            let (fed, actions) = self.feed(session, fresh, now);
            if fresh > 0 {
                self.resize_read_buffer(fresh);
            }
            fresh = 0;
            if fed.consumed > 0 {
                self.last_progress = now;
            }
            let held = fed.stop == Stop::HighWater;
            if let Some(ending) = self.after_callback(actions, held) {
                return Some(ending);
            }
            if !held {
                return None;
            }
        }
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

    /// One `rules::feed` of `fresh` bytes of the read buffer on top of buffered input.
    fn feed(&mut self, session: &mut H::Session, fresh: usize, now: Instant) -> (Fed, Actions) {
        let mut actions = Actions::default();
        let mut ctx = self.fx.context(self.id, self.addr, now, &mut actions);
        let fed = rules::feed(
            &*self.shared.handler,
            session,
            &mut self.input,
            &self.buf[..fresh],
            &mut ctx,
            self.shared.config.high_water,
        );
        (fed, actions)
    }

    /// Carry out what a callback asked: timer, messages to others, this client's output
    /// within the limits, close. Returns how to end, if the connection must end.
    /// `held` says the input left is waiting for this output to be sent, not for more
    /// bytes, so it is not held against the input cap yet.
    fn after_callback(&mut self, actions: Actions, held: bool) -> Option<Ending> {
        let ending = self.apply_callback(actions, held);
        let holding = self.input.capacity() + self.fx.out.capacity();
        self.shared.live.budget.update(&mut self.accounted, holding);
        ending
    }

    /// [`after_callback`](Client::after_callback) before the budget's accounting.
    fn apply_callback(&mut self, actions: Actions, held: bool) -> Option<Ending> {
        let applied = rules::apply(actions, &mut self.timer);
        if !self.fx.outbox.is_empty() {
            self.deliver_outbox();
        }
        if let Some(Ending::Abrupt(reason)) = applied.close {
            self.fx.out.clear();
            return Some(Ending::Abrupt(reason));
        }
        let config = &self.shared.config;
        let closing = applied.close.is_some();
        let limit = match rules::check_limits(self.fx.out.len(), self.input.len(), config) {
            // A connection closing anyway reads no more: its input is not held against it.
            Limit::InputCap if closing || held => Limit::Within,
            limit => limit,
        };
        if limit == Limit::OutputCap {
            log::warn!(
                "{} ({}): {} bytes of output",
                self.id,
                self.addr,
                self.fx.out.len()
            );
            return Some(Ending::Abrupt(CloseReason::OutputLimit));
        }
        if let Err(ending) = self.flush(closing || limit == Limit::InputCap) {
            return Some(ending);
        }
        if applied.close.is_some() {
            return applied.close;
        }
        if limit == Limit::InputCap {
            log::warn!(
                "{} ({}): {} bytes of input not consumed",
                self.id,
                self.addr,
                self.input.len()
            );
            return Some(Ending::Lingering(CloseReason::InputLimit));
        }
        None
    }

    /// Write the batch of output, all of it, in as few writes as the socket allows.
    /// A connection that is `closing` gives up after `linger` without progress.
    fn flush(&mut self, closing: bool) -> Result<(), Ending> {
        if self.fx.out.is_empty() {
            return Ok(());
        }
        let patience = if closing {
            Patience::NoStall(self.shared.config.linger)
        } else {
            open_patience(&self.shared, self.last_progress)
        };
        let (before, batch) = (self.bytes_out, self.fx.out.len());
        let result = {
            let _turn = self.peer.gate.enter(None);
            self.peer.wire.write_all(
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
            Err(WriteError::Idle) => {
                log::debug!("{} ({}) took no output: idle", self.id, self.addr);
                Err(Ending::Abrupt(CloseReason::IdleTimeout))
            }
            Err(WriteError::OverCap) => {
                log::warn!(
                    "{} ({}): {} bytes of output waiting for its TLS handshake exceed the \
                     output cap; closing",
                    self.id,
                    self.addr,
                    self.peer.wire.queued() + batch - wrote as usize,
                );
                Err(Ending::Abrupt(CloseReason::OutputLimit))
            }
            Err(WriteError::Failed(err)) => Err(Ending::Abrupt(
                self.closed_reason(CloseReason::from_io(&err)),
            )),
        }
    }

    /// Close the connection as `ending` says; returns the reason.
    fn end(&mut self, ending: Ending) -> CloseReason {
        // Shut the socket explicitly rather than only dropping it: a sender may still hold
        // the peer (and so the descriptor) for a moment.
        let stream = &self.peer.stream;
        if !matches!(ending, Ending::Abrupt(_)) {
            self.peer.wire.close_notify(stream, &self.peer.gate);
        }
        match ending {
            Ending::Graceful(_) => {
                let _ = stream.shutdown(Shutdown::Write);
            }
            Ending::Lingering(_) => {
                let _ = stream.shutdown(Shutdown::Write);
                self.drain_input();
            }
            // Reset by a handler: no FIN; dropping the socket (`SO_LINGER` 0) sends RST.
            Ending::Abrupt(_) if self.peer.reset.load(Ordering::Relaxed) => {}
            Ending::Abrupt(_) => {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        let reason = ending.reason();
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
            match self.peer.read(
                &self.peer.stream,
                &mut self.buf,
                Some(deadline),
                Patience::NoStall(self.shared.config.linger),
            ) {
                ReadOutcome::Data(n) => self.bytes_in += n as u64,
                // EOF, timed out or failed: nothing more to wait for.
                ReadOutcome::Eof | ReadOutcome::WouldBlock | ReadOutcome::Failed(_) => return,
            }
        }
    }
}

/// How long one `write` may block before the writer looks at its bounds: the linger
/// timeout, or the idle timeout if shorter (at least a millisecond, as a zero timeout
/// means "none" to the OS).
fn write_slice(config: &crate::Config) -> Duration {
    let slice = match config.idle_timeout {
        Some(idle) => idle.min(config.linger),
        None => config.linger,
    };
    slice.max(Duration::from_millis(1))
}

/// The patience of an open connection's owner, whose last progress was at `since`.
fn open_patience<H>(shared: &WorkerShared<H>, since: Instant) -> Patience<'_> {
    Patience::WhileRunning(Open {
        stop: &shared.stop,
        idle: shared.config.idle_timeout,
        linger: shared.config.linger,
        since,
    })
}

/// True if a read failed only because the stop shut the socket's read side under a TLS
/// session (rustls reports the EOF without `close_notify` as a truncation). Plain
/// sockets never fail with `UnexpectedEof`.
fn stop_seen_through_tls(err: &io::Error, stop: &std::sync::atomic::AtomicBool) -> bool {
    err.kind() == io::ErrorKind::UnexpectedEof && stop.load(Ordering::Relaxed)
}

/// What a client's callbacks write: its own output and messages to other clients. Reused
/// across callbacks, so a warm connection allocates nothing per message.
#[derive(Debug, Default)]
struct Effects {
    /// Output of the current handler batch, written at once.
    out: Vec<u8>,
    /// Messages to other clients from the current callback (an arena).
    outbox: Outbox,
}

impl Effects {
    /// A context for one callback of connection `id` at `addr`, whose requests go to
    /// `actions` (owned by the caller, so they end with the callback).
    fn context<'a>(
        &'a mut self,
        id: ConnId,
        addr: PeerAddr,
        now: Instant,
        actions: &'a mut Actions,
    ) -> Context<'a> {
        Context::new(id, addr, now, &mut self.out, actions, &mut self.outbox)
    }
}

/// A socket read only for what has already arrived, never blocking (`MSG_DONTWAIT`): the
/// socket stays blocking for every other read and write of its thread.
struct Arrived<'a>(&'a BlockingStream);

impl Read for Arrived<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        crate::io::sys::recv_dontwait(self.0.as_fd(), buf)
    }
}
