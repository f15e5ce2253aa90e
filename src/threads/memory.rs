//! The threads model's side of the server-wide budget for buffered bytes: a client thread
//! about to read waits while the budget is pressed and it holds more than a small client
//! would, and closes itself if the pressure lasts or the budget is spent and it holds at
//! least the average.
//!
//! There is no loop that sees every client, so each thread judges for itself from the
//! shared sum; the thresholds are `crate::budget`'s. Messages to other clients are written
//! straight to their sockets (bounded by the kernel's buffers), so only a client's own
//! input and output count here, and the output kept for a TLS client until its handshake
//! completes (which its wire counts in the budget). A sender is paced by its receivers'
//! sockets, and nothing it sent waits in a receiver's buffer to be counted against either
//! (the reactor's attribution of queued bytes to their sender has nothing to attribute here).

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::budget::{self, Pressure};
use crate::worker::Live;

/// How often a waiting client looks at the budget again.
const BUDGET_RECHECK: Duration = Duration::from_millis(10);

/// How long the accept thread waits before each accept while the budget is spent.
const ACCEPT_SLOWDOWN: Duration = Duration::from_millis(100);

/// Slow accepting while the whole budget is held: the clients already holding it are
/// closing themselves, and a newcomer could only add to it.
pub(super) fn slow_accepting(live: &Live) {
    if live.budget.pressure() == Pressure::Evict {
        thread::sleep(ACCEPT_SLOWDOWN);
    }
}

/// The longest a client holding `holding` bytes may block in a read: one holding more than
/// a small client wakes now and then to look at the budget again (a thread blocked in
/// `read` would not see it pressed); `None` for everyone else.
pub(super) fn read_bound(holding: usize) -> Option<Duration> {
    (holding > budget::SMALL_HOLDER).then_some(budget::GRACE)
}

/// What a client about to read should do about the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Read.
    Read,
    /// Close with `CloseReason::MemoryBudget`.
    Close,
}

/// Wait until a client holding `holding` bytes may read, or until it must close; returns
/// at once in the common case of a calm budget, and early (with `Read`) when the server is
/// stopping or `deadline` passes, so the caller handles those.
pub(super) fn wait_for_budget(
    live: &Live,
    holding: usize,
    stop: &AtomicBool,
    deadline: Option<Instant>,
) -> Verdict {
    let mut since = None;
    loop {
        let pressure = live.budget.pressure();
        if budget::may_read(pressure, holding) || stop.load(Ordering::Relaxed) {
            return Verdict::Read;
        }
        let now = Instant::now();
        if deadline.is_some_and(|at| now >= at) {
            return Verdict::Read;
        }
        let since = *since.get_or_insert(now);
        let average = live.budget.held() / live.connections().max(1);
        let lasting = pressure == Pressure::Evict || now >= since + budget::GRACE;
        if lasting && holding as u64 >= average {
            if live.budget.starts_episode() {
                log::warn!(
                    "{} buffered bytes against a budget of {}; closing the clients holding \
                     the most",
                    live.budget.held(),
                    live.budget.limit()
                );
            }
            return Verdict::Close;
        }
        thread::sleep(BUDGET_RECHECK);
    }
}
