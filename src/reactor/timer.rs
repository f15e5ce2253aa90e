//! Deadlines for the reactor: idle timeouts, linger bounds, handler timers and the accept
//! back-off, and what the reactor does when one passes.
//!
//! A binary heap of `(deadline, token, kind)` with *lazy cancellation*: entries are never
//! removed early. When one comes due the reactor checks it against the connection's current
//! state and ignores it if it is stale (the connection is gone, or its deadline moved). That
//! keeps arming a timer O(log n) with no bookkeeping per cancel, and at most a few entries
//! per connection. Nothing here touches a socket.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use log::debug;
use mio::Token;

use super::Reactor;
use super::connection::{Linger, Phase};
use super::types::{Call, TimerKind};
use crate::{CloseReason, Handler};

/// A min-heap of deadlines with lazy cancellation.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// Earliest deadline on top.
    heap: BinaryHeap<Reverse<(Instant, Token, TimerKind)>>,
}

impl Timers {
    /// Arm a deadline. Older deadlines for the same token and kind stay in the heap and are
    /// recognised as stale when they come due.
    pub(crate) fn arm(&mut self, at: Instant, token: Token, kind: TimerKind) {
        self.heap.push(Reverse((at, token, kind)));
    }

    /// How long `poll` may sleep before the next deadline; `None` when there is none.
    pub(crate) fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((at, _, _))| at.saturating_duration_since(now))
    }

    /// Remove and return the next entry that is due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Token, TimerKind)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }

    /// The `n` earliest deadlines whose token `owner` names (it returns `None` for stale
    /// ones), earliest first, with the name it gives.
    pub(crate) fn next(
        &self,
        n: usize,
        owner: impl Fn(Token) -> Option<String>,
    ) -> Vec<(Instant, String, TimerKind)> {
        let mut all: Vec<_> = self.heap.iter().map(|Reverse(entry)| *entry).collect();
        all.sort_unstable();
        all.into_iter()
            .filter_map(|(at, token, kind)| owner(token).map(|name| (at, name, kind)))
            .take(n)
            .collect()
    }

    /// Entries in the heap, stale ones included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

impl<H: Handler> Reactor<H> {
    /// Act on every deadline that has passed; stale entries are skipped.
    pub(super) fn expire_timers(&mut self) {
        while let Some((_, token, kind)) = self.timers.pop_due(self.now) {
            if kind == TimerKind::AcceptBackoff {
                self.observed.watching.timer_fired();
                self.accepting.paused = false;
                self.accepting.ready = true;
                continue;
            }
            if kind == TimerKind::ProxyHeader {
                self.expire_header(token);
                continue;
            }
            let Some(key) = self.live_key(token) else {
                continue;
            };
            self.observed.watching.timer_fired();
            match kind {
                TimerKind::Idle => self.expire_idle(key),
                TimerKind::Linger => self.expire_linger(key),
                TimerKind::Handler => self.expire_handler_timer(key),
                TimerKind::Connect => self.expire_connect(key),
                TimerKind::Handshake => self.expire_handshake(key),
                TimerKind::AcceptBackoff | TimerKind::ProxyHeader => {}
            }
        }
    }

    /// Close connection `key` if its handshake has not completed by its deadline.
    fn expire_handshake(&mut self, key: usize) {
        let conn = &self.conns[key];
        if conn.is_handshaking() && !conn.phase().is_dead() {
            debug!(
                "connection {} ({}): no TLS handshake within {:?}; closing",
                conn.id(),
                conn.peer(),
                self.setup.config.handshake_timeout
            );
            self.kill(key, CloseReason::HandshakeTimeout);
        }
    }

    /// Fire the handler's timer of connection `key` if it is still due, unless the
    /// connection is closing.
    fn expire_handler_timer(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.take_due_timer(self.now) && conn.phase().close_requested().is_none() {
            self.invoke(key, Call::Timer);
        }
    }

    /// Close connection `key` if it made no progress for the idle timeout; otherwise re-arm
    /// for its current deadline.
    fn expire_idle(&mut self, key: usize) {
        let Some(idle) = self.setup.config.idle_timeout else {
            return;
        };
        let conn = &self.conns[key];
        if !matches!(
            conn.phase(),
            Phase::Open | Phase::Paused | Phase::HalfClosed
        ) {
            // The linger deadline bounds it now.
            return;
        }
        let due = conn.last_progress() + idle;
        if due <= self.now {
            debug!(
                "connection {} ({}): idle for {idle:?}; closing",
                conn.id(),
                conn.peer()
            );
            self.kill(key, CloseReason::IdleTimeout);
        } else {
            self.timers.arm(due, conn.token(), TimerKind::Idle);
        }
    }

    /// A closing connection ran out of time: drop it. The bound counts from the last
    /// progress, so a large reply that a slow reader keeps draining is not cut off.
    fn expire_linger(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        match conn.linger_due(self.now, self.setup.config.linger) {
            Linger::Unarmed => return,
            Linger::Later(deadline) => {
                self.timers.arm(deadline, conn.token(), TimerKind::Linger);
                return;
            }
            Linger::Passed => {}
        }
        // Flushed but the peer never sent EOF: the close itself went as planned.
        let reason = match conn.phase().close_requested() {
            Some(reason) if conn.pending() == 0 => reason,
            _ => CloseReason::LingerTimeout,
        };
        debug!(
            "connection {}: linger deadline passed ({reason})",
            conn.id()
        );
        self.kill(key, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_entries_come_out_in_deadline_order() {
        let start = Instant::now();
        let mut timers = Timers::default();
        timers.arm(start + Duration::from_millis(30), Token(3), TimerKind::Idle);
        timers.arm(
            start + Duration::from_millis(10),
            Token(1),
            TimerKind::Linger,
        );
        timers.arm(
            start + Duration::from_millis(20),
            Token(2),
            TimerKind::Handler,
        );
        assert_eq!(timers.timeout(start), Some(Duration::from_millis(10)));
        let later = start + Duration::from_millis(25);
        let due: Vec<_> = std::iter::from_fn(|| timers.pop_due(later))
            .map(|(_, token, _)| token)
            .collect();
        assert_eq!(due, vec![Token(1), Token(2)]);
        assert_eq!(timers.len(), 1);
        assert_eq!(timers.timeout(later), Some(Duration::from_millis(5)));
    }

    #[test]
    fn nothing_is_due_before_its_deadline() {
        let start = Instant::now();
        let mut timers = Timers::default();
        timers.arm(start + Duration::from_secs(1), Token(7), TimerKind::Idle);
        assert!(timers.pop_due(start).is_none());
        assert_eq!(
            timers.timeout(start + Duration::from_secs(2)),
            Some(Duration::ZERO)
        );
    }
}
