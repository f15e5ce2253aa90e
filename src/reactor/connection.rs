//! One client of the reactor: its socket, its buffers, its [`Phase`] of life, and the
//! classification of every write result.
//!
//! This module owns the socket calls for connections and turns their results into a few
//! outcomes the reactor can act on (reads are classified by `rules::read_once`, shared with
//! the threads model). It must not call the handler or know about other connections; the
//! rest of the reactor decides what a connection does next, through the methods here: the
//! fields are private, so the output's `sent` mark, the phase, the flags that pair with the
//! reactor's lists and the budget's figure change only in the ways written below.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, trace};
use mio::Token;

use super::buffers::SpareBuffers;
use super::socket::MioStream;
use super::types::Notice;
use crate::PeerAddr;
use crate::budget::{self, Blame, Budget, Charge, Foreign, Pressure, Sender};

use crate::handler::Actions;
use crate::io::transport::Transport;
use crate::rules::{self, Applied, HalfClose, ReadOutcome};
use crate::{CloseReason, ConnId, Stats};

/// Unsent output buffers above this capacity are released once empty, so a connection
/// that once sent a burst does not keep the memory while idle.
const KEEP_OUTPUT_CAPACITY: usize = 16 * 1024;

/// What flushing the output buffer achieved.
#[derive(Debug)]
pub(crate) enum FlushOutcome {
    /// Every queued byte has been handed to the kernel.
    Done,
    /// The kernel's send buffer is full; a writable edge will come when it drains.
    Blocked,
    /// The connection is broken.
    Failed(io::Error),
}

/// One client connection, stored in the reactor's slab.
#[derive(Debug)]
pub(crate) struct Connection<S> {
    /// The nonblocking socket, registered once for read and write interest.
    stream: MioStream,
    /// What bytes travel through between the buffers and the socket: the socket itself,
    /// or TLS. Everything else in the connection counts plaintext.
    transport: Transport,
    /// Slab key in the low 32 bits, a generation in the high bits, so an event for a
    /// reused slot is recognised as stale.
    token: Token,
    /// The id handlers use; unique for the server's life.
    id: ConnId,
    /// The peer's address, for logs and handlers.
    peer: PeerAddr,
    /// The handler's state for this connection; taken when it closes.
    session: Option<S>,
    /// Input the handler has not consumed yet. Empty (and unallocated) most of the time:
    /// input is handed to the handler straight from the reactor's shared read buffer.
    input: Vec<u8>,
    /// Output not yet sent; bytes before `sent` already left.
    output: Vec<u8>,
    /// How much of `output` has been written; advanced only by the writes below.
    sent: usize,
    /// Bytes of output written over the connection's life: with the unsent bytes, the
    /// position in its output stream that [`Foreign`] runs are recorded at.
    written: u64,
    /// The runs of unsent output that other connections' callbacks queued, and whom they
    /// count against in the budget.
    foreign: Foreign,
    /// What this connection's callbacks queued on others, counted against it in the
    /// budget; made on its first message to another connection.
    sender: Sender,
    /// Where the connection is in its life; decides what it reads and when it closes.
    phase: Phase,
    /// Already on the ready list for a revisit next turn (independent of the phase: any
    /// phase that reads can be stopped early by a budget).
    queued: bool,
    /// On the list of connections whose output another connection queued this turn, to be
    /// flushed at its end.
    dirty: bool,
    /// When the connection last made progress (the handler consumed input, or output was
    /// written), for the idle timeout and the linger bound.
    last_progress: Instant,
    /// When a closing connection must be gone.
    linger_deadline: Option<Instant>,
    /// When the handler's timer fires.
    handler_timer: Option<Instant>,
    /// Bytes this connection is counted for in the server-wide budget.
    accounted: usize,
    /// Parked until the budget eases (see `memory`).
    budget_wait: bool,
    /// What the handler asked about this connection from elsewhere (a paused read, a
    /// shutdown after flush), and whether it was told the output passed high water.
    flow: Flow,
}

/// Flow control a handler applies to a connection by id (see `handler::reach`), apart from
/// the [`Phase`]: a connection paused by its handler is still open, and one whose sending
/// side is shut may still read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Flow {
    /// The handler paused reading; input waits in the kernel until it resumes.
    reading_paused: bool,
    /// Output passed high water and the handler was told (`congested`); it is told again
    /// (`drained`) when the output falls to low water.
    congested: bool,
    /// Shut down the sending side once the output is flushed.
    shutdown_pending: bool,
    /// The sending side is shut down: no more output is accepted.
    write_shut: bool,
}

/// What one handler callback may touch of a connection, apart from its id and address:
/// the handler's state, the buffered input, and the buffer its output goes to.
pub(crate) struct Callee<'a, S> {
    /// The handler's state (`None` before `open`).
    pub(crate) session: &'a mut Option<S>,
    /// Input not consumed yet, which the callback may consume (see `rules::feed`).
    pub(crate) input: &'a mut Vec<u8>,
    /// Where the callback's output goes: the shared buffer, or the connection's own.
    pub(crate) out: &'a mut Vec<u8>,
    /// The bytes at the front of `out` already written.
    pub(crate) already_sent: usize,
    /// The length of the connection's own output before the callback (see
    /// [`Connection::abort_output`]).
    pub(crate) mark: usize,
}

/// Whether a closing connection's linger deadline has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Linger {
    /// No deadline was armed.
    Unarmed,
    /// Moved to this later time, as the connection made progress since it was armed.
    Later(Instant),
    /// The deadline has passed.
    Passed,
}

impl<S> Connection<S> {
    /// A connection just accepted.
    pub(crate) fn new(
        stream: MioStream,
        token: Token,
        id: ConnId,
        peer: PeerAddr,
        now: Instant,
    ) -> Self {
        Connection {
            stream,
            transport: Transport::Plain,
            token,
            id,
            peer,
            session: None,
            input: Vec::new(),
            output: Vec::new(),
            sent: 0,
            written: 0,
            foreign: Foreign::default(),
            sender: Sender::default(),
            phase: Phase::Open,
            queued: false,
            dirty: false,
            last_progress: now,
            linger_deadline: None,
            handler_timer: None,
            accounted: 0,
            budget_wait: false,
            flow: Flow::default(),
        }
    }

    /// A connection a handler dialed, whose nonblocking connect to `peer` is under way.
    pub(crate) fn connecting(
        stream: MioStream,
        token: Token,
        id: ConnId,
        peer: PeerAddr,
        now: Instant,
    ) -> Self {
        Connection {
            phase: Phase::Connecting,
            ..Connection::new(stream, token, id, peer, now)
        }
    }

    /// The same connection, carrying its bytes through `transport`.
    pub(crate) fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    // Identity.

    /// The poll token: slab key and generation.
    #[inline]
    pub(crate) fn token(&self) -> Token {
        self.token
    }

    /// The id handlers know it by.
    #[inline]
    pub(crate) fn id(&self) -> ConnId {
        self.id
    }

    /// The peer's address.
    #[inline]
    pub(crate) fn peer(&self) -> PeerAddr {
        self.peer
    }

    // The phase and its transitions.

    /// Where the connection is in its life.
    #[inline]
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the socket is to be read now: the phase reads, and an open connection's
    /// handler has not paused it.
    #[inline]
    pub(crate) fn wants_read(&self) -> bool {
        self.phase.wants_read() && !(self.flow.reading_paused && self.phase.wants_input())
    }

    /// Mark the connection finished for `reason`; false if it already was.
    #[inline]
    pub(crate) fn die(&mut self, reason: CloseReason) -> bool {
        if self.phase.is_dead() {
            return false;
        }
        self.phase = Phase::Dead(reason);
        true
    }

    /// Stop reading an open connection whose output passed high water; false if it was
    /// not open.
    #[inline]
    pub(crate) fn pause_above_high_water(&mut self) -> bool {
        if self.phase != Phase::Open {
            return false;
        }
        self.phase = Phase::Paused;
        true
    }

    /// Read a paused connection again, its output drained; false if it was not paused.
    #[inline]
    pub(crate) fn resume_below_low_water(&mut self) -> bool {
        if self.phase != Phase::Paused {
            return false;
        }
        trace!("connection {}: output drained; resuming reads", self.id);
        self.phase = Phase::Open;
        true
    }

    /// The peer sent EOF (see [`Phase::after_eof`]).
    pub(crate) fn peer_closed(&mut self) {
        self.phase = self.phase.after_eof();
    }

    /// The handler keeps the connection open for output after the peer's EOF; false if it
    /// is no longer open or paused (the callback closed it).
    pub(crate) fn half_close(&mut self) -> bool {
        if !matches!(self.phase, Phase::Open | Phase::Paused) {
            return false;
        }
        self.phase = Phase::HalfClosed;
        true
    }

    /// Close for `reason` once the output is flushed (see
    /// [`Phase::after_close_request`]); false if a close was already under way.
    pub(crate) fn request_close(&mut self, reason: CloseReason) -> bool {
        let before = self.phase;
        self.phase = before.after_close_request(reason);
        self.phase != before
    }

    /// Close for `reason` once the output is flushed, without waiting for the peer's EOF:
    /// as if it had come.
    pub(crate) fn close_after_flush(&mut self, reason: CloseReason) {
        self.phase = self.phase.after_close_request(reason).after_eof();
    }

    /// Output flushed on a closing connection: send our FIN and read until the peer's EOF.
    pub(crate) fn linger(&mut self, reason: CloseReason) {
        trace!(
            "connection {}: output flushed; shutting down writes",
            self.id
        );
        self.shutdown_write();
        self.phase = Phase::Lingering(reason);
    }

    /// The connect finished: the connection is open, and its replies go without delay.
    pub(crate) fn establish(&mut self, now: Instant) {
        trace!("connection {} established to {}", self.id, self.peer);
        self.phase = Phase::Open;
        self.last_progress = now;
        if let Err(err) = self.stream.set_nodelay() {
            debug!("{}: TCP_NODELAY: {err}", self.peer);
        }
    }

    /// The freed connection's last word: why it closed, and the handler's state. Its bytes
    /// leave `budget`.
    pub(crate) fn finish(mut self, budget: &Budget) -> (CloseReason, Option<S>) {
        budget.update(&mut self.accounted, 0);
        let reason = match self.phase {
            Phase::Dead(reason) => reason,
            _ => CloseReason::Shutdown,
        };
        trace!("close connection {} ({}): {reason}", self.id, self.peer);
        (reason, self.session)
    }

    /// A finished connection's reason and handler state, for `Handler::ending`.
    pub(crate) fn ending(&mut self) -> Option<(CloseReason, &mut S)> {
        match (self.phase, self.session.as_mut()) {
            (Phase::Dead(reason), Some(session)) => Some((reason, session)),
            _ => None,
        }
    }

    // Flow control the handler asked for.

    /// The handler paused reading.
    pub(crate) fn pause_reading(&mut self) {
        self.flow.reading_paused = true;
    }

    /// The handler resumed reading; true if it was paused.
    pub(crate) fn resume_reading(&mut self) -> bool {
        std::mem::take(&mut self.flow.reading_paused)
    }

    /// The handler asked to shut down the sending side once the output is flushed.
    pub(crate) fn ask_shutdown_write(&mut self) {
        self.flow.shutdown_pending = true;
    }

    /// Shut down the sending side if the handler asked and the output is flushed.
    #[inline]
    pub(crate) fn shutdown_if_asked(&mut self) {
        if self.flow.shutdown_pending && self.phase != Phase::Connecting && self.pending() == 0 {
            trace!(
                "connection {}: output flushed; shutting down writes as asked",
                self.id
            );
            self.flow.shutdown_pending = false;
            self.flow.write_shut = true;
            self.shutdown_write();
        }
    }

    /// Its sending side is shut down.
    #[inline]
    pub(crate) fn write_shut(&self) -> bool {
        self.flow.write_shut
    }

    /// Whether output from other connections is still taken: not once our FIN is sent.
    pub(crate) fn accepts_output(&self) -> bool {
        !matches!(self.phase, Phase::Dead(_) | Phase::Lingering(_)) && !self.flow.write_shut
    }

    /// The handler was told it is congested (until it is told the output drained).
    #[inline]
    pub(crate) fn is_congested(&self) -> bool {
        self.flow.congested
    }

    /// Record what the handler is about to be told.
    pub(crate) fn noticed(&mut self, notice: Notice) {
        self.flow.congested = notice == Notice::Congested;
    }

    // Flags that pair with the reactor's lists: set when the token is pushed, taken when
    // it is popped, so each connection is on each list at most once.

    /// Mark it for the ready list; false if it is there already.
    #[inline]
    pub(crate) fn mark_queued(&mut self) -> bool {
        !std::mem::replace(&mut self.queued, true)
    }

    /// Taken off the ready list.
    #[inline]
    pub(crate) fn take_queued(&mut self) -> bool {
        std::mem::take(&mut self.queued)
    }

    /// Mark it for the end-of-turn flush list if it has output; false if it is there
    /// already or has nothing to write.
    #[inline]
    pub(crate) fn mark_dirty(&mut self) -> bool {
        if self.dirty || self.pending() == 0 {
            return false;
        }
        self.dirty = true;
        true
    }

    /// Taken off the flush list.
    #[inline]
    pub(crate) fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Mark it parked for the budget; false if it is parked already.
    pub(crate) fn mark_budget_wait(&mut self) -> bool {
        !std::mem::replace(&mut self.budget_wait, true)
    }

    /// Taken off the budget's waiting list.
    pub(crate) fn take_budget_wait(&mut self) -> bool {
        std::mem::take(&mut self.budget_wait)
    }

    // Time.

    /// The connection made progress now (input consumed or output written).
    #[inline]
    pub(crate) fn progressed(&mut self, now: Instant) {
        self.last_progress = now;
    }

    /// When the connection last made progress.
    pub(crate) fn last_progress(&self) -> Instant {
        self.last_progress
    }

    /// Carry out a callback's requests on this connection (its timer; see
    /// `rules::apply`).
    #[inline]
    pub(crate) fn apply(&mut self, actions: Actions) -> Applied {
        rules::apply(actions, &mut self.handler_timer)
    }

    /// Whether the handler's timer is due at `now`; if so it is disarmed.
    pub(crate) fn take_due_timer(&mut self, now: Instant) -> bool {
        if self.handler_timer.is_some_and(|at| at <= now) {
            self.handler_timer = None;
            return true;
        }
        false
    }

    /// Bound a closing connection's life at `at`; false if it was bounded already.
    pub(crate) fn arm_linger(&mut self, at: Instant) -> bool {
        if self.linger_deadline.is_some() {
            return false;
        }
        self.linger_deadline = Some(at);
        true
    }

    /// Whether the linger deadline has passed at `now`; it moves later while the
    /// connection still makes progress (no longer than `linger` after the last).
    pub(crate) fn linger_due(&mut self, now: Instant, linger: Duration) -> Linger {
        let Some(deadline) = self.linger_deadline else {
            return Linger::Unarmed;
        };
        let deadline = deadline.max(self.last_progress + linger);
        if deadline > now {
            self.linger_deadline = Some(deadline);
            return Linger::Later(deadline);
        }
        Linger::Passed
    }

    // Input and output.

    /// Bytes of input the handler has not consumed.
    #[inline]
    pub(crate) fn buffered_input(&self) -> usize {
        self.input.len()
    }

    /// What a callback may touch. Its output goes to `scratch` when given (nothing is
    /// pending), else to the connection's own buffer, taken from `spare` if it has none.
    #[inline]
    pub(crate) fn callee<'a>(
        &'a mut self,
        scratch: Option<&'a mut Vec<u8>>,
        spare: &mut SpareBuffers,
    ) -> Callee<'a, S> {
        if scratch.is_none() && self.output.capacity() == 0 {
            self.output = spare.take();
        }
        let mark = self.output.len();
        let (out, already_sent) = match scratch {
            Some(scratch) => (scratch, 0),
            None => (&mut self.output, self.sent),
        };
        Callee {
            session: &mut self.session,
            input: &mut self.input,
            out,
            already_sent,
            mark,
        }
    }

    /// Queue what a callback wrote to the shared buffer `scratch` (left empty).
    #[inline]
    pub(crate) fn queue_scratch(&mut self, scratch: &mut Vec<u8>) {
        self.output.append(scratch);
    }

    /// Drop the output queued since `mark` (an aborting callback's) and give the rest its
    /// one write, as the eager policy would have.
    pub(crate) fn abort_output(&mut self, mark: usize, stats: &mut Stats, now: Instant) {
        self.output.truncate(mark);
        let _ = self.flush(stats, now);
    }

    /// Bytes queued and not yet written; an emptied output buffer goes back to `spare`,
    /// so an idle connection keeps none.
    #[inline]
    pub(crate) fn release_output(&mut self, spare: &mut SpareBuffers) -> usize {
        let pending = self.pending();
        if pending == 0 && self.output.capacity() > 0 {
            spare.give(std::mem::take(&mut self.output));
        }
        pending
    }

    // The budget.

    /// Bytes this connection's buffers hold from the allocator, for the budget.
    #[inline]
    fn holding(&self) -> usize {
        self.input.capacity() + self.output.capacity() + self.foreign.memory()
    }

    /// Record what it holds now in `budget` (an atomic operation only when it changed).
    #[inline]
    pub(crate) fn account(&mut self, budget: &Budget) {
        let holding = self.holding();
        budget.update(&mut self.accounted, holding);
    }

    /// Whether it may be read under the budget's `pressure`. What it queued on others
    /// counts as its own holding: a sender that fills its receivers' buffers stops being
    /// read as a client filling its own would. Only reading for the handler is held back:
    /// a closing connection reads to reach the peer's EOF.
    #[inline]
    pub(crate) fn may_read(&self, pressure: Pressure) -> bool {
        let holding = self
            .holding()
            .saturating_add(self.queued_on_others() as usize);
        !self.phase.wants_input() || budget::may_read(pressure, holding)
    }

    /// What its callbacks queued on other connections, not yet written.
    #[inline]
    fn queued_on_others(&self) -> u64 {
        self.sender.get().map_or(0, |charge| charge.queued())
    }

    /// The charge its messages to others count against, made on the first (`worker`:
    /// this reactor's index).
    pub(crate) fn charge(&mut self, worker: usize) -> &Arc<Charge> {
        self.sender.charge(worker)
    }

    /// The charge its messages to others count against, if it sent any.
    pub(crate) fn sender_charge(&self) -> Option<&Arc<Charge>> {
        self.sender.get()
    }

    /// The bytes it is to blame for itself in the budget: what it is counted for, less
    /// what other connections queued on it (filed in `blame` under their senders).
    pub(crate) fn blame_own(&mut self, blame: &mut Blame, now: Instant, worker: usize) -> u64 {
        if self.foreign.is_empty() {
            return self.accounted as u64;
        }
        // Only bytes whose sender is gone depend on it: spare the syscall.
        let taking = self.foreign.has_orphans() && self.takes_output(now);
        blame.receiver(
            self.accounted,
            &self.foreign,
            self.output.capacity(),
            self.output.len() - self.sent,
            taking,
            worker,
        )
    }

    /// Log, at debug level, what it holds as it is closed for the budget.
    pub(crate) fn log_budget_close(&self) {
        debug!(
            "connection {} closed for the budget: input {} of {} bytes, output {} of {}, \
             queued on others {}",
            self.id,
            self.input.len(),
            self.input.capacity(),
            self.pending(),
            self.output.capacity(),
            self.queued_on_others(),
        );
    }

    /// Whether the peer takes the output other connections queued here (see
    /// [`Foreign::taken_lately`]); may ask the kernel (one `ioctl`).
    fn takes_output(&mut self, now: Instant) -> bool {
        let (stream, written) = (&self.stream, self.written);
        self.foreign.taken_lately(now, || {
            let queued = stream.unacknowledged().ok()?;
            Some(written.saturating_sub(queued))
        })
    }

    /// Queue `bytes` that another connection's callback sent, counted against `charge`
    /// (its sender) if given.
    #[inline]
    pub(crate) fn queue_foreign(
        &mut self,
        bytes: &[u8],
        charge: Option<&Arc<Charge>>,
        now: Instant,
    ) {
        if let Some(charge) = charge {
            let position = self.written + (self.output.len() - self.sent) as u64;
            self.foreign.push(charge, position, bytes.len(), now);
        }
        self.output.extend_from_slice(bytes);
    }

    // The socket.

    /// Whether a connect under way has finished, once the poll reported the socket.
    pub(crate) fn connect_result(&self) -> rules::Connect {
        match self.stream.take_error() {
            Ok(None) => {}
            Ok(Some(err)) | Err(err) => return rules::Connect::from_error(err),
        }
        match self.stream.is_connected() {
            Ok(_) => rules::Connect::Established,
            Err(err) if err.kind() == io::ErrorKind::NotConnected => rules::Connect::Pending,
            Err(err) => rules::Connect::Failed(err),
        }
    }

    /// Make the close a reset: with `SO_LINGER` 0, dropping the socket sends RST.
    pub(crate) fn set_reset_on_close(&self) {
        // Failure leaves an ordinary close: the peer still sees the connection end.
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(std::time::Duration::ZERO));
    }

    /// The TLS handshake is not finished.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.transport.is_handshaking()
    }

    /// Whether output queued during the TLS handshake may go now (asked once).
    #[inline]
    pub(crate) fn take_flush_due(&mut self) -> bool {
        self.transport.take_flush_due()
    }

    /// The unsent output, oldest byte first (for the live page's step mode).
    pub(crate) fn unsent(&self) -> &[u8] {
        &self.output[self.sent..]
    }

    /// True while reads wait: the handler paused them, or the budget parked them (the
    /// phase says when backpressure did). For the live page.
    pub(crate) fn reads_held(&self) -> bool {
        self.flow.reading_paused || self.budget_wait
    }

    /// Bytes queued and not yet written (plaintext the transport holds included).
    #[inline]
    pub(crate) fn pending(&self) -> usize {
        self.output.len() - self.sent + self.transport.unsent()
    }

    /// One `read` into `buf`, classified.
    #[inline]
    pub(crate) fn read_into(&mut self, buf: &mut [u8]) -> ReadOutcome {
        self.transport.read(&mut self.stream, buf)
    }

    /// Write queued output until it is all sent or the kernel buffer is full.
    /// Counts the calls and the bytes written in `stats`; `now` dates the progress of
    /// output other connections queued.
    pub(crate) fn flush(&mut self, stats: &mut Stats, now: Instant) -> FlushOutcome {
        let outcome = self.write_output(stats);
        self.foreign.settle(self.written, now);
        outcome
    }

    /// [`flush`](Connection::flush) before the foreign runs are credited.
    fn write_output(&mut self, stats: &mut Stats) -> FlushOutcome {
        while self.sent < self.output.len() {
            stats.writes += 1;
            // `write` on a `MioStream` is `send(MSG_NOSIGNAL)`: a reset peer yields EPIPE
            // instead of raising SIGPIPE in the (possibly embedding) process.
            match self
                .transport
                .write(&mut self.stream, &self.output[self.sent..])
            {
                Ok(0) => return FlushOutcome::Failed(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    self.written += n as u64;
                    stats.bytes_out += n as u64;
                }
                // Not an error: wait for the writable edge. Drop what was sent once it is
                // half the buffer (amortised O(1) per byte), so output that never fully
                // drains does not keep every byte ever sent.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if self.sent >= self.output.len() / 2 {
                        self.output.drain(..self.sent);
                        self.sent = 0;
                    }
                    return FlushOutcome::Blocked;
                }
                // Interrupted before anything was written: retry.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return FlushOutcome::Failed(err),
            }
        }
        self.output.clear();
        self.sent = 0;
        if self.output.capacity() > KEEP_OUTPUT_CAPACITY {
            self.output = Vec::new();
        }
        self.push_transport()
    }

    /// Write what the transport still holds (TLS records); plain sockets hold nothing.
    #[inline]
    fn push_transport(&mut self) -> FlushOutcome {
        match self.transport.push(&mut self.stream) {
            Ok(true) => FlushOutcome::Done,
            Ok(false) => FlushOutcome::Blocked,
            Err(err) => FlushOutcome::Failed(err),
        }
    }

    /// Send `bytes` now, when nothing else is queued; whatever the kernel does not take is
    /// queued in `output` for the next writable edge. Counts the calls and the bytes
    /// written in `stats`.
    pub(crate) fn send(&mut self, bytes: &[u8], stats: &mut Stats) -> FlushOutcome {
        debug_assert_eq!(self.pending(), 0, "send would reorder queued output");
        let mut done = 0;
        while done < bytes.len() {
            stats.writes += 1;
            match self.transport.write(&mut self.stream, &bytes[done..]) {
                Ok(0) => return FlushOutcome::Failed(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done += n;
                    self.written += n as u64;
                    stats.bytes_out += n as u64;
                }
                // The kernel buffer is full: keep the rest for the writable edge.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.output.extend_from_slice(&bytes[done..]);
                    return FlushOutcome::Blocked;
                }
                // Interrupted before anything was written: retry.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return FlushOutcome::Failed(err),
            }
        }
        self.push_transport()
    }

    /// Shut down our sending side: the peer sees EOF after the bytes already sent (and,
    /// over TLS, after `close_notify`).
    fn shutdown_write(&mut self) {
        self.close_notify();
        // Failure means the peer is already gone; reading will report it.
        let _ = self.stream.shutdown_write();
    }

    /// End the transport's stream gracefully before a close (TLS `close_notify`).
    #[inline]
    pub(crate) fn close_notify(&mut self) {
        self.transport.close_notify(&mut self.stream);
    }
}

/// Where a connection is in its life. Each phase says what the connection reads and what
/// ends it; the transitions are [`Connection`]'s methods, which `Reactor::settle` and the
/// rest of `lifecycle` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Dialed by a handler: the nonblocking connect is under way. Output is queued, not
    /// sent; nothing is read.
    Connecting,
    /// Reading, and feeding the handler.
    Open,
    /// Unsent output passed the high-water mark: not read until it drains to low water.
    Paused,
    /// The peer sent EOF: nothing more is read. Flush, then close for this reason (`Eof`,
    /// or the reason of a close requested before the EOF).
    Draining(CloseReason),
    /// Closing for this reason once output is flushed. Input is read and discarded, so
    /// that the close does not become a reset.
    Closing(CloseReason),
    /// Output flushed and our FIN sent: read and discard until the peer's EOF or the
    /// linger deadline, then close for this reason.
    Lingering(CloseReason),
    /// The peer sent EOF and the handler keeps the connection open for output (a
    /// half-close): nothing is read; it closes when the handler closes it or shuts its
    /// sending side.
    HalfClosed,
    /// Finished; freed at the end of the turn, and the handler told this reason.
    Dead(CloseReason),
}

impl Phase {
    /// True while input is read and given to the handler.
    #[inline]
    pub(crate) fn wants_input(self) -> bool {
        self == Phase::Open
    }

    /// True while the socket is read at all (a closing connection reads and discards input
    /// until the peer's EOF).
    #[inline]
    pub(crate) fn wants_read(self) -> bool {
        matches!(self, Phase::Open | Phase::Closing(_) | Phase::Lingering(_))
    }

    /// True once the connection only waits to be freed.
    #[inline]
    pub(crate) fn is_dead(self) -> bool {
        matches!(self, Phase::Dead(_))
    }

    /// The reason a close was requested for (by the handler, a limit or a stop), if any.
    #[inline]
    pub(crate) fn close_requested(self) -> Option<CloseReason> {
        match self {
            Phase::Closing(reason) | Phase::Lingering(reason) => Some(reason),
            Phase::Draining(reason) if reason != CloseReason::Eof => Some(reason),
            _ => None,
        }
    }

    /// The phase after the peer's EOF: a close already requested keeps its reason.
    pub(crate) fn after_eof(self) -> Phase {
        match self {
            Phase::Open | Phase::Paused | Phase::Connecting => Phase::Draining(CloseReason::Eof),
            Phase::Closing(reason) | Phase::Lingering(reason) => Phase::Draining(reason),
            Phase::Draining(_) | Phase::HalfClosed | Phase::Dead(_) => self,
        }
    }

    /// The phase after a close is requested for `reason`: the first request wins.
    pub(crate) fn after_close_request(self, reason: CloseReason) -> Phase {
        match self {
            Phase::Open | Phase::Paused => Phase::Closing(reason),
            // The peer has finished already: flush, then close without lingering.
            Phase::Draining(CloseReason::Eof) | Phase::HalfClosed => Phase::Draining(reason),
            _ => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    /// A connection on the accepting end of a real loopback TCP pair, and its peer.
    fn accepted(now: Instant) -> (Connection<()>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let peer = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (ours, addr) = listener.accept().expect("accept");
        ours.set_nonblocking(true).expect("nonblocking");
        let stream = MioStream::Tcp(mio::net::TcpStream::from_std(ours));
        let conn = Connection::new(stream, Token(7), ConnId(3), addr.into(), now);
        (conn, peer)
    }

    #[test]
    fn output_goes_back_to_the_spare_pool_only_once_sent() {
        let (mut conn, mut peer) = accepted(Instant::now());
        let mut spare = SpareBuffers::default();
        let callee = conn.callee(None, &mut spare);
        assert_eq!((callee.mark, callee.already_sent), (0, 0));
        callee.out.extend_from_slice(b"hello");
        assert_eq!(conn.release_output(&mut spare), 5, "unsent output is kept");
        assert!(
            spare.take().capacity() == 0,
            "nothing went back to the pool"
        );
        let mut stats = Stats::default();
        assert!(matches!(
            conn.flush(&mut stats, Instant::now()),
            FlushOutcome::Done
        ));
        assert_eq!(stats.bytes_out, 5);
        let mut got = [0; 5];
        peer.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"hello");
        assert_eq!(conn.release_output(&mut spare), 0);
        assert!(
            spare.take().capacity() > 0,
            "the emptied buffer is in the pool"
        );
    }

    #[test]
    fn the_list_flags_are_set_once_until_taken() {
        let (mut conn, _peer) = accepted(Instant::now());
        assert!(conn.mark_queued());
        assert!(!conn.mark_queued(), "already on the ready list");
        assert!(conn.take_queued());
        assert!(conn.mark_queued(), "back on the list once taken off");
        assert!(!conn.mark_dirty(), "nothing to flush");
        let mut scratch = b"queued".to_vec();
        conn.queue_scratch(&mut scratch);
        assert!(scratch.is_empty());
        assert_eq!(conn.pending(), 6);
        assert!(conn.mark_dirty());
        assert!(!conn.mark_dirty(), "already on the flush list");
        assert!(conn.take_dirty());
        assert!(conn.mark_budget_wait());
        assert!(!conn.mark_budget_wait());
        assert!(conn.take_budget_wait());
        assert!(!conn.take_budget_wait());
    }

    #[test]
    fn the_linger_deadline_moves_with_progress_and_then_passes() {
        let start = Instant::now();
        let linger = Duration::from_secs(5);
        let (mut conn, _peer) = accepted(start);
        assert_eq!(conn.linger_due(start, linger), Linger::Unarmed);
        assert!(conn.arm_linger(start + linger));
        assert!(
            !conn.arm_linger(start + 2 * linger),
            "the first bound stays"
        );
        let progress = start + Duration::from_secs(3);
        conn.progressed(progress);
        let at_first = start + linger;
        assert_eq!(
            conn.linger_due(at_first, linger),
            Linger::Later(progress + linger)
        );
        assert_eq!(conn.linger_due(progress + linger, linger), Linger::Passed);
    }

    #[test]
    fn a_connection_dies_once_and_leaves_the_budget_when_freed() {
        let (mut conn, _peer) = accepted(Instant::now());
        let budget = Budget::new(1 << 20, 1);
        let mut scratch = vec![0; 100];
        conn.queue_scratch(&mut scratch);
        conn.account(&budget);
        assert!(budget.held() >= 100);
        assert!(conn.request_close(CloseReason::Handler));
        assert!(
            !conn.request_close(CloseReason::Shutdown),
            "the first request wins"
        );
        assert!(conn.die(CloseReason::Reset));
        assert!(!conn.die(CloseReason::Handler), "already dead");
        let (reason, session) = conn.finish(&budget);
        assert_eq!((reason, session), (CloseReason::Reset, None));
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_handler_pause_stops_reading_only_while_open() {
        let (mut conn, _peer) = accepted(Instant::now());
        assert!(conn.wants_read());
        conn.pause_reading();
        assert!(!conn.wants_read());
        assert!(conn.request_close(CloseReason::Handler));
        assert!(
            conn.wants_read(),
            "a closing connection reads to reach the EOF"
        );
        assert!(conn.resume_reading());
        assert!(!conn.resume_reading());
    }

    #[test]
    fn a_close_request_survives_the_peers_eof() {
        let closing = Phase::Open.after_close_request(CloseReason::Handler);
        assert_eq!(closing.after_eof(), Phase::Draining(CloseReason::Handler));
        let lingering = Phase::Lingering(CloseReason::InputLimit);
        assert_eq!(
            lingering.after_eof(),
            Phase::Draining(CloseReason::InputLimit)
        );
    }

    #[test]
    fn the_first_close_request_wins() {
        let eof = Phase::Paused.after_eof();
        assert_eq!(eof, Phase::Draining(CloseReason::Eof));
        assert_eq!(eof.close_requested(), None);
        let shutdown = eof.after_close_request(CloseReason::Shutdown);
        assert_eq!(shutdown.close_requested(), Some(CloseReason::Shutdown));
        let again = shutdown.after_close_request(CloseReason::Handler);
        assert_eq!(again, shutdown);
        let dead = Phase::Dead(CloseReason::Reset);
        assert_eq!(dead.after_close_request(CloseReason::Handler), dead);
        assert_eq!(dead.after_eof(), dead);
    }

    #[test]
    fn only_an_open_connection_feeds_the_handler() {
        let phases = [
            Phase::Open,
            Phase::Paused,
            Phase::Draining(CloseReason::Eof),
            Phase::Closing(CloseReason::Handler),
            Phase::Lingering(CloseReason::Handler),
            Phase::Dead(CloseReason::Reset),
        ];
        let feeding: Vec<bool> = phases.iter().map(|p| p.wants_input()).collect();
        assert_eq!(feeding, [true, false, false, false, false, false]);
        let reading: Vec<bool> = phases.iter().map(|p| p.wants_read()).collect();
        assert_eq!(reading, [true, false, false, true, true, false]);
        for quiet in [Phase::Connecting, Phase::HalfClosed] {
            assert!(!quiet.wants_input() && !quiet.wants_read());
        }
    }

    #[test]
    fn a_half_closed_connection_closes_without_lingering_when_asked() {
        let asked = Phase::HalfClosed.after_close_request(CloseReason::Handler);
        assert_eq!(asked, Phase::Draining(CloseReason::Handler));
        assert_eq!(Phase::HalfClosed.after_eof(), Phase::HalfClosed);
    }
}
