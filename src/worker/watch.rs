//! What the live page sees of each worker's loop, and the step mode's controls: the one
//! place the workers and the metrics endpoint meet for them.
//!
//! A worker records its turns only while someone watches: the endpoint moves "watched
//! until" forward on each request for the live data, and the worker compares it with the
//! start of its turn (one atomic load per turn). Under step mode it always records, in
//! detail (the ready tokens and the first bytes of each read and write), and runs a turn
//! only when one is granted. A leaf like `worker`: it knows neither model nor the endpoint.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a request for the live data keeps the workers recording.
pub(crate) const WATCH_FOR: Duration = Duration::from_secs(3);
/// Turns kept in each worker's history.
pub(crate) const HISTORY: usize = 32;
/// Connection rows kept per worker: the ones holding the most buffered bytes.
pub(crate) const TOP_ROWS: usize = 50;
/// Payload bytes kept of each read or write, under step mode.
pub(crate) const FIRST_BYTES: usize = 64;
/// Buckets of the events-per-poll histogram: 0, 1, 2–3, 4–7, … , 512 and more.
pub(crate) const BUCKETS: usize = 11;

/// The histogram bucket of a poll that returned `events` events.
pub(crate) fn bucket(events: usize) -> usize {
    let bits = usize::BITS - events.leading_zeros();
    (bits as usize).min(BUCKETS - 1)
}

/// The shared view of every worker's loop, and the step controls.
pub(crate) struct Watch {
    /// The instant `watched_until` counts from.
    epoch: Instant,
    /// Milliseconds after `epoch` until which workers record (0: never asked).
    watched_until: AtomicU64,
    /// Step mode: workers start paused and run turns as they are granted.
    step_mode: AtomicBool,
    /// Paused or running, and how many turns each worker has been granted.
    control: Mutex<Control>,
    /// Signalled when `control` changes.
    changed: Condvar,
    /// Each worker's last published view, in worker order.
    views: Vec<Mutex<WorkerView>>,
    /// Each worker's wake-up (a worker sleeping in `poll` must see a pause).
    wakers: Mutex<Vec<Option<crate::worker::WakeFn>>>,
    /// Under the threads model, its connections and their threads.
    thread_rows: Mutex<Option<ThreadRows>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("step_mode", &self.step_mode())
            .field("control", &*self.lock_control())
            .finish_non_exhaustive()
    }
}

impl Default for Watch {
    fn default() -> Self {
        Watch::new(0)
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("paused", &self.paused)
            .field("granted", &self.granted)
            .finish()
    }
}

/// The step mode's state.
#[derive(Default)]
struct Control {
    /// Turns wait for a grant.
    paused: bool,
    /// Turns granted so far by `POST /step`; each worker runs until it has done as many.
    granted: u64,
}

/// One worker's loop as last published.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerView {
    /// The model that runs it: "reactor" or "threads".
    pub(crate) model: &'static str,
    /// Turns (polls) so far.
    pub(crate) turns: u64,
    /// Turns per second over the last publication interval.
    pub(crate) turns_per_sec: f64,
    /// Turns run under step mode since the start.
    pub(crate) steps_done: u64,
    /// Polls by how many events they returned, bucketed by [`bucket`] (watched turns).
    pub(crate) events_histogram: [u64; BUCKETS],
    /// The last turns, oldest first.
    pub(crate) history: VecDeque<TurnRecord>,
    /// The next deadlines: what for, the connection id (if any), milliseconds from now.
    pub(crate) timers: Vec<(&'static str, String, u64)>,
    /// Open connections now.
    pub(crate) open: usize,
    /// Bytes of unconsumed input held, all connections.
    pub(crate) buffered_in: u64,
    /// Bytes of unsent output held, all connections.
    pub(crate) buffered_out: u64,
    /// The connections holding the most buffered bytes, at most [`TOP_ROWS`].
    pub(crate) rows: Vec<ConnRow>,
}

/// What one turn did.
#[derive(Debug, Clone, Default)]
pub(crate) struct TurnRecord {
    /// The turn's number (the worker's poll count).
    pub(crate) turn: u64,
    /// Events `poll` returned.
    pub(crate) events: u64,
    /// Connections accepted.
    pub(crate) accepted: u64,
    /// Bytes read.
    pub(crate) read: u64,
    /// Bytes written.
    pub(crate) written: u64,
    /// Messages delivered from other workers and threads.
    pub(crate) mail: u64,
    /// Deadlines that came due.
    pub(crate) timers_fired: u64,
    /// Connections freed.
    pub(crate) reaped: u64,
    /// Under step mode: each ready token and what it was ready for.
    pub(crate) ready: Vec<Ready>,
    /// Under step mode: each read and write, with its first bytes.
    pub(crate) io: Vec<IoRecord>,
}

/// A token `poll` returned, and for what.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ready {
    /// What the token stands for, in the log's words (`connection 3`, `listener 0`).
    pub(crate) token: String,
    /// The flags: readable, writable, read_closed, error.
    pub(crate) flags: Vec<&'static str>,
}

/// One read or write of a step.
#[derive(Debug, Clone, Default)]
pub(crate) struct IoRecord {
    /// The connection's id.
    pub(crate) conn: String,
    /// "read" or "write".
    pub(crate) op: &'static str,
    /// Bytes moved.
    pub(crate) len: usize,
    /// The first of them, at most [`FIRST_BYTES`].
    pub(crate) first: Vec<u8>,
}

/// One row of the connection table.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnRow {
    /// The connection's id.
    pub(crate) id: String,
    /// The peer's address (client-controlled for Unix peers: escaped where shown).
    pub(crate) peer: String,
    /// Its phase, as the loop names it.
    pub(crate) phase: String,
    /// Unconsumed input held.
    pub(crate) buffered_in: usize,
    /// Unsent output held.
    pub(crate) buffered_out: usize,
    /// Milliseconds since it last made progress.
    pub(crate) idle_ms: u64,
    /// Its reads are paused (by backpressure, the handler or the budget).
    pub(crate) paused: bool,
    /// Under the threads model, the thread serving it (empty under the reactor).
    pub(crate) thread: String,
}

/// The threads model's connections, as (worker, row), read from its registry on request.
pub(crate) type ThreadRows = Box<dyn Fn() -> Vec<(usize, ConnRow)> + Send + Sync>;

impl Watch {
    /// A view for `workers` workers, nobody watching, not in step mode.
    pub(crate) fn new(workers: usize) -> Self {
        Watch {
            epoch: Instant::now(),
            watched_until: AtomicU64::new(0),
            step_mode: AtomicBool::new(false),
            control: Mutex::default(),
            changed: Condvar::new(),
            views: (0..workers).map(|_| Mutex::default()).collect(),
            wakers: Mutex::new((0..workers).map(|_| None).collect()),
            thread_rows: Mutex::new(None),
        }
    }

    /// Milliseconds from the epoch to `at`.
    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Someone asked for the live data: record for [`WATCH_FOR`] from now. If nobody was
    /// watching, wake the workers, so that one sleeping in `poll` (idle clients only)
    /// starts recording now rather than at its next event.
    pub(crate) fn touch(&self) {
        let now = Instant::now();
        let until = self.millis(now + WATCH_FOR);
        let before = self.watched_until.fetch_max(until, Ordering::Relaxed);
        if before <= self.millis(now) {
            self.wake_all();
        }
    }

    /// Wake every worker from `poll`.
    fn wake_all(&self) {
        let wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        for wake in wakers.iter().flatten() {
            wake();
        }
    }

    /// Should a turn starting at `now` be recorded? One atomic load.
    #[inline]
    pub(crate) fn is_watched(&self, now: Instant) -> bool {
        let until = self.watched_until.load(Ordering::Relaxed);
        until != 0 && self.millis(now) < until
    }

    /// Put the server in step mode: workers start paused. Before they start.
    pub(crate) fn enable_step_mode(&self) {
        self.step_mode.store(true, Ordering::SeqCst);
        self.lock_control().paused = true;
    }

    /// True under step mode.
    #[inline]
    pub(crate) fn step_mode(&self) -> bool {
        self.step_mode.load(Ordering::Relaxed)
    }

    /// Remember how to wake worker `index` from `poll`.
    pub(crate) fn set_waker(&self, index: usize, wake: crate::worker::WakeFn) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = wakers.get_mut(index) {
            *slot = Some(wake);
        }
    }

    /// The step controls, poison or not.
    fn lock_control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change the step controls and tell the waiting workers. A paused worker waits on
    /// the condition variable; a running one may sleep in `poll`, so a pause also wakes
    /// it (a step does not: its turn would show the waker's event, which the learner did
    /// not cause).
    fn control(&self, change: impl FnOnce(&mut Control)) {
        change(&mut self.lock_control());
        self.changed.notify_all();
    }

    /// Grant every paused worker one more turn.
    pub(crate) fn step(&self) {
        self.control(|control| control.granted += 1);
    }

    /// Pause (true) or run (false) the workers.
    pub(crate) fn set_paused(&self, paused: bool) {
        self.control(|control| control.paused = paused);
        if paused {
            self.wake_all();
        }
    }

    /// Paused, and the turns granted so far.
    pub(crate) fn state(&self) -> (bool, u64) {
        let control = self.lock_control();
        (control.paused, control.granted)
    }

    /// Under step mode, block until a worker that has run `done` stepped turns may run
    /// another: the loop runs, or a turn is granted, or `stop()` says a stop was asked
    /// for (checked at least every 50 ms). Returns true if the turn is a granted step.
    pub(crate) fn wait_turn(&self, done: u64, stop: impl Fn() -> bool) -> bool {
        let mut control = self.lock_control();
        loop {
            if !control.paused || stop() {
                return false;
            }
            if control.granted > done {
                return true;
            }
            control = self
                .changed
                .wait_timeout(control, Duration::from_millis(50))
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Worker `index`'s view, to change.
    pub(crate) fn view(&self, index: usize) -> Option<MutexGuard<'_, WorkerView>> {
        self.views
            .get(index)
            .map(|view| view.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Under the threads model, read its connections from here.
    pub(crate) fn set_thread_rows(&self, rows: ThreadRows) {
        *self.thread_rows.lock().unwrap_or_else(|p| p.into_inner()) = Some(rows);
    }

    /// Under the threads model, its connections now, as (worker, row); `None` otherwise.
    pub(crate) fn thread_rows(&self) -> Option<Vec<(usize, ConnRow)>> {
        let rows = self.thread_rows.lock().unwrap_or_else(|p| p.into_inner());
        rows.as_ref().map(|rows| rows())
    }

    /// Every worker's view as last published.
    pub(crate) fn views(&self) -> Vec<WorkerView> {
        self.views
            .iter()
            .map(|view| view.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_double() {
        assert_eq!(
            [0, 1, 2, 3, 4, 7, 8, 512, 1024].map(bucket),
            [0, 1, 2, 2, 3, 3, 4, 10, 10]
        );
    }

    #[test]
    fn a_touch_makes_it_watched_for_a_while() {
        let watch = Watch::new(1);
        let now = Instant::now();
        assert!(!watch.is_watched(now));
        watch.touch();
        assert!(watch.is_watched(Instant::now()));
        assert!(!watch.is_watched(now + WATCH_FOR + Duration::from_secs(1)));
    }

    #[test]
    fn a_paused_worker_waits_for_a_grant_or_a_stop() {
        let watch = Watch::new(1);
        watch.enable_step_mode();
        assert!(!watch.wait_turn(0, || true), "a stop ends the wait");
        watch.step();
        assert!(watch.wait_turn(0, || false), "one turn granted");
        watch.set_paused(false);
        assert!(!watch.wait_turn(1, || false), "running: no wait");
    }
}
