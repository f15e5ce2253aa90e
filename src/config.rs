//! Limits and timeouts shared by every server model.
//!
//! Only numbers live here; each model applies the ones that make sense for it.

use std::time::Duration;

/// Limits and timeouts of a server. `Config::default()` suits most uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most connections served at once by the whole server (all workers together); clients
    /// beyond it are accepted and closed at once.
    pub max_connections: usize,
    /// Most connections accepted in one turn of the loop, so a connect storm cannot starve
    /// clients already connected.
    pub accept_budget: usize,
    /// Most bytes read from one connection in one turn, so one fast client cannot starve
    /// the others.
    pub read_budget: usize,
    /// Size of one `read`: the reactor's shared read buffer, or each client thread's.
    pub read_chunk: usize,
    /// Above this many unsent bytes a connection is no longer read from.
    pub high_water: usize,
    /// Reading resumes once unsent output drops to this many bytes.
    pub low_water: usize,
    /// Unconsumed input above this closes the connection ([`CloseReason::InputLimit`]).
    ///
    /// [`CloseReason::InputLimit`]: crate::CloseReason::InputLimit
    pub max_input: usize,
    /// Unsent output above this closes the connection ([`CloseReason::OutputLimit`]).
    ///
    /// [`CloseReason::OutputLimit`]: crate::CloseReason::OutputLimit
    pub max_output: usize,
    /// Close a connection that makes no progress for this long (the handler consumes none of
    /// its input and none of its output is written); `None` keeps it forever.
    pub idle_timeout: Option<Duration>,
    /// How long a closing connection may go without progress while it flushes its output
    /// and waits for the peer's EOF; also bounds a graceful stop.
    pub linger: Duration,
    /// How long to stop accepting after running out of file descriptors.
    pub accept_backoff: Duration,
    /// Length of the listen queue.
    pub backlog: i32,
    /// When the reactor writes the output a callback queued (the threads model always
    /// writes at once).
    pub write_policy: WritePolicy,
}

/// When the reactor hands a connection's output to the kernel.
///
/// Output order, flush-before-close, the caps and the idle timeout behave the same under
/// every policy; only the moment of the `write` differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePolicy {
    /// Write each callback's output as soon as the callback returns: the lowest latency
    /// for the first client of a busy turn.
    Eager,
    /// Keep output in the connection's buffer while the turn's readiness events are
    /// handled, then write every connection that has output once, before the next poll
    /// (redis's `beforeSleep`). A client with many connections then finds many replies
    /// ready per wake-up, and the server sleeps less often per request.
    EndOfTurn,
    /// [`EndOfTurn`](WritePolicy::EndOfTurn) in turns whose poll returned at least this
    /// many readiness events, [`Eager`](WritePolicy::Eager) in quieter turns.
    Adaptive {
        /// Fewest readiness events in a turn for its output to be deferred.
        min_events: usize,
    },
}

impl WritePolicy {
    /// The policy's name on the command line (`--write-policy`).
    pub fn name(self) -> &'static str {
        match self {
            WritePolicy::Eager => "eager",
            WritePolicy::EndOfTurn => "end-of-turn",
            WritePolicy::Adaptive { .. } => "adaptive",
        }
    }

    /// True when a turn whose poll returned `events` readiness events defers its output.
    pub fn defers(self, events: usize) -> bool {
        match self {
            WritePolicy::Eager => false,
            WritePolicy::EndOfTurn => true,
            WritePolicy::Adaptive { min_events } => events >= min_events,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_connections: 10_000,
            accept_budget: 128,
            read_budget: 256 * 1024,
            read_chunk: 64 * 1024,
            high_water: 1024 * 1024,
            low_water: 256 * 1024,
            max_input: 1024 * 1024,
            max_output: 16 * 1024 * 1024,
            idle_timeout: None,
            linger: Duration::from_secs(5),
            accept_backoff: Duration::from_millis(500),
            backlog: 1024,
            write_policy: WritePolicy::EndOfTurn,
        }
    }
}
