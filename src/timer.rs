//! Deadlines for the reactor: idle timeouts, linger bounds, handler timers and the accept
//! back-off.
//!
//! A binary heap of `(deadline, token, kind)` with *lazy cancellation*: entries are never
//! removed early. When one comes due the reactor checks it against the connection's current
//! state and ignores it if it is stale (the connection is gone, or its deadline moved). That
//! keeps arming a timer O(log n) with no bookkeeping per cancel, and at most a few entries
//! per connection. This module knows nothing of sockets.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use mio::Token;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKind {
    /// The connection may have been silent for the idle timeout.
    Idle,
    /// A closing connection's linger bound.
    Linger,
    /// A timer the handler set.
    Handler,
    /// Accepting may resume after running out of file descriptors.
    AcceptBackoff,
}

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

    /// Entries in the heap, stale ones included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
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
