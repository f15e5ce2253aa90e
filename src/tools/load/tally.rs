//! Counters and the latency histogram of one load thread, merged into the final report.
//!
//! Pure bookkeeping: no sockets, no printing.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Slowest latency the histogram can hold; anything slower is clamped to it.
const MAX_LATENCY_NS: u64 = 120_000_000_000;

/// The kinds of failure a connection can meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// An echoed byte differed from the one sent, or bytes came that were never sent.
    Mismatch,
    /// The peer closed (EOF, reset, broken pipe) before the run ended.
    ClosedEarly,
    /// A read or write failed otherwise.
    Io,
    /// The hard deadline passed with messages unanswered.
    TimedOut,
}

/// What one load thread saw.
#[derive(Debug)]
pub(crate) struct Tally {
    /// Connections that completed their handshake.
    pub(crate) connected: u64,
    /// Connections that could not be established (error or connect timeout).
    pub(crate) connect_failures: u64,
    /// Messages queued for sending.
    pub(crate) sent: u64,
    /// Messages whose whole echo arrived and matched.
    pub(crate) completed: u64,
    /// Echoed bytes verified.
    pub(crate) bytes: u64,
    /// Messages sent that were never answered because their connection failed.
    pub(crate) unanswered: u64,
    /// Connections ended by a mismatch.
    pub(crate) mismatches: u64,
    /// Connections the peer closed too early.
    pub(crate) closed_early: u64,
    /// Connections ended by a read or write error.
    pub(crate) io_errors: u64,
    /// Connections still waiting for echoes at the hard deadline.
    pub(crate) timed_out: u64,
    /// The first failure seen, for the one-line message.
    pub(crate) first_error: Option<String>,
    /// When the last message completed.
    pub(crate) last_completion: Option<Instant>,
    /// End of the timed window (duration mode): messages completing later are the drain of
    /// the last ones in flight and do not count towards the rate.
    pub(crate) window_end: Option<Instant>,
    /// Messages completed up to `window_end` (all of them without a window).
    pub(crate) in_window: u64,
    /// Latency from queuing a message to the arrival of its last echoed byte, in ns.
    pub(crate) latency: Histogram<u64>,
}

impl Tally {
    /// An empty tally.
    pub(crate) fn new() -> Self {
        Tally {
            connected: 0,
            connect_failures: 0,
            sent: 0,
            completed: 0,
            bytes: 0,
            unanswered: 0,
            mismatches: 0,
            closed_early: 0,
            io_errors: 0,
            timed_out: 0,
            first_error: None,
            last_completion: None,
            window_end: None,
            in_window: 0,
            latency: new_histogram(),
        }
    }

    /// One message completed after `latency`, at `now`.
    pub(crate) fn record(&mut self, latency: Duration, now: Instant) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency.saturating_record(ns.clamp(1, MAX_LATENCY_NS));
        self.completed += 1;
        self.last_completion = Some(now);
        if self.window_end.is_none_or(|end| now <= end) {
            self.in_window += 1;
        }
    }

    /// One connection failed.
    pub(crate) fn fail(&mut self, kind: Failure, conn: u64, what: &str) {
        match kind {
            Failure::Mismatch => self.mismatches += 1,
            Failure::ClosedEarly => self.closed_early += 1,
            Failure::Io => self.io_errors += 1,
            Failure::TimedOut => self.timed_out += 1,
        }
        self.note(format!("connection {conn}: {what}"));
    }

    /// One connection could not be established.
    pub(crate) fn connect_failed(&mut self, conn: u64, what: &str) {
        self.connect_failures += 1;
        self.note(format!("connection {conn}: connect failed: {what}"));
    }

    /// Keep the first error message only.
    fn note(&mut self, message: String) {
        self.first_error.get_or_insert(message);
    }

    /// Add another thread's tally to this one.
    pub(crate) fn merge(&mut self, other: &Tally) {
        self.connected += other.connected;
        self.connect_failures += other.connect_failures;
        self.sent += other.sent;
        self.completed += other.completed;
        self.in_window += other.in_window;
        self.bytes += other.bytes;
        self.unanswered += other.unanswered;
        self.mismatches += other.mismatches;
        self.closed_early += other.closed_early;
        self.io_errors += other.io_errors;
        self.timed_out += other.timed_out;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        self.last_completion = self.last_completion.max(other.last_completion);
        // Both histograms have the same bounds, so adding cannot fail; if it ever did, the
        // latencies of that thread would be missing, which the message count still shows.
        let _ = self.latency.add(&other.latency);
    }
}

/// A histogram from 1 ns to two minutes with three significant digits.
fn new_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low, 3 digits).
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant histogram bounds are valid")
}
