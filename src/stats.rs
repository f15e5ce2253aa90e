//! Counters a server reports when it stops (and on demand).
//!
//! Plain numbers, filled by each server model and summed over workers; no I/O here.

use std::fmt;
use std::ops::AddAssign;

use crate::CloseReason;

/// What a server did over its life.
///
/// Read the fields; more counters may be added in later versions, so outside this crate a
/// `Stats` comes only from a server (or `Stats::default()`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections accepted and closed at once because the server was full.
    pub refused: u64,
    /// Connections handlers dialed with `Context::connect` (a connect was started).
    pub connected: u64,
    /// Connections closed, by [`CloseReason::index`].
    pub closed: [u64; CloseReason::NAMES.len()],
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Calls to `poll` (reactor) — zero under the threads model.
    pub polls: u64,
    /// Readiness events handled (reactor) — zero under the threads model.
    pub events: u64,
    /// `read` calls on connections (reactor) — zero under the threads model.
    pub reads: u64,
    /// `write` calls on connections (reactor) — zero under the threads model.
    pub writes: u64,
    /// Most connections open at once, server-wide: taken from the same count that enforces
    /// `Config::max_connections`, so it never exceeds the limit.
    pub peak_connections: u64,
    /// Accept attempts that failed for lack of file descriptors (`EMFILE`, `ENFILE`).
    pub fd_exhausted: u64,
    /// Connections refused because their client address held `Config::max_per_address`
    /// (also counted in `refused`).
    pub refused_per_address: u64,
    /// Connections from trusted sources closed for a bad, late or missing PROXY header.
    pub proxy_header_failed: u64,
    /// Connections admitted with a PROXY header.
    pub proxied: u64,
}

impl Stats {
    /// Count one closed connection.
    pub(crate) fn count_close(&mut self, reason: CloseReason) {
        self.closed[reason.index()] += 1;
    }

    /// Connections closed for this kind of reason.
    pub fn closed_by(&self, reason: CloseReason) -> u64 {
        self.closed[reason.index()]
    }

    /// Connections closed for any reason.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().sum()
    }
}

impl AddAssign<&Stats> for Stats {
    /// Sum counters of two workers. Peaks are not additive (two workers' peaks need not
    /// coincide): the larger is kept, and the server reports its own server-wide peak.
    fn add_assign(&mut self, other: &Stats) {
        self.accepted += other.accepted;
        self.refused += other.refused;
        self.connected += other.connected;
        for (mine, theirs) in self.closed.iter_mut().zip(other.closed) {
            *mine += theirs;
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.polls += other.polls;
        self.events += other.events;
        self.reads += other.reads;
        self.writes += other.writes;
        self.peak_connections = self.peak_connections.max(other.peak_connections);
        self.fd_exhausted += other.fd_exhausted;
        self.refused_per_address += other.refused_per_address;
        self.proxy_header_failed += other.proxy_header_failed;
        self.proxied += other.proxied;
    }
}

/// Width of the name column in [`Stats`]'s text: the longest close reason (listed
/// indented by two) and at least one space, so that no name runs into its number.
const NAME_WIDTH: usize = {
    let mut longest = 0;
    let mut index = 0;
    while index < CloseReason::NAMES.len() {
        if CloseReason::NAMES[index].len() > longest {
            longest = CloseReason::NAMES[index].len();
        }
        index += 1;
    }
    longest + 3
};

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = [
            ("accepted", self.accepted),
            ("refused", self.refused),
            ("peak connections", self.peak_connections),
            ("bytes in", self.bytes_in),
            ("bytes out", self.bytes_out),
            ("polls", self.polls),
            ("events", self.events),
            ("reads", self.reads),
            ("writes", self.writes),
            ("fd exhausted", self.fd_exhausted),
            ("refused per address", self.refused_per_address),
            ("proxy header failed", self.proxy_header_failed),
            ("proxied", self.proxied),
        ];
        for (name, value) in rows {
            writeln!(f, "{name:<NAME_WIDTH$}{value}")?;
        }
        write!(f, "{:<NAME_WIDTH$}{}", "closed", self.closed_total())?;
        for (name, count) in CloseReason::NAMES.iter().zip(self.closed) {
            if count > 0 {
                write!(f, "\n  {name:<width$}{count}", width = NAME_WIDTH - 2)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_keeps_its_name_apart_from_its_number() {
        let mut stats = Stats {
            accepted: 7,
            ..Stats::default()
        };
        stats.closed = [2; CloseReason::NAMES.len()];
        let text = stats.to_string();
        let mut reasons = Vec::new();
        for line in text.lines() {
            let (name, value) = line.trim().rsplit_once(' ').expect("a name and a number");
            assert!(value.parse::<u64>().is_ok(), "{line:?}");
            if line.starts_with("  ") {
                reasons.push(name.trim().to_string());
            }
        }
        assert_eq!(reasons, CloseReason::NAMES);
        assert!(text.contains("\n  handshake_timeout 2"), "{text}");
        // The numbers line up in one column.
        let columns: Vec<usize> = text
            .lines()
            .map(|line| line.rfind(' ').expect("a space") + 1)
            .collect();
        assert!(columns.iter().all(|&c| c == columns[0]), "{text}");
    }
}
