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
    /// Most connections open at once, server-wide: taken from the same count that enforces
    /// `Config::max_connections`, so it never exceeds the limit.
    pub peak_connections: u64,
    /// Accept attempts that failed for lack of file descriptors (`EMFILE`, `ENFILE`).
    pub fd_exhausted: u64,
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
        self.peak_connections = self.peak_connections.max(other.peak_connections);
        self.fd_exhausted += other.fd_exhausted;
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "accepted          {}", self.accepted)?;
        writeln!(f, "refused           {}", self.refused)?;
        writeln!(f, "peak connections  {}", self.peak_connections)?;
        writeln!(f, "bytes in          {}", self.bytes_in)?;
        writeln!(f, "bytes out         {}", self.bytes_out)?;
        writeln!(f, "polls             {}", self.polls)?;
        writeln!(f, "events            {}", self.events)?;
        writeln!(f, "fd exhausted      {}", self.fd_exhausted)?;
        write!(f, "closed            {}", self.closed_total())?;
        for (name, count) in CloseReason::NAMES.iter().zip(self.closed) {
            if count > 0 {
                write!(f, "\n  {name:<16}{count}")?;
            }
        }
        Ok(())
    }
}
