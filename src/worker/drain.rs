//! Whether a server is draining: a stop or an upgrade has begun, so a load balancer
//! should send it no new clients. The metrics endpoint's `/healthz` answers 503 while it
//! is set, and a handler given the same [`Draining`] (the `http` protocol) asks each
//! keep-alive client to go elsewhere (`Connection: close` on its next response).
//!
//! A leaf of one shared flag: it must not stop or wake anything itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A shared "draining" flag: clones see the same flag.
///
/// [`Running::stop`](crate::Running::stop) and [`Running::hand_over`](crate::Running::hand_over)
/// set it; [`Running::set_draining`](crate::Running::set_draining) sets or clears it
/// earlier (an upgrade that has only begun, and may fail).
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// A flag that is not set.
    pub fn new() -> Self {
        Draining::default()
    }

    /// True while draining.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Set (`true`) or clear the flag.
    pub fn set(&self, draining: bool) {
        self.0.store(draining, Ordering::Relaxed);
    }
}
