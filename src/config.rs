//! Limits and timeouts shared by every server model.
//!
//! Only numbers live here, and the rules that say which combinations make sense
//! ([`Config::validate`]); each model applies the ones that concern it.

use std::error::Error;
use std::fmt;
use std::io;
use std::time::Duration;

/// Limits and timeouts of a server. `Config::default()` suits most uses.
///
/// Start from the default and change what you need with the `with_*` methods; new fields
/// may be added in later versions, so a `Config` cannot be written as a struct literal
/// outside this crate. [`Server::bind`](crate::Server::bind) rejects an inconsistent one
/// with a [`ConfigError`].
///
/// ```
/// use std::time::Duration;
/// use tcp_reactor::{Config, ConfigError};
///
/// let config = Config::default()
///     .with_max_connections(500)
///     .with_idle_timeout(Some(Duration::from_secs(30)))
///     .with_high_water(256 * 1024)
///     .with_low_water(64 * 1024);
/// assert_eq!(config.validate(), Ok(()));
///
/// // Reading would pause above 256 KiB of unsent output and resume only at 1 MiB.
/// let upside_down = config.with_low_water(1024 * 1024);
/// assert!(matches!(
///     upside_down.validate(),
///     Err(ConfigError::Exceeds { field: "low_water", limit: "high_water", .. })
/// ));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// How long a TLS client may take to complete its handshake before it is closed
    /// ([`CloseReason::HandshakeTimeout`]); unused without TLS.
    ///
    /// [`CloseReason::HandshakeTimeout`]: crate::CloseReason::HandshakeTimeout
    pub handshake_timeout: Duration,
    /// How long to stop accepting after running out of file descriptors.
    pub accept_backoff: Duration,
    /// Length of the listen queue.
    pub backlog: i32,
    /// Most bytes all connections together may hold in buffers (input kept for partial
    /// frames plus output not yet sent), server-wide; see docs/operations.md for what
    /// happens as it fills.
    pub max_buffered: usize,
    /// How long a connection started with [`Context::connect`](crate::Context::connect)
    /// may take to be established before it fails with `ConnectFailed(TimedOut)`.
    pub connect_timeout: Duration,
    /// When the reactor writes the output a callback queued (the threads model always
    /// writes at once).
    pub write_policy: WritePolicy,
    /// Sources trusted to start each connection with a PROXY protocol header (v1 or v2);
    /// its client address then replaces the peer's everywhere. Empty: none is parsed.
    /// A trusted source's header must be complete within `handshake_timeout`.
    pub proxy_protocol_from: Vec<crate::listen::proxy_header::Cidr>,
    /// Most connections at once from one client address (after PROXY), server-wide;
    /// `None` sets no such limit. Beyond it a client is refused as by a full server.
    pub max_per_address: Option<usize>,
    /// IPv6 clients are counted by their first this many bits (a /64 is one household or
    /// one host's privacy addresses); IPv4 clients by their whole address.
    pub per_address_v6_prefix: u8,
}

/// When the reactor hands a connection's output to the kernel.
///
/// Output order, flush-before-close, the caps and the idle timeout behave the same under
/// every policy; only the moment of the `write` differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
            handshake_timeout: Duration::from_secs(10),
            accept_backoff: Duration::from_millis(500),
            backlog: 1024,
            max_buffered: crate::budget::DEFAULT_MAX_BUFFERED,
            connect_timeout: Duration::from_secs(5),
            write_policy: WritePolicy::EndOfTurn,
            proxy_protocol_from: Vec::new(),
            max_per_address: None,
            per_address_v6_prefix: 64,
        }
    }
}

impl Config {
    /// Serve at most `n` connections at once, over all workers (at least 1).
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Accept at most `n` connections per turn of the loop (at least 1).
    pub fn with_accept_budget(mut self, n: usize) -> Self {
        self.accept_budget = n;
        self
    }

    /// Read at most `bytes` from one connection per turn (at least 1).
    pub fn with_read_budget(mut self, bytes: usize) -> Self {
        self.read_budget = bytes;
        self
    }

    /// Read at most `bytes` per `read` call (at least 1).
    pub fn with_read_chunk(mut self, bytes: usize) -> Self {
        self.read_chunk = bytes;
        self
    }

    /// Stop reading from a connection above `bytes` of unsent output (at most
    /// `max_output`).
    pub fn with_high_water(mut self, bytes: usize) -> Self {
        self.high_water = bytes;
        self
    }

    /// Resume reading once unsent output drops to `bytes` (at most `high_water`).
    pub fn with_low_water(mut self, bytes: usize) -> Self {
        self.low_water = bytes;
        self
    }

    /// Close a connection whose unconsumed input reaches `bytes` (at least 1).
    pub fn with_max_input(mut self, bytes: usize) -> Self {
        self.max_input = bytes;
        self
    }

    /// Close a connection whose unsent output exceeds `bytes` (at least 1, and at least
    /// the high-water mark).
    pub fn with_max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    /// Close connections that make no progress for `timeout`; `None` keeps them forever.
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Give a closing connection `linger` without progress to flush and see the peer's EOF
    /// (longer than zero).
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Set [`connect_timeout`](Config::connect_timeout).
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Close a TLS client that has not completed its handshake within `timeout` (longer
    /// than zero); unused without TLS.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Stop accepting for `backoff` after running out of descriptors (longer than zero).
    pub fn with_accept_backoff(mut self, backoff: Duration) -> Self {
        self.accept_backoff = backoff;
        self
    }

    /// Use a listen queue of `backlog` connections (at least 1).
    pub fn with_backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Write replies as `policy` says (the reactor only; the threads model writes at once).
    pub fn with_write_policy(mut self, policy: WritePolicy) -> Self {
        self.write_policy = policy;
        self
    }

    /// Let all connections together hold at most `bytes` in buffers (at least 1); near it
    /// reads pause, then the connections holding the most are closed.
    pub fn with_max_buffered(mut self, bytes: usize) -> Self {
        self.max_buffered = bytes;
        self
    }

    /// Trust `blocks` to send a PROXY protocol header first on each connection.
    pub fn with_proxy_protocol_from(
        mut self,
        blocks: impl IntoIterator<Item = crate::listen::proxy_header::Cidr>,
    ) -> Self {
        self.proxy_protocol_from = blocks.into_iter().collect();
        self
    }

    /// Serve at most `n` connections at once from one client address (`None`: no limit).
    pub fn with_max_per_address(mut self, n: Option<usize>) -> Self {
        self.max_per_address = n;
        self
    }

    /// Count IPv6 clients for `max_per_address` by their first `bits` bits (at most 128).
    pub fn with_per_address_v6_prefix(mut self, bits: u8) -> Self {
        self.per_address_v6_prefix = bits;
        self
    }

    /// True if a connection from `peer` must begin with a PROXY header.
    pub(crate) fn trusts_proxy(&self, peer: crate::PeerAddr) -> bool {
        peer.as_tcp().is_some_and(|addr| {
            self.proxy_protocol_from
                .iter()
                .any(|b| b.contains(addr.ip()))
        })
    }

    /// Check that every limit lets the server work: counts and budgets of at least 1,
    /// timeouts longer than zero, and `low_water <= high_water <= max_output`.
    ///
    /// [`Server::bind`](crate::Server::bind) calls this; the first bad field found is
    /// reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let counts = [
            ("max_connections", self.max_connections),
            ("accept_budget", self.accept_budget),
            ("read_budget", self.read_budget),
            ("read_chunk", self.read_chunk),
            ("max_input", self.max_input),
            ("max_output", self.max_output),
            ("max_buffered", self.max_buffered),
        ];
        if let Some(&(field, _)) = counts.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Zero { field });
        }
        if self.max_per_address == Some(0) {
            return Err(ConfigError::Zero {
                field: "max_per_address",
            });
        }
        if self.backlog < 1 {
            return Err(ConfigError::Zero { field: "backlog" });
        }
        let durations = [
            ("idle_timeout", self.idle_timeout.unwrap_or(Duration::MAX)),
            ("linger", self.linger),
            ("accept_backoff", self.accept_backoff),
            ("connect_timeout", self.connect_timeout),
            ("handshake_timeout", self.handshake_timeout),
        ];
        if let Some(&(field, _)) = durations.iter().find(|(_, value)| value.is_zero()) {
            return Err(ConfigError::Zero { field });
        }
        exceeds("low_water", self.low_water, "high_water", self.high_water)?;
        exceeds("high_water", self.high_water, "max_output", self.max_output)
    }
}

/// [`Config::validate`], plus the worker count a [`Server`](crate::Server) was given.
pub(crate) fn validate_server(config: &Config, workers: usize) -> Result<(), ConfigError> {
    if workers == 0 {
        return Err(ConfigError::Zero { field: "workers" });
    }
    config.validate()
}

/// `Err` when `value` of `field` is above `limit_value` of `limit`.
fn exceeds(
    field: &'static str,
    value: usize,
    limit: &'static str,
    limit_value: usize,
) -> Result<(), ConfigError> {
    if value > limit_value {
        return Err(ConfigError::Exceeds {
            field,
            value,
            limit,
            limit_value,
        });
    }
    Ok(())
}

/// Why a [`Config`] (or a server's worker count) cannot work, naming the field at fault.
///
/// [`Server::bind`](crate::Server::bind) returns it inside an [`io::Error`] of kind
/// [`InvalidInput`](io::ErrorKind::InvalidInput); `ConfigError::of` gets it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count, budget, size or timeout is zero (or, for `backlog`, below 1), so the server
    /// could never accept, read, write or wait.
    Zero {
        /// The field (or `workers`, the [`Server::workers`](crate::Server::workers) count).
        field: &'static str,
    },
    /// A field is larger than another one it must not exceed: `low_water` above
    /// `high_water` would never resume reading, `high_water` above `max_output` would
    /// close connections before pausing them.
    Exceeds {
        /// The field that is too large.
        field: &'static str,
        /// Its value.
        value: usize,
        /// The field it must not exceed.
        limit: &'static str,
        /// That field's value.
        limit_value: usize,
    },
}

impl ConfigError {
    /// The `ConfigError` inside an error returned by [`Server::bind`](crate::Server::bind),
    /// if that is why it failed.
    pub fn of(err: &io::Error) -> Option<&ConfigError> {
        err.get_ref()?.downcast_ref()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Zero { field } => {
                write!(
                    f,
                    "invalid configuration: {field} must be greater than zero"
                )
            }
            ConfigError::Exceeds {
                field,
                value,
                limit,
                limit_value,
            } => write!(
                f,
                "invalid configuration: {field} ({value}) must not exceed {limit} ({limit_value})"
            ),
        }
    }
}

impl Error for ConfigError {}

impl From<ConfigError> for io::Error {
    fn from(err: ConfigError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn a_zero_limit_is_named() {
        let cases = [
            ("max_connections", Config::default().with_max_connections(0)),
            ("accept_budget", Config::default().with_accept_budget(0)),
            ("read_budget", Config::default().with_read_budget(0)),
            ("read_chunk", Config::default().with_read_chunk(0)),
            ("max_input", Config::default().with_max_input(0)),
            ("backlog", Config::default().with_backlog(-1)),
            ("linger", Config::default().with_linger(Duration::ZERO)),
            (
                "accept_backoff",
                Config::default().with_accept_backoff(Duration::ZERO),
            ),
            (
                "idle_timeout",
                Config::default().with_idle_timeout(Some(Duration::ZERO)),
            ),
            (
                "handshake_timeout",
                Config::default().with_handshake_timeout(Duration::ZERO),
            ),
        ];
        for (field, config) in cases {
            assert_eq!(config.validate(), Err(ConfigError::Zero { field }));
        }
    }

    #[test]
    fn watermarks_must_be_ordered_below_the_output_cap() {
        let low_above_high = Config::default().with_low_water(200).with_high_water(100);
        assert!(matches!(
            low_above_high.validate(),
            Err(ConfigError::Exceeds {
                field: "low_water",
                value: 200,
                limit: "high_water",
                limit_value: 100
            })
        ));
        let high_above_cap = Config::default()
            .with_low_water(10)
            .with_high_water(100)
            .with_max_output(99);
        assert!(matches!(
            high_above_cap.validate(),
            Err(ConfigError::Exceeds {
                field: "high_water",
                limit: "max_output",
                ..
            })
        ));
        let all_equal = Config::default()
            .with_low_water(100)
            .with_high_water(100)
            .with_max_output(100);
        assert_eq!(all_equal.validate(), Ok(()));
    }

    #[test]
    fn the_error_survives_the_trip_through_io_error() {
        let err = io::Error::from(ConfigError::Zero { field: "workers" });
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            ConfigError::of(&err),
            Some(&ConfigError::Zero { field: "workers" })
        );
        assert_eq!(
            err.to_string(),
            "invalid configuration: workers must be greater than zero"
        );
    }
}
