//! The metrics endpoint's limits: how long a request may take and how many connections it
//! serves at once. Read by the endpoint when it starts and by its reactor per connection.

use std::io;
use std::time::Duration;

/// Limits of the metrics endpoint. `EndpointConfig::default()` suits a Prometheus server
/// and a few people looking.
///
/// ```
/// use std::time::Duration;
/// use tcp_reactor::metrics::EndpointConfig;
///
/// let config = EndpointConfig::default()
///     .with_request_timeout(Duration::from_secs(2))
///     .with_max_connections(16);
/// assert_eq!(config.max_connections, 16);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// How long a client has for each request, from the moment the endpoint starts waiting
    /// for it (the accept, or the end of the previous reply) until its reply has been
    /// taken: a whole-request deadline, which bytes arriving one by one do not extend. A
    /// connection kept alive without a next request is closed at this deadline too, and
    /// one whose request is under way gets `408 Request Timeout`. Default: 5 s (a local
    /// scrape takes milliseconds; Prometheus waits 10 s by default).
    pub request_timeout: Duration,
    /// Most connections served at once; a client beyond it gets `503 Service
    /// Unavailable` and is closed, and the connections already served go on. Default: 64.
    pub max_connections: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            request_timeout: Duration::from_secs(5),
            max_connections: 64,
        }
    }
}

impl EndpointConfig {
    /// Give each request `timeout` (longer than zero) to arrive and its reply to be taken.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Serve at most `max` connections (at least 1) at once.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// An `InvalidInput` error naming the first limit that cannot work (a zero).
    pub(super) fn validate(&self) -> io::Result<()> {
        let invalid = |what: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("metrics endpoint: {what} must be more than zero"),
            ))
        };
        if self.request_timeout.is_zero() {
            return invalid("request_timeout");
        }
        if self.max_connections == 0 {
            return invalid("max_connections");
        }
        Ok(())
    }
}
