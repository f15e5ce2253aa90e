//! The reactor's work for the current turn: connections to serve again, to flush, to
//! notify and to free, mail taken from other workers, and what the current callback asked.
//! Each list is drained by one step of `Reactor::turn`; this file only holds them.

use mio::Token;

use super::mail::Mail;
use super::types::Notice;
use crate::handler::Outbox;

/// The turn's lists, reused from turn to turn.
#[derive(Debug)]
pub(super) struct Queues {
    /// Connections a budget stopped early, to read again next turn.
    pub(super) ready: Vec<Token>,
    /// Connections with output to write at the end of this turn (sent by other
    /// connections, or deferred by the write policy); each is listed once.
    pub(super) dirty: Vec<Token>,
    /// This turn's output waits for the end-of-turn flush
    /// ([`WritePolicy::defers`](crate::WritePolicy::defers)); false once the flush step has
    /// run, so timer callbacks write at once.
    pub(super) defer: bool,
    /// Finished connections, freed at the end of the turn.
    pub(super) reap: Vec<usize>,
    /// Connections whose handler must be told their output passed high water or drained.
    pub(super) notices: Vec<(Token, Notice)>,
    /// Mail taken from other workers (buffer reused).
    pub(super) inbox: Vec<Mail>,
    /// What the current callback sent to other connections (an arena reused across
    /// callbacks, emptied after each).
    pub(super) outbox: Outbox,
    /// Set by the last `read_closed` callback: the handler keeps the connection half open.
    pub(super) half_open_asked: bool,
}

impl Queues {
    /// Empty lists, with `outbox` for the callbacks' requests.
    pub(super) fn new(outbox: Outbox) -> Self {
        Queues {
            ready: Vec::new(),
            dirty: Vec::new(),
            defer: false,
            reap: Vec::new(),
            notices: Vec::new(),
            inbox: Vec::new(),
            outbox,
            half_open_asked: false,
        }
    }
}
