//! Small types the reactor's files share: what to call a handler for, what a handler is
//! told about output, what a deadline is for, and the tokens that are not connections.
//!
//! They live apart from the behaviour that uses them, so the files that act on them
//! (`io_path`, `outbound`, `timer`, `lifecycle`) need not import one another. Nothing here
//! acts.

use std::sync::Arc;

use mio::Token;

use super::driven::PostBox;
use super::mail::Mailboxes;
use crate::Config;
use crate::worker::Live;

/// The accept back-off timer's token; connection tokens never reach it (their key fits in
/// 32 bits and the slab never holds billions).
pub(super) const ACCEPT_BACKOFF: Token = Token(usize::MAX);
/// The waker's token: another thread wants our attention (stop, or mail).
pub(super) const WAKER: Token = Token(usize::MAX - 1);
/// Listener `i` is registered as `FIRST_LISTENER - i`.
pub(super) const FIRST_LISTENER: usize = usize::MAX - 2;

/// Which handler callback `Reactor::invoke` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    /// `Handler::open`, right after accept.
    Open,
    /// `Handler::data`, with this many fresh bytes in the read buffer (0: only buffered input).
    Data(usize),
    /// `Handler::timer`.
    Timer,
    /// `Handler::connected`, once a dialed connection is established.
    Connected,
    /// `Handler::read_closed`, after the peer's EOF.
    ReadClosed,
    /// `Handler::congested`.
    Congested,
    /// `Handler::drained`.
    Drained,
}

/// What a handler is told about a connection's output, at the end of a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Notice {
    /// Unsent output passed high water: `Handler::congested`.
    Congested,
    /// Unsent output fell to low water after passing high water: `Handler::drained`.
    Drained,
}

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKind {
    /// The connection may have been silent for the idle timeout.
    Idle,
    /// A closing connection's linger bound.
    Linger,
    /// A timer the handler set.
    Handler,
    /// Accepting may resume after running out of file descriptors.
    AcceptBackoff,
    /// A dialed connection must be established by now.
    Connect,
    /// The TLS handshake must have completed by now.
    Handshake,
    /// A trusted client's PROXY header must have arrived by now.
    ProxyHeader,
}

/// What a worker is given when it is built: its place among the server's workers, its
/// limits, and the handles it shares with the server and the other workers.
#[derive(Debug)]
pub(super) struct Setup {
    /// This worker's index.
    pub(super) index: usize,
    /// How many workers share the server.
    pub(super) workers: usize,
    /// Limits and timeouts.
    pub(super) config: Config,
    /// Server-wide gauges; the connection limit is enforced on them.
    pub(super) live: Arc<Live>,
    /// Mailboxes of all workers, for `send_to` across workers.
    pub(super) mailboxes: Arc<Mailboxes>,
    /// Messages posted from other threads, and the waker that announces them.
    pub(super) posts: Arc<PostBox>,
}
