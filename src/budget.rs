//! The server-wide budget for buffered bytes: what every connection holds in its buffers
//! (input kept for a partial frame, output not yet sent), summed over all connections of
//! all workers, and the decisions taken as the sum approaches `Config::max_buffered`.
//!
//! Each connection's caps bound it alone; this bounds their sum, so no crowd of clients can
//! make the process run out of memory. Decisions here are over plain numbers (no socket,
//! no `mio`): both models apply them to their own connections.
//!
//! The accounting is one shared atomic, updated only when a connection's buffer
//! *capacity* changes (a buffer grows, or is released once drained), never per byte or per
//! message: a connection whose input is consumed and output sent at once holds nothing and
//! never touches it. Capacity, not length, is counted because capacity is what the
//! allocator handed out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// `Config::max_buffered` by default: 256 MiB. With the process's own code, stacks and
/// allocator slack, a default server stays within a few hundred MiB whatever its clients
/// do.
pub(crate) const DEFAULT_MAX_BUFFERED: usize = 256 * 1024 * 1024;

/// A connection holding at most this many bytes is still read while the budget is under
/// pressure: that is a client sending ordinary requests, which must go on being served.
pub(crate) const SMALL_HOLDER: usize = 64 * 1024;

/// A connection holding at most this many bytes is read even at the budget: what an idle
/// connection keeps between requests (buffers are released above it once drained).
pub(crate) const TINY_HOLDER: usize = 16 * 1024;

/// How long pressure may last with reads paused before the connections holding the most
/// are closed: a partial frame that cannot grow will never complete, so waiting longer
/// only keeps its memory from everyone else.
pub(crate) const GRACE: Duration = Duration::from_millis(250);

/// How pressed the budget is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Pressure {
    /// Below three quarters of the budget: nothing to do.
    Calm,
    /// From three quarters of the budget: connections holding more than [`SMALL_HOLDER`]
    /// are not read (their buffers stop growing); everyone else is served.
    Pause,
    /// At the budget: only connections holding at most [`TINY_HOLDER`] are read, and each
    /// worker closes
    /// its connections holding the most until the sum falls to half the budget.
    Evict,
}

/// The server-wide sum of buffered bytes and its limit, shared by every worker.
#[derive(Debug)]
pub(crate) struct Budget {
    /// Bytes held in connection buffers right now, all workers together.
    held: AtomicU64,
    /// `Config::max_buffered`.
    limit: u64,
    /// Connections have been closed for the budget since it was last calm (logged once).
    episode: AtomicBool,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(DEFAULT_MAX_BUFFERED)
    }
}

impl Budget {
    /// A budget of `limit` bytes, none held.
    pub(crate) fn new(limit: usize) -> Self {
        Budget {
            held: AtomicU64::new(0),
            limit: limit as u64,
            episode: AtomicBool::new(false),
        }
    }

    /// Bytes held right now.
    #[inline]
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// The limit, `Config::max_buffered`.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// How pressed the budget is right now. Seeing it calm ends an episode of closes.
    #[inline]
    pub(crate) fn pressure(&self) -> Pressure {
        let pressure = pressure(self.held(), self.limit);
        if pressure == Pressure::Calm && self.episode.load(Ordering::Relaxed) {
            self.episode.store(false, Ordering::Relaxed);
        }
        pressure
    }

    /// A connection is being closed for the budget: true if that begins an episode (so it
    /// is the one to log).
    pub(crate) fn starts_episode(&self) -> bool {
        !self.episode.swap(true, Ordering::Relaxed)
    }

    /// Record that one connection now holds `now` bytes, having held `*accounted`: one
    /// atomic operation, and only when the figure changed.
    #[inline]
    pub(crate) fn update(&self, accounted: &mut usize, now: usize) {
        if now == *accounted {
            return;
        }
        if now > *accounted {
            self.held
                .fetch_add((now - *accounted) as u64, Ordering::Relaxed);
        } else {
            self.held
                .fetch_sub((*accounted - now) as u64, Ordering::Relaxed);
        }
        *accounted = now;
    }
}

/// The pressure of `held` bytes against a budget of `limit`.
#[inline]
pub(crate) fn pressure(held: u64, limit: u64) -> Pressure {
    if held >= limit {
        Pressure::Evict
    } else if held >= limit / 4 * 3 {
        Pressure::Pause
    } else {
        Pressure::Calm
    }
}

/// Whether a connection holding `holding` bytes may be read under `pressure`.
#[inline]
pub(crate) fn may_read(pressure: Pressure, holding: usize) -> bool {
    match pressure {
        Pressure::Calm => true,
        Pressure::Pause => holding <= SMALL_HOLDER,
        Pressure::Evict => holding <= TINY_HOLDER,
    }
}

/// Bytes one of `workers` workers must free when the server holds `held` of `limit`: its
/// share of bringing the sum down to half the budget, so that one episode of closes makes
/// room for a while instead of one connection at a time.
pub(crate) fn share_to_free(held: u64, limit: u64, workers: usize) -> u64 {
    held.saturating_sub(limit / 2)
        .div_ceil(workers.max(1) as u64)
        .max(1)
}

/// From `holders` (a connection and the bytes it holds), the ones to close to free at least
/// `want` bytes, those holding the most first. Connections holding nothing are never
/// chosen: closing them frees nothing.
pub(crate) fn victims<K: Copy>(holders: &mut [(K, usize)], want: u64) -> Vec<K> {
    holders.sort_unstable_by_key(|&(_, holding)| std::cmp::Reverse(holding));
    let mut freed = 0u64;
    let mut chosen = Vec::new();
    for &(key, holding) in holders.iter() {
        if freed >= want || holding == 0 {
            break;
        }
        freed += holding as u64;
        chosen.push(key);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_rises_in_steps() {
        assert_eq!(pressure(0, 1000), Pressure::Calm);
        assert_eq!(pressure(749, 1000), Pressure::Calm);
        assert_eq!(pressure(750, 1000), Pressure::Pause);
        assert_eq!(pressure(999, 1000), Pressure::Pause);
        assert_eq!(pressure(1000, 1000), Pressure::Evict);
    }

    #[test]
    fn a_small_holder_is_read_until_the_budget_is_reached() {
        assert!(may_read(Pressure::Pause, SMALL_HOLDER));
        assert!(!may_read(Pressure::Pause, SMALL_HOLDER + 1));
        assert!(may_read(Pressure::Evict, TINY_HOLDER));
        assert!(!may_read(Pressure::Evict, TINY_HOLDER + 1));
    }

    #[test]
    fn the_largest_are_chosen_until_enough_is_freed() {
        let mut holders = [(1, 10), (2, 500), (3, 0), (4, 300), (5, 200)];
        assert_eq!(victims(&mut holders, 600), vec![2, 4]);
        assert_eq!(victims(&mut holders, 10_000), vec![2, 4, 5, 1]);
        assert!(victims(&mut holders[..0], 10).is_empty());
    }

    #[test]
    fn each_worker_frees_its_share_down_to_half_the_budget() {
        assert_eq!(share_to_free(1000, 1000, 2), 250);
        assert_eq!(share_to_free(400, 1000, 1), 1);
    }

    #[test]
    fn accounting_touches_the_sum_only_on_change() {
        let budget = Budget::new(1000);
        let mut a = 0;
        let mut b = 0;
        budget.update(&mut a, 300);
        budget.update(&mut b, 200);
        budget.update(&mut a, 100);
        assert_eq!(budget.held(), 300);
        budget.update(&mut a, 0);
        budget.update(&mut b, 0);
        assert_eq!(budget.held(), 0);
    }
}
