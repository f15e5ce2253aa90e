//! The reactor's side of the server-wide budget for buffered bytes: accounting each
//! connection's buffers, pausing reads under pressure, closing the connections to blame
//! for the most (what a connection's callbacks queued on others counts against it, not
//! against them), slowing accepts, and publishing the worker's counters for live
//! statistics.
//!
//! The thresholds, the attribution and the choice of victims are `crate::budget`'s; this
//! file applies them to the slab. It must not read or write a socket.

use std::mem;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::Reactor;
use super::types::ACCEPT_BACKOFF;
use super::types::TimerKind;
use crate::budget::{self, Pressure};
use crate::{CloseReason, Handler};

/// While connections wait for the budget to ease, the loop wakes at least this often to
/// look again (other workers free memory without waking us).
pub(super) const BUDGET_RECHECK: Duration = Duration::from_millis(10);

/// How long accepting stops when the budget is spent and closing the largest holders of
/// this worker could not bring it back under.
const ACCEPT_SLOWDOWN: Duration = Duration::from_millis(100);

/// Budget state of one worker.
#[derive(Debug, Default)]
pub(super) struct Memory {
    /// Connections not read because of the budget, to read again once it eases (their
    /// readiness edge has been spent).
    waiting: Vec<mio::Token>,
    /// Since when the budget has been under pressure, if it is.
    pressed_since: Option<Instant>,
    /// Connections were closed for the budget in this episode of pressure (logged once).
    episode: bool,
}

impl Memory {
    /// Some connection waits for the budget to ease.
    pub(super) fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }
}

impl<H: Handler> Reactor<H> {
    /// Record what connection `key` holds now in the server-wide sum (an atomic operation
    /// only when its buffers' capacity changed).
    #[inline]
    pub(super) fn account(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.account(&self.setup.live.budget);
        }
    }

    /// Whether connection `key` may be read now (see `Connection::may_read`); if not, it is
    /// parked until the budget eases.
    #[inline]
    pub(super) fn budget_allows_read(&mut self, key: usize) -> bool {
        let pressure = self.setup.live.budget.pressure();
        if pressure == Pressure::Calm {
            return true;
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if conn.may_read(pressure) {
            return true;
        }
        if conn.mark_budget_wait() {
            self.memory.waiting.push(conn.token());
        }
        false
    }

    /// Once a turn: under pressure past the grace period, or at the budget, close this
    /// worker's connections to blame for the most until its share is freed; if that is not
    /// enough, slow accepting. Once calm, read the parked connections again.
    ///
    /// The share leaves out what no close would free sooner: output whose sender is gone,
    /// on receivers taking it (on any worker), and output here whose sender lives on
    /// another worker (that worker closes the sender).
    pub(super) fn check_budget(&mut self) {
        let limit = self.setup.live.budget.limit();
        let held = self.setup.live.budget.held();
        let pressure = budget::pressure(held, limit);
        if pressure == Pressure::Calm {
            self.memory.pressed_since = None;
            self.setup.live.budget.set_leaving(self.setup.index, 0);
            if mem::take(&mut self.memory.episode) {
                info!(
                    "worker {}: buffered bytes back under the budget ({held} of {limit})",
                    self.setup.index
                );
            }
            for token in mem::take(&mut self.memory.waiting) {
                if let Some(key) = self.live_key(token) {
                    self.conns[key].take_budget_wait();
                    self.queue_ready(key);
                }
            }
            return;
        }
        let since = *self.memory.pressed_since.get_or_insert(self.now);
        if pressure == Pressure::Pause && self.now < since + budget::GRACE {
            return;
        }
        let (mut holders, blame) = self.blame();
        self.setup
            .live
            .budget
            .set_leaving(self.setup.index, blame.leaving);
        // Bytes leaving anyway, here or on other workers, need no one closed for them:
        // what stays decides whether anyone is closed, and how much must go.
        let staying = held.saturating_sub(self.setup.live.budget.leaving());
        let want = match budget::pressure(staying, limit) {
            Pressure::Calm => 0,
            _ => budget::share_to_free(staying, limit, self.setup.workers)
                .saturating_sub(blame.elsewhere),
        };
        let victims = budget::victims(&mut holders, want);
        self.close_for_budget(&victims, &holders, held);
        // Freed at once, so the next check sees the relief.
        self.reap_finished();
        self.memory.pressed_since = Some(self.now);
        let staying = self
            .setup
            .live
            .budget
            .held()
            .saturating_sub(self.setup.live.budget.leaving());
        if budget::pressure(staying, limit) == Pressure::Evict && !self.accepting.paused {
            self.accepting.paused = true;
            self.timers.arm(
                self.now + ACCEPT_SLOWDOWN,
                ACCEPT_BACKOFF,
                TimerKind::AcceptBackoff,
            );
        }
    }

    /// Close `victims` (the first of `holders`, sorted by blame) for the budget, which
    /// holds `held` bytes; the first close of an episode is logged.
    fn close_for_budget(&mut self, victims: &[usize], holders: &[(usize, usize)], held: u64) {
        if !victims.is_empty() && !mem::replace(&mut self.memory.episode, true) {
            warn!(
                "worker {}: {held} buffered bytes against a budget of {}; closing the \
                 connections holding the most, counting what each queued on others ({} now, \
                 {} to {} bytes each)",
                self.setup.index,
                self.setup.live.budget.limit(),
                victims.len(),
                holders.first().map_or(0, |h| h.1),
                holders.get(victims.len() - 1).map_or(0, |h| h.1),
            );
        }
        for &key in victims {
            if let Some(conn) = self.conns.get(key) {
                conn.log_budget_close();
            }
            self.kill(key, CloseReason::MemoryBudget);
        }
    }

    /// Each live connection of this worker with the bytes it is to blame for (its buffers,
    /// less what it holds for others, plus what it queued on others), and what the rest
    /// of this worker's holding is.
    fn blame(&mut self) -> (Vec<(usize, usize)>, budget::Blame) {
        let now = self.now;
        let mut blame = budget::Blame::default();
        let mut holders: Vec<(usize, usize)> = self
            .conns
            .iter_mut()
            .filter(|(_, conn)| !conn.phase().is_dead())
            .map(|(key, conn)| {
                let own = conn.blame_own(&mut blame, now, self.setup.index);
                (key, own as usize)
            })
            .collect();
        for (key, held) in &mut holders {
            if let Some(charge) = self.conns[*key].sender_charge() {
                *held = held.saturating_add(blame.sender(charge) as usize);
            }
        }
        (holders, blame)
    }

    /// Publish this worker's counters for live statistics (once per turn).
    pub(super) fn publish_stats(&self) {
        self.setup
            .live
            .publish(self.setup.index, &self.observed.stats);
    }
}
