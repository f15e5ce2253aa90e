//! A client thread's deadlines: the handler's timer, the idle timeout and the TLS
//! handshake's, the earliest of which bounds each blocking read.

use std::sync::Arc;
use std::time::Instant;

use super::Client;
use crate::handler::Actions;
use crate::rules::Ending;
use crate::{CloseReason, Handler};

impl<H: Handler> Client<H> {
    /// The earliest of the handler's timer, the idle deadline and the TLS handshake's.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let idle = self
            .shared
            .config
            .idle_timeout
            .map(|idle| self.last_progress + idle);
        let earliest = match (idle, self.timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (earliest, self.peer.wire.handshake_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Close an idle client, or fire the handler's timer, when due.
    pub(super) fn expire(&mut self, session: &mut H::Session) -> Option<Ending> {
        // Most connections have no deadline at all: no need to read the clock.
        let due = self.next_deadline()?;
        let now = Instant::now();
        if now < due {
            return None;
        }
        if self
            .peer
            .wire
            .handshake_deadline()
            .is_some_and(|at| now >= at)
        {
            log::debug!("{} ({}): no TLS handshake in time", self.id, self.addr);
            return Some(Ending::Abrupt(CloseReason::HandshakeTimeout));
        }
        if let Some(idle) = self.shared.config.idle_timeout
            && now >= self.last_progress + idle
        {
            log::debug!("{} ({}) idle for {idle:?}", self.id, self.addr);
            return Some(Ending::Graceful(CloseReason::IdleTimeout));
        }
        if self.timer.is_some_and(|at| now >= at) {
            self.timer = None;
            let mut actions = Actions::default();
            let handler = Arc::clone(&self.shared.handler);
            handler.timer(
                session,
                &mut self.fx.context(self.id, self.addr, now, &mut actions),
            );
            return self.after_callback(actions, false);
        }
        None
    }
}
