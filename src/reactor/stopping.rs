//! The reactor's stopping part: the flags other threads raise (stop, hand over) and, once
//! the stop has begun, its deadline, or the listener failure that caused it. The stop
//! procedure itself is `Reactor::check_stop`'s (docs/architecture.md tells it).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Whether, why and until when this worker is stopping.
#[derive(Debug)]
pub(super) struct Stopping {
    /// Raised by a `StopHandle` (or a signal in the binary).
    pub(super) asked: Arc<AtomicBool>,
    /// Raised when a successor serves the listeners: stop accepting, keep serving.
    pub(super) handover: Arc<AtomicBool>,
    /// Set when the stop begins: when the last connections are dropped regardless.
    pub(super) deadline: Option<Instant>,
    /// The listener broke: the worker stops and reports this.
    pub(super) failure: Option<io::Error>,
}

impl Stopping {
    /// Not stopping yet; `asked` and `handover` are raised from other threads.
    pub(super) fn new(asked: Arc<AtomicBool>, handover: Arc<AtomicBool>) -> Self {
        Stopping {
            asked,
            handover,
            deadline: None,
            failure: None,
        }
    }

    /// True if the worker should stop: asked to, or its listener failed.
    pub(super) fn is_asked(&self) -> bool {
        self.asked.load(Ordering::SeqCst) || self.failure.is_some()
    }

    /// True if a successor now serves the listeners.
    pub(super) fn is_handed_over(&self) -> bool {
        self.handover.load(Ordering::SeqCst)
    }

    /// True once the stop has begun (new clients are refused).
    pub(super) fn has_begun(&self) -> bool {
        self.deadline.is_some()
    }
}
