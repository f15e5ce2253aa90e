//! One client of the reactor: its socket, its buffers, its [`Phase`] of life, and the
//! classification of every write result.
//!
//! This module owns the socket calls for connections and turns their results into a few
//! outcomes the reactor can act on (reads are classified by `rules::read_once`, shared with
//! the threads model). It must not call the handler or know about other connections; the
//! rest of the reactor decides what a connection does next.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use mio::Token;

use super::socket::MioStream;
use crate::PeerAddr;
use crate::budget::{Charge, Foreign, Sender};

use crate::io::transport::Transport;
use crate::rules::{self, HalfClose, ReadOutcome};
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
    pub(crate) stream: MioStream,
    /// What bytes travel through between the buffers and the socket: the socket itself,
    /// or TLS. Everything else in the connection counts plaintext.
    pub(crate) transport: Transport,
    /// Slab key in the low 32 bits, a generation in the high bits, so an event for a
    /// reused slot is recognised as stale.
    pub(crate) token: Token,
    /// The id handlers use; unique for the server's life.
    pub(crate) id: ConnId,
    /// The peer's address, for logs and handlers.
    pub(crate) peer: PeerAddr,
    /// The handler's state for this connection; taken when it closes.
    pub(crate) session: Option<S>,
    /// Input the handler has not consumed yet. Empty (and unallocated) most of the time:
    /// input is handed to the handler straight from the reactor's shared read buffer.
    pub(crate) input: Vec<u8>,
    /// Output not yet sent; bytes before `sent` already left.
    pub(crate) output: Vec<u8>,
    /// How much of `output` has been written.
    pub(crate) sent: usize,
    /// Bytes of output written over the connection's life: with the unsent bytes, the
    /// position in its output stream that [`Foreign`] runs are recorded at.
    written: u64,
    /// The runs of unsent output that other connections' callbacks queued, and whom they
    /// count against in the budget.
    pub(crate) foreign: Foreign,
    /// What this connection's callbacks queued on others, counted against it in the
    /// budget; made on its first message to another connection.
    pub(crate) sender: Sender,
    /// Where the connection is in its life; decides what it reads and when it closes.
    pub(crate) phase: Phase,
    /// Already on the ready list for a revisit next turn (independent of the phase: any
    /// phase that reads can be stopped early by a budget).
    pub(crate) queued: bool,
    /// On the list of connections whose output another connection queued this turn, to be
    /// flushed at its end.
    pub(crate) dirty: bool,
    /// When the connection last made progress (the handler consumed input, or output was
    /// written), for the idle timeout and the linger bound.
    pub(crate) last_progress: Instant,
    /// When a closing connection must be gone.
    pub(crate) linger_deadline: Option<Instant>,
    /// When the handler's timer fires.
    pub(crate) handler_timer: Option<Instant>,
    /// Bytes this connection is counted for in the server-wide budget.
    pub(crate) accounted: usize,
    /// Parked until the budget eases (see `memory`).
    pub(crate) budget_wait: bool,
    /// What the handler asked about this connection from elsewhere (a paused read, a
    /// shutdown after flush), and whether it was told the output passed high water.
    pub(crate) flow: Flow,
}

/// Flow control a handler applies to a connection by id (see `handler::reach`), apart from
/// the [`Phase`]: a connection paused by its handler is still open, and one whose sending
/// side is shut may still read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flow {
    /// The handler paused reading; input waits in the kernel until it resumes.
    pub(crate) reading_paused: bool,
    /// Output passed high water and the handler was told (`congested`); it is told again
    /// (`drained`) when the output falls to low water.
    pub(crate) congested: bool,
    /// Shut down the sending side once the output is flushed.
    pub(crate) shutdown_pending: bool,
    /// The sending side is shut down: no more output is accepted.
    pub(crate) write_shut: bool,
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

    /// Bytes this connection's buffers hold from the allocator, for the budget.
    #[inline]
    pub(crate) fn holding(&self) -> usize {
        self.input.capacity() + self.output.capacity() + self.foreign.memory()
    }

    /// Whether the peer takes the output other connections queued here (see
    /// [`Foreign::taken_lately`]); may ask the kernel (one `ioctl`).
    pub(crate) fn takes_output(&mut self, now: Instant) -> bool {
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

    /// The same connection, carrying its bytes through `transport`.
    pub(crate) fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
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
    pub(crate) fn shutdown_write(&mut self) {
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
/// ends it; the transitions are the methods below and `Reactor::settle`.
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
