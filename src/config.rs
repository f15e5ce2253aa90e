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
    /// Most bytes all connections together may hold in buffers (input kept for partial
    /// frames plus output not yet sent), server-wide; see `budget` in the README for what
    /// happens as it fills.
    pub max_buffered: usize,
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
            max_buffered: crate::budget::DEFAULT_MAX_BUFFERED,
        }
    }
}
