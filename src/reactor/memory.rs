//! The reactor's side of the server-wide budget for buffered bytes: accounting each
//! connection's buffers, pausing reads under pressure, closing the connections holding the
//! most, slowing accepts, and publishing the worker's counters for live statistics.
//!
//! The thresholds and the choice of victims are `crate::budget`'s; this file applies them
//! to the slab. It must not read or write a socket.

use std::mem;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::timer::TimerKind;
use super::{LISTENER, Reactor};
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
            let holding = conn.holding();
            self.live.budget.update(&mut conn.accounted, holding);
        }
    }

    /// Whether connection `key` may be read now; if not, it is parked until the budget
    /// eases.
    #[inline]
    pub(super) fn budget_allows_read(&mut self, key: usize) -> bool {
        let pressure = self.live.budget.pressure();
        if pressure == Pressure::Calm {
            return true;
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if !conn.phase.wants_input() || budget::may_read(pressure, conn.holding()) {
            return true;
        }
        if !conn.budget_wait {
            conn.budget_wait = true;
            self.memory.waiting.push(conn.token);
        }
        false
    }

    /// Once a turn: under pressure past the grace period, or at the budget, close this
    /// worker's connections holding the most until its share is freed; if that is not
    /// enough, slow accepting. Once calm, read the parked connections again.
    pub(super) fn check_budget(&mut self) {
        let limit = self.live.budget.limit();
        let held = self.live.budget.held();
        let pressure = budget::pressure(held, limit);
        if pressure == Pressure::Calm {
            self.memory.pressed_since = None;
            if mem::take(&mut self.memory.episode) {
                info!(
                    "worker {}: buffered bytes back under the budget ({held} of {limit})",
                    self.index
                );
            }
            for token in mem::take(&mut self.memory.waiting) {
                if let Some(key) = self.live_key(token) {
                    self.conns[key].budget_wait = false;
                    self.queue_ready(key);
                }
            }
            return;
        }
        let since = *self.memory.pressed_since.get_or_insert(self.now);
        if pressure == Pressure::Pause && self.now < since + budget::GRACE {
            return;
        }
        let want = budget::share_to_free(held, limit, self.workers);
        let mut holders: Vec<(usize, usize)> = self
            .conns
            .iter()
            .filter(|(_, conn)| !conn.phase.is_dead())
            .map(|(key, conn)| (key, conn.accounted))
            .collect();
        let victims = budget::victims(&mut holders, want);
        if !victims.is_empty() && !mem::replace(&mut self.memory.episode, true) {
            warn!(
                "worker {}: {held} buffered bytes against a budget of {limit}; closing the \
                 connections holding the most ({} now, holding {} to {} bytes each)",
                self.index,
                victims.len(),
                holders.first().map_or(0, |h| h.1),
                holders.get(victims.len() - 1).map_or(0, |h| h.1),
            );
        }
        for key in &victims {
            if let Some(conn) = self.conns.get(*key) {
                log::debug!(
                    "connection {} closed for the budget: input {} of {} bytes, output {} of {}",
                    conn.id,
                    conn.input.len(),
                    conn.input.capacity(),
                    conn.pending(),
                    conn.output.capacity()
                );
            }
        }
        for key in victims {
            self.kill(key, CloseReason::MemoryBudget);
        }
        // Freed at once, so the next check sees the relief.
        self.reap_finished();
        self.memory.pressed_since = Some(self.now);
        if self.live.budget.pressure() == Pressure::Evict && !self.accept_paused {
            self.accept_paused = true;
            self.timers.arm(
                self.now + ACCEPT_SLOWDOWN,
                LISTENER,
                TimerKind::AcceptBackoff,
            );
        }
    }

    /// Publish this worker's counters for live statistics (once per turn).
    pub(super) fn publish_stats(&self) {
        self.live.publish(self.index, &self.stats);
    }
}
