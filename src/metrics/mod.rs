//! Live statistics of a running server and their Prometheus text exposition.
//!
//! A [`Snapshot`] is what the server looks like at one moment, summed over workers from
//! the counters each worker publishes once per turn of its loop (never per message), plus
//! the server-wide gauges. [`render`] turns it into the Prometheus text format 0.0.4;
//! [`serve`] answers `GET /metrics` with it on a listener of its own. No protocol handler
//! and no worker runs here.
//!
//! The endpoint is a small server of its own: `endpoint` (its public face and the
//! listener), `reactor` (its loop), `conn` (one connection), `request` (framing a request,
//! a pure function), `routes` (what each path answers) and `live` (the live page, its
//! JSON and step mode's controls).

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use crate::worker::Live;
use crate::{CloseReason, Stats};

mod config;
mod conn;
mod endpoint;
mod live;
mod reactor;
#[doc(hidden)]
pub mod request;
mod response;
mod routes;

pub use config::EndpointConfig;
pub use endpoint::{MetricsServer, bind, serve, serve_listener, serve_listener_with, serve_with};

/// The server at one moment: counters summed over workers, and gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Every worker's counters summed; `accepted`, `refused` and `peak_connections` are the
    /// server-wide gauges' (current to the moment of the snapshot).
    pub total: Stats,
    /// Each worker's counters as of its last turn, in worker order. Under the threads
    /// model a client's bytes count once it has closed.
    pub workers: Vec<Stats>,
    /// Connections accepted by each worker, in worker order.
    pub accepted_by_worker: Vec<u64>,
    /// Connections open now.
    pub connections: u64,
    /// Bytes held in connection buffers now, server-wide.
    pub buffered_bytes: u64,
    /// The budget for them, `Config::max_buffered`.
    pub max_buffered_bytes: u64,
}

/// A handle that takes [`Snapshot`]s of a running server; cheap to clone and usable from
/// any thread (from [`Running::live_stats`](crate::Running::live_stats)).
#[derive(Clone)]
pub struct LiveStats {
    /// The server-wide gauges and each worker's published counters.
    live: Arc<Live>,
}

impl fmt::Debug for LiveStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveStats")
            .field("connections", &self.live.connections())
            .finish()
    }
}

impl LiveStats {
    /// A handle on these gauges.
    pub(crate) fn new(live: Arc<Live>) -> Self {
        LiveStats { live }
    }

    /// True once a stop or an upgrade has begun: `/healthz` answers 503.
    pub fn is_draining(&self) -> bool {
        self.live.draining.is_draining()
    }

    /// The server as it is now. Each worker's part is consistent as of its last turn.
    pub fn snapshot(&self) -> Snapshot {
        let workers = self.live.published();
        let mut total = Stats::default();
        for stats in &workers {
            total += stats;
        }
        total.accepted = self.live.accepted();
        total.refused = self.live.refused();
        total.peak_connections = self.live.peak_connections();
        self.live.admission.fill(&mut total);
        Snapshot {
            total,
            workers,
            accepted_by_worker: self.live.accepted_by_worker(),
            connections: self.live.connections(),
            buffered_bytes: self.live.budget.held(),
            max_buffered_bytes: self.live.budget.limit(),
        }
    }
}

/// The Content-Type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family being written: its header, then samples.
struct Family<'a> {
    /// The text being built.
    out: &'a mut String,
    /// The metric's name.
    name: &'static str,
}

impl Family<'_> {
    /// One sample, with `labels` already formatted (`key="value",…`) or empty.
    fn sample(&mut self, labels: &str, value: u64) -> &mut Self {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{} {value}", self.name);
        } else {
            let _ = writeln!(self.out, "{}{{{labels}}} {value}", self.name);
        }
        self
    }

    /// One sample per worker, labelled `worker="N"`.
    fn per_worker(&mut self, values: impl Iterator<Item = u64>) {
        for (index, value) in values.enumerate() {
            self.sample(&format!("worker=\"{index}\""), value);
        }
    }
}

/// Begin a metric family: its `HELP` and `TYPE` lines.
fn family<'a>(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out, name }
}

/// The snapshot in the Prometheus text exposition format, version 0.0.4.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let workers = &snapshot.workers;
    family(
        &mut out,
        "tcp_reactor_connections_open",
        "gauge",
        "Connections open now.",
    )
    .sample("", snapshot.connections);
    family(
        &mut out,
        "tcp_reactor_connections_peak",
        "gauge",
        "Most connections open at once since the server started.",
    )
    .sample("", snapshot.total.peak_connections);
    family(
        &mut out,
        "tcp_reactor_accepted_total",
        "counter",
        "Connections accepted and served, by worker.",
    )
    .per_worker(snapshot.accepted_by_worker.iter().copied());
    family(
        &mut out,
        "tcp_reactor_refused_total",
        "counter",
        "Connections turned away because the server was full.",
    )
    .sample("", snapshot.total.refused);
    let by_reason = [
        (
            "server_full",
            snapshot
                .total
                .refused
                .saturating_sub(snapshot.total.refused_per_address),
        ),
        ("per_address", snapshot.total.refused_per_address),
        ("proxy_header", snapshot.total.proxy_header_failed),
    ];
    let mut refusals = family(
        &mut out,
        "tcp_reactor_refusals_total",
        "counter",
        "Connections turned away, by reason: the server full, the client's address at its limit, a bad or late PROXY header.",
    );
    for (reason, count) in by_reason {
        refusals.sample(&format!("reason=\"{reason}\""), count);
    }
    let mut closed = family(
        &mut out,
        "tcp_reactor_closed_total",
        "counter",
        "Connections closed, by reason.",
    );
    for (name, count) in CloseReason::NAMES.iter().zip(snapshot.total.closed) {
        closed.sample(&format!("reason=\"{name}\""), count);
    }
    family(
        &mut out,
        "tcp_reactor_received_bytes_total",
        "counter",
        "Bytes read from clients, by worker.",
    )
    .per_worker(workers.iter().map(|w| w.bytes_in));
    family(
        &mut out,
        "tcp_reactor_sent_bytes_total",
        "counter",
        "Bytes written to clients, by worker.",
    )
    .per_worker(workers.iter().map(|w| w.bytes_out));
    family(
        &mut out,
        "tcp_reactor_buffered_bytes",
        "gauge",
        "Bytes held in connection buffers (partial input, unsent output), server-wide.",
    )
    .sample("", snapshot.buffered_bytes);
    family(
        &mut out,
        "tcp_reactor_buffered_limit_bytes",
        "gauge",
        "The budget for buffered bytes (max_buffered).",
    )
    .sample("", snapshot.max_buffered_bytes);
    family(
        &mut out,
        "tcp_reactor_polls_total",
        "counter",
        "Calls to poll, by worker (zero under the threads model).",
    )
    .per_worker(workers.iter().map(|w| w.polls));
    family(
        &mut out,
        "tcp_reactor_events_total",
        "counter",
        "Readiness events handled, by worker (zero under the threads model).",
    )
    .per_worker(workers.iter().map(|w| w.events));
    family(
        &mut out,
        "tcp_reactor_fd_exhausted_total",
        "counter",
        "Accept attempts that failed for lack of file descriptors.",
    )
    .sample("", snapshot.total.fd_exhausted);
    out
}

/// A one-line summary of what happened between two snapshots `elapsed` apart: open
/// connections, accepts and bytes per second, buffered bytes, and closes by reason.
pub fn summary_line(before: &Snapshot, now: &Snapshot, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64().max(1e-3);
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
    let mut line = format!(
        "connections {} | accepted/s {:.1} | in {:.0} B/s | out {:.0} B/s | buffered {} of {} B",
        now.connections,
        rate(before.total.accepted, now.total.accepted),
        rate(before.total.bytes_in, now.total.bytes_in),
        rate(before.total.bytes_out, now.total.bytes_out),
        now.buffered_bytes,
        now.max_buffered_bytes,
    );
    let mut closes = String::new();
    for (index, name) in CloseReason::NAMES.iter().enumerate() {
        let closed = now.total.closed[index].saturating_sub(before.total.closed[index]);
        if closed > 0 {
            let _ = write!(closes, " {name}={closed}");
        }
    }
    if closes.is_empty() {
        line.push_str(" | closed 0");
    } else {
        line.push_str(" | closed");
        line.push_str(&closes);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_and_type_and_counters_end_in_total() {
        let snapshot = Snapshot {
            workers: vec![Stats::default(); 2],
            accepted_by_worker: vec![3, 4],
            ..Snapshot::default()
        };
        let text = render(&snapshot);
        let mut kinds = std::collections::HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                kinds.insert(name.to_string(), kind.to_string());
            }
        }
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            let kind = kinds.get(name).map(String::as_str);
            assert!(kind.is_some(), "{name} has no TYPE");
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
            assert_eq!(kind == Some("counter"), name.ends_with("_total"), "{name}");
        }
        assert!(text.contains("tcp_reactor_accepted_total{worker=\"1\"} 4\n"));
        assert!(text.contains("tcp_reactor_closed_total{reason=\"memory_budget\"} 0\n"));
    }

    #[test]
    fn the_summary_gives_rates_and_closes_since_the_last_line() {
        let before = Snapshot::default();
        let mut total = Stats {
            accepted: 20,
            bytes_in: 4000,
            ..Stats::default()
        };
        total.count_close(CloseReason::MemoryBudget);
        let now = Snapshot {
            connections: 5,
            total,
            ..Snapshot::default()
        };
        let line = summary_line(&before, &now, Duration::from_secs(2));
        assert!(
            line.starts_with("connections 5 | accepted/s 10.0 | in 2000 B/s"),
            "{line}"
        );
        assert!(line.ends_with("closed memory_budget=1"), "{line}");
    }
}
