//! One client of the reactor: its socket, its buffers, its [`Phase`] of life, and the
//! classification of every write result.
//!
//! This module owns the socket calls for connections and turns their results into a few
//! outcomes the reactor can act on (reads are classified by `rules::read_once`, shared with
//! the threads model). It must not call the handler or know about other connections; the
//! rest of the reactor decides what a connection does next, through the methods here: the
//! fields are private, so the output's `sent` mark, the phase, the flags that pair with the
//! reactor's lists and the budget's figure change only in the ways written here and in
//! its files: `phase` (the `Phase` type), `socket_io` (reads, writes, shutdowns: `sent`
//! moves only there) and `accounting` (its share of the budget).

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
}

#[cfg(test)]
mod tests;

mod accounting;
mod phase;
mod socket_io;

pub(crate) use phase::Phase;
