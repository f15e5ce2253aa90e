//! Recording turns for the live page, and the step mode's gate.
//!
//! `Watching` is the reactor's side of [`Watch`](crate::worker::watch::Watch): whether this turn is
//! recorded (someone watched recently, or step mode), the record being built, and when the
//! connection table was last published. Unwatched, a turn costs one atomic load here and
//! a few branches on a plain bool in the hooks. This file reads connections and timers; it
//! must not change them.

use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Token};

use super::Reactor;
use super::connection::{Connection, Phase};
use super::types::TimerKind;
use crate::worker::watch::{self, ConnRow, FIRST_BYTES, IoRecord, Ready, TurnRecord};
use crate::{ConnId, Handler, Stats};

/// Least time between two publications of the connection table and the timers, when not
/// stepping: at 10,000 connections building them is the dear part.
const TABLE_EVERY: Duration = Duration::from_millis(200);
/// Deadlines shown per worker.
const TIMERS_SHOWN: usize = 8;

/// What a worker reports about itself: the counters it returns when it stops, and the
/// turns it records for the live page while watched.
#[derive(Debug, Default)]
pub(super) struct Observed {
    /// Counters returned at the end.
    pub(super) stats: Stats,
    /// Recording for the live page.
    pub(super) watching: Watching,
}

/// The reactor's recording state.
#[derive(Debug, Default)]
pub(super) struct Watching {
    /// This turn is being recorded.
    pub(super) on: bool,
    /// This turn records the ready tokens and the bytes (step mode only).
    pub(super) detail: bool,
    /// The record of the turn under way.
    record: TurnRecord,
    /// The counters as the turn began, to take the turn's differences from.
    before: Stats,
    /// Turns run as granted steps.
    steps_done: u64,
    /// When the table was last published, and the turn count then.
    table_at: Option<(Instant, u64)>,
}

impl Watching {
    /// A ready token, named as the log names it, recorded under step mode.
    pub(super) fn event(&mut self, token: impl std::fmt::Display, event: &Event) {
        let flags = [
            (event.is_readable(), "readable"),
            (event.is_writable(), "writable"),
            (event.is_read_closed(), "read_closed"),
            (event.is_error(), "error"),
        ];
        self.record.ready.push(Ready {
            token: token.to_string(),
            flags: flags.iter().filter(|f| f.0).map(|f| f.1).collect(),
        });
    }

    /// A read or write (`op`) of `len` bytes on connection `conn`, beginning with `bytes`,
    /// recorded under step mode.
    #[inline]
    pub(super) fn io(&mut self, conn: ConnId, op: &'static str, len: usize, bytes: &[u8]) {
        // The check inline, the recording out of line: unwatched, a hook costs a branch.
        if self.detail && len > 0 {
            self.record_io(conn, op, len, bytes);
        }
    }

    /// Record a read or write (see [`io`](Self::io)).
    #[inline(never)]
    fn record_io(&mut self, conn: ConnId, op: &'static str, len: usize, bytes: &[u8]) {
        self.record.io.push(IoRecord {
            conn: conn.to_string(),
            op,
            len,
            first: bytes[..len.min(bytes.len()).min(FIRST_BYTES)].to_vec(),
        });
    }

    /// The first bytes of `conn`'s unsent output under step mode (to record what a write
    /// takes of them); nothing otherwise.
    #[inline]
    pub(super) fn pending<S>(&self, conn: &Connection<S>) -> Vec<u8> {
        if !self.detail {
            return Vec::new();
        }
        Self::first_unsent(conn)
    }

    /// The first bytes of `conn`'s unsent output.
    #[inline(never)]
    fn first_unsent<S>(conn: &Connection<S>) -> Vec<u8> {
        let pending = conn.unsent();
        pending[..pending.len().min(FIRST_BYTES)].to_vec()
    }

    /// Messages delivered (from other workers, or posted).
    pub(super) fn mail(&mut self, count: usize) {
        self.record.mail += count as u64;
    }

    /// A deadline that came due and was acted on.
    pub(super) fn timer_fired(&mut self) {
        self.record.timers_fired += 1;
    }
}

impl<H: Handler> Reactor<H> {
    /// The first step of a turn: under step mode wait for a grant (or a run, or a stop),
    /// then decide whether this turn is recorded. Returns the poll's limit: a stepped
    /// turn does not wait for events, it takes those that are ready.
    #[inline]
    pub(super) fn watch_begin(&mut self, limit: Option<Duration>) -> Option<Duration> {
        let watch = &self.setup.live.watch;
        // Nobody watching and no step mode, the common case: two atomic loads, no record.
        if !watch.step_mode() && !watch.is_watched(self.now) {
            self.observed.watching.on = false;
            self.observed.watching.detail = false;
            return limit;
        }
        self.watch_begin_recording(limit)
    }

    /// The first step of a watched or stepped turn (see [`watch_begin`](Self::watch_begin)).
    #[inline(never)]
    fn watch_begin_recording(&mut self, limit: Option<Duration>) -> Option<Duration> {
        let watch = &self.setup.live.watch;
        let mut limit = limit;
        let step_mode = watch.step_mode();
        if step_mode {
            let stopping = &self.stopping;
            if watch.wait_turn(self.observed.watching.steps_done, || stopping.is_asked()) {
                self.observed.watching.steps_done += 1;
                limit = Some(Duration::ZERO);
            } else {
                // Running (or stopping): grants made meanwhile are not owed later.
                self.observed.watching.steps_done =
                    self.observed.watching.steps_done.max(watch.state().1);
            }
        }
        self.observed.watching.on = step_mode || watch.is_watched(self.now);
        self.observed.watching.detail = step_mode;
        if self.observed.watching.on && limit != Some(Duration::ZERO) {
            // Watched, an idle worker still wakes to publish its table and deadlines.
            limit = Some(limit.map_or(TABLE_EVERY, |limit| limit.min(TABLE_EVERY)));
        }
        if self.observed.watching.on {
            self.observed.watching.before = self.observed.stats.clone();
            self.observed.watching.record = TurnRecord::default();
        }
        limit
    }

    /// The last step of a turn: publish what it did, and now and then the table.
    #[inline]
    pub(super) fn watch_end(&mut self, events: &Events) {
        if self.observed.watching.on {
            self.watch_end_recording(events);
        }
    }

    /// The last step of a watched turn (see [`watch_end`](Self::watch_end)).
    #[inline(never)]
    fn watch_end_recording(&mut self, events: &Events) {
        let now = self.observed.stats.clone();
        let before = &self.observed.watching.before;
        let mut record = std::mem::take(&mut self.observed.watching.record);
        record.turn = now.polls;
        record.events = now.events - before.events;
        record.accepted = now.accepted - before.accepted;
        record.read = now.bytes_in - before.bytes_in;
        record.written = now.bytes_out - before.bytes_out;
        record.reaped = now.closed_total() - before.closed_total();
        let events_seen = events.iter().count();
        let table_due = match self.observed.watching.table_at {
            Some((at, _)) => self.now.saturating_duration_since(at) >= TABLE_EVERY,
            None => true,
        };
        let table = (self.observed.watching.detail || table_due).then(|| self.connection_table());
        let timers = table.as_ref().map(|_| self.next_deadlines());
        let turns_per_sec = match (table.is_some(), self.observed.watching.table_at) {
            (true, Some((at, turns))) => {
                let secs = self.now.saturating_duration_since(at).as_secs_f64();
                Some((now.polls - turns) as f64 / secs.max(1e-3))
            }
            _ => None,
        };
        if table.is_some() {
            self.observed.watching.table_at = Some((self.now, now.polls));
        }
        let Some(mut view) = self.setup.live.watch.view(self.setup.index) else {
            return;
        };
        view.model = "reactor";
        view.turns = now.polls;
        view.steps_done = self.observed.watching.steps_done;
        view.events_histogram[watch::bucket(events_seen)] += 1;
        if view.history.len() == watch::HISTORY {
            view.history.pop_front();
        }
        view.history.push_back(record);
        if let Some(rate) = turns_per_sec {
            view.turns_per_sec = rate;
        }
        if let Some((open, buffered_in, buffered_out, rows)) = table {
            view.open = open;
            view.buffered_in = buffered_in;
            view.buffered_out = buffered_out;
            view.rows = rows;
        }
        if let Some(timers) = timers {
            view.timers = timers;
        }
    }

    /// The open connections: how many, their buffered bytes in and out, and the rows of
    /// those holding the most.
    fn connection_table(&self) -> (usize, u64, u64, Vec<ConnRow>) {
        let (mut total_in, mut total_out) = (0u64, 0u64);
        let mut rows: Vec<(usize, usize)> = Vec::with_capacity(self.conns.len());
        for key in self.conns.keys() {
            let conn = &self.conns[key];
            total_in += conn.buffered_input() as u64;
            total_out += conn.pending() as u64;
            rows.push((conn.buffered_input() + conn.pending(), key));
        }
        let top = watch::TOP_ROWS.min(rows.len());
        if top > 0 && top < rows.len() {
            rows.select_nth_unstable_by(top - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        }
        rows.truncate(top);
        rows.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let rows = rows
            .into_iter()
            .map(|(_, key)| self.row(&self.conns[key]))
            .collect();
        (self.conns.len(), total_in, total_out, rows)
    }

    /// One connection's row.
    fn row(&self, conn: &Connection<H::Session>) -> ConnRow {
        ConnRow {
            id: conn.id().to_string(),
            peer: conn.peer().to_string(),
            phase: phase_name(conn.phase()).to_string(),
            buffered_in: conn.buffered_input(),
            buffered_out: conn.pending(),
            idle_ms: self
                .now
                .saturating_duration_since(conn.last_progress())
                .as_millis() as u64,
            paused: conn.phase() == Phase::Paused || conn.reads_held(),
            thread: String::new(),
        }
    }

    /// The next few deadlines that still stand (stale heap entries are left out when
    /// their connection is gone).
    fn next_deadlines(&self) -> Vec<(&'static str, String, u64)> {
        self.timers
            .next(TIMERS_SHOWN, |token| self.deadline_owner(token))
            .into_iter()
            .map(|(at, owner, kind)| {
                let ms = at.saturating_duration_since(self.now).as_millis() as u64;
                (timer_name(kind), owner, ms)
            })
            .collect()
    }

    /// Whose a deadline is: a live connection's id, the accept back-off, or none (stale).
    fn deadline_owner(&self, token: Token) -> Option<String> {
        if token == super::types::ACCEPT_BACKOFF {
            return Some(String::new());
        }
        self.live_key(token)
            .map(|key| self.conns[key].id().to_string())
    }
}

/// A phase's name on the page.
fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Connecting => "connecting",
        Phase::Open => "open",
        Phase::Paused => "paused",
        Phase::Draining(_) => "draining",
        Phase::Closing(_) => "closing",
        Phase::Lingering(_) => "lingering",
        Phase::HalfClosed => "half-closed",
        Phase::Dead(_) => "dead",
    }
}

/// A deadline's name on the page.
fn timer_name(kind: TimerKind) -> &'static str {
    match kind {
        TimerKind::Idle => "idle",
        TimerKind::Linger => "linger",
        TimerKind::Handler => "handler",
        TimerKind::AcceptBackoff => "accept back-off",
        TimerKind::Connect => "connect",
        TimerKind::Handshake => "handshake",
        TimerKind::ProxyHeader => "PROXY header",
    }
}
