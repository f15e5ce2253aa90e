//! Connection identity and the reasons a connection ends.
//!
//! Shared by every server model and by protocols; owns no I/O.

use std::fmt;
use std::io;

/// Identifies one connection for its whole life, across every worker of a server.
///
/// Ids are never reused while the server runs, so a message sent to a connection that
/// has closed is dropped instead of reaching a newcomer. The number inside is the server's
/// business (it also routes messages between workers); it is shown by `Display`, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub(crate) u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a connection was closed, as seen by [`Handler::close`](crate::Handler::close) and
/// counted in [`Stats`](crate::Stats).
///
/// More reasons may be added in later versions: a `match` needs a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its sending side (`read` returned 0) and queued output was flushed.
    Eof,
    /// The peer reset the connection or it broke (`ECONNRESET`, `EPIPE`).
    Reset,
    /// The handler closed it ([`Context::close`](crate::Context::close) or `abort`).
    Handler,
    /// Unconsumed input reached the input cap.
    InputLimit,
    /// Unsent output reached the output cap.
    OutputLimit,
    /// The connection made no progress (no input consumed, no output written) for the idle
    /// timeout.
    IdleTimeout,
    /// Queued output could not be flushed within the linger timeout after EOF or close.
    LingerTimeout,
    /// The server was stopped.
    Shutdown,
    /// A TLS client did not complete its handshake within the handshake timeout.
    HandshakeTimeout,
    /// Another I/O error.
    Error(io::ErrorKind),
    /// A connection started with [`Context::connect`](crate::Context::connect) could not be
    /// established: refused, unreachable, or not within the connect timeout (`TimedOut`).
    ConnectFailed(io::ErrorKind),
    /// The server's buffered bytes reached `Config::max_buffered` and this connection was
    /// among those holding the most.
    MemoryBudget,
}

impl CloseReason {
    /// Every reason kind, in the order [`CloseReason::index`] numbers them.
    pub const NAMES: [&'static str; 12] = [
        "eof",
        "reset",
        "handler",
        "input_limit",
        "output_limit",
        "idle_timeout",
        "linger_timeout",
        "shutdown",
        "error",
        "connect_failed",
        "handshake_timeout",
        "memory_budget",
    ];

    /// A dense index for counting reasons in an array (see [`CloseReason::NAMES`]).
    pub fn index(self) -> usize {
        match self {
            CloseReason::Eof => 0,
            CloseReason::Reset => 1,
            CloseReason::Handler => 2,
            CloseReason::InputLimit => 3,
            CloseReason::OutputLimit => 4,
            CloseReason::IdleTimeout => 5,
            CloseReason::LingerTimeout => 6,
            CloseReason::Shutdown => 7,
            CloseReason::Error(_) => 8,
            CloseReason::ConnectFailed(_) => 9,
            CloseReason::HandshakeTimeout => 10,
            CloseReason::MemoryBudget => 11,
        }
    }

    /// Classify an I/O error that ended a connection: the peer going away is a reset, the
    /// rest are errors.
    pub(crate) fn from_io(err: &io::Error) -> CloseReason {
        match err.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected => CloseReason::Reset,
            kind => CloseReason::Error(kind),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Error(kind) => write!(f, "error ({kind})"),
            CloseReason::ConnectFailed(kind) => write!(f, "connect_failed ({kind})"),
            other => f.write_str(CloseReason::NAMES[other.index()]),
        }
    }
}
