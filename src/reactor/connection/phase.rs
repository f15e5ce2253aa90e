//! A connection's life as one type: open, paused, draining after EOF, closing, dead.

use super::*;

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
