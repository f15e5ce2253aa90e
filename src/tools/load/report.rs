//! The result of a load run: what was measured, as a table for people and JSON for
//! programs.
//!
//! Only formatting and arithmetic on finished counts; no I/O besides building strings.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::tally::Tally;

/// Latency percentiles, in microseconds, from queuing a message to the arrival of the last
/// byte of its echo.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[non_exhaustive]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest message.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// Failures, each counted once per connection it ended (plus the messages lost with them).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Errors {
    /// Connections that could not be established.
    pub connect_failures: u64,
    /// Connections whose echo differed from what was sent.
    pub mismatches: u64,
    /// Connections the server closed (EOF, reset or broken pipe) before the run ended.
    pub closed_early: u64,
    /// Connections ended by any other read or write error.
    pub io: u64,
    /// Connections still waiting for echoes at the hard timeout.
    pub timed_out: u64,
    /// Messages sent on those connections that were never answered.
    pub unanswered: u64,
}

/// Everything one load run measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct Report {
    /// The server loaded.
    pub addr: String,
    /// Connections asked for.
    pub connections: usize,
    /// Connections established.
    pub connected: u64,
    /// Bytes per message.
    pub size: usize,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// Load threads used.
    pub threads: usize,
    /// Seconds from the start until every connection was up (or had failed).
    pub connect_secs: f64,
    /// Seconds from the first message sent to the last echo received.
    pub elapsed_secs: f64,
    /// Seconds the rates are computed over: the `--duration` window when the run went to
    /// its end (echoes completing later are not counted in the rates), else `elapsed_secs`.
    pub rate_secs: f64,
    /// Messages sent.
    pub sent: u64,
    /// Messages whose echo arrived complete and correct.
    pub messages: u64,
    /// Echoed bytes received and verified (one direction).
    pub bytes: u64,
    /// Messages completed within the rate window, per second.
    pub messages_per_sec: f64,
    /// `messages_per_sec × size`, in MiB/s (echoed bytes, one direction).
    pub mib_per_sec: f64,
    /// Latency percentiles.
    pub latency_us: Latency,
    /// Failures.
    pub errors: Errors,
    /// The first failure, in words.
    pub first_error: Option<String>,
    /// The run was ended early (SIGINT, SIGTERM, or [`run_until`](super::run_until)'s
    /// flag): the figures cover the run until then, and the messages still in flight
    /// were dropped without counting as failures.
    pub interrupted: bool,
}

/// How the run was set up, to be copied into the report.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// The server.
    pub(crate) addr: String,
    /// Connections asked for.
    pub(crate) connections: usize,
    /// Bytes per message.
    pub(crate) size: usize,
    /// Messages in flight per connection.
    pub(crate) pipeline: usize,
    /// Load threads.
    pub(crate) threads: usize,
}

/// The messages that count towards the rates, and the time they took.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    /// Messages completed within the window.
    pub(crate) messages: u64,
    /// The window.
    pub(crate) over: Duration,
}

impl Report {
    /// Build the report from the merged tally, the two phase lengths and the rate window.
    pub(crate) fn new(
        setup: Setup,
        tally: &Tally,
        connect: Duration,
        elapsed: Duration,
        rate: Rate,
    ) -> Self {
        let secs = rate.over.as_secs_f64();
        let messages_per_sec = if secs > 0.0 {
            rate.messages as f64 / secs
        } else {
            0.0
        };
        let h = &tally.latency;
        let us = |ns: u64| ns as f64 / 1000.0;
        let latency = if h.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: us(h.value_at_quantile(0.50)),
                p90: us(h.value_at_quantile(0.90)),
                p99: us(h.value_at_quantile(0.99)),
                p999: us(h.value_at_quantile(0.999)),
                max: us(h.max()),
                mean: h.mean() / 1000.0,
            }
        };
        Report {
            addr: setup.addr,
            connections: setup.connections,
            connected: tally.connected,
            size: setup.size,
            pipeline: setup.pipeline,
            threads: setup.threads,
            connect_secs: connect.as_secs_f64(),
            elapsed_secs: elapsed.as_secs_f64(),
            rate_secs: secs,
            sent: tally.sent,
            messages: tally.completed,
            bytes: tally.bytes,
            messages_per_sec,
            mib_per_sec: messages_per_sec * setup.size as f64 / (1024.0 * 1024.0),
            latency_us: latency,
            errors: Errors {
                connect_failures: tally.connect_failures,
                mismatches: tally.mismatches,
                closed_early: tally.closed_early,
                io: tally.io_errors,
                timed_out: tally.timed_out,
                unanswered: tally.unanswered,
            },
            first_error: tally.first_error.clone(),
            interrupted: false,
        }
    }

    /// Failures of any kind: connections that failed to connect or ended in an error.
    pub fn error_count(&self) -> u64 {
        let e = &self.errors;
        e.connect_failures + e.mismatches + e.closed_early + e.io + e.timed_out
    }

    /// True when every connection connected and every echo came back correct.
    pub fn is_clean(&self) -> bool {
        self.error_count() == 0
    }

    /// One line saying what went wrong, or `None` for a clean run.
    pub fn failure_line(&self) -> Option<String> {
        if self.is_clean() {
            return None;
        }
        let e = &self.errors;
        let mut line = format!(
            "load against {} FAILED: {} connect failure(s), {} mismatched echo(es), {} closed early, \
             {} I/O error(s), {} timed out, {} message(s) unanswered",
            self.addr,
            e.connect_failures,
            e.mismatches,
            e.closed_early,
            e.io,
            e.timed_out,
            e.unanswered
        );
        if let Some(first) = &self.first_error {
            let _ = write!(line, "; first: {first}");
        }
        Some(line)
    }

    /// The report as a table for a terminal.
    pub fn table(&self) -> String {
        let l = &self.latency_us;
        let e = &self.errors;
        let mut t = String::new();
        let mut row = |name: &str, value: String| {
            let _ = writeln!(t, "  {name:<18} {value}");
        };
        row("server", self.addr.clone());
        if self.interrupted {
            row(
                "interrupted",
                "yes: a partial report of the run until then".to_string(),
            );
        }
        row(
            "connections",
            format!(
                "{} of {} ({:.2} s to connect)",
                self.connected, self.connections, self.connect_secs
            ),
        );
        row(
            "message",
            format!(
                "{} B, pipeline {}, {} load thread(s)",
                self.size, self.pipeline, self.threads
            ),
        );
        row(
            "messages",
            format!(
                "{} echoed of {} sent in {:.2} s",
                self.messages, self.sent, self.elapsed_secs
            ),
        );
        row(
            "throughput",
            format!(
                "{:.0} msg/s, {:.2} MiB/s (over {:.2} s)",
                self.messages_per_sec, self.mib_per_sec, self.rate_secs
            ),
        );
        row(
            "latency (us)",
            format!(
                "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
                l.p50, l.p90, l.p99, l.p999, l.max
            ),
        );
        row(
            "errors",
            format!(
                "{} connect, {} mismatch, {} closed early, {} I/O, {} timed out",
                e.connect_failures, e.mismatches, e.closed_early, e.io, e.timed_out
            ),
        );
        t
    }
}
