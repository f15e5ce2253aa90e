//! The metrics endpoint's public face: [`serve`] and [`serve_with`] start it on a listener
//! and thread of its own, so scrapes never count against `Config::max_connections` nor
//! wait behind clients; [`MetricsServer`] stops it; [`EndpointConfig`] holds its limits.
//!
//! It is a small server of its own: one thread running its own `mio::Poll` (the `reactor`
//! beside this file), serving its connections concurrently, each request bounded by a
//! deadline that a trickle of bytes cannot extend, and at most a capped number of
//! connections at once. What it answers is in `routes`; how a request is framed, in
//! `request`.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use mio::{Poll, Waker};

use super::LiveStats;
use super::reactor::{Reactor, WAKER};
use super::routes::Source;

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
    fn validate(&self) -> io::Result<()> {
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

/// The running metrics endpoint; dropping it (or [`stop`](MetricsServer::stop)) stops it.
#[derive(Debug)]
pub struct MetricsServer {
    /// Where it listens.
    local_addr: SocketAddr,
    /// Raised to stop the loop.
    stop: Arc<AtomicBool>,
    /// Wakes the loop from `poll` to see the flag.
    waker: Arc<Waker>,
    /// The serving thread.
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop serving: close the listener and every connection (a reply being sent is cut
    /// short), and wait for the thread.
    pub fn stop(mut self) {
        self.shut();
    }

    /// Raise the flag, wake the loop, join.
    fn shut(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            if let Err(err) = self.waker.wake() {
                log::warn!("metrics endpoint: cannot wake it to stop: {err}");
            }
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Serve `GET /metrics` for `stats` on `addr` from a thread of its own, with the default
/// [`EndpointConfig`].
///
/// ```no_run
/// use tcp_reactor::{Server, metrics, protocols::Echo};
///
/// let running = Server::new(Echo).bind("127.0.0.1:7000".parse().unwrap())?;
/// let endpoint = metrics::serve("127.0.0.1:9100".parse().unwrap(), running.live_stats())?;
/// println!("scrape http://{}/metrics", endpoint.local_addr());
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// The port is bound by [`bind`]; a binary upgrade hands the socket itself to the new
/// process, which serves it through [`serve_listener`].
pub fn serve(addr: SocketAddr, stats: LiveStats) -> io::Result<MetricsServer> {
    serve_with(addr, stats, &EndpointConfig::default())
}

/// [`serve`] with the limits of `config`; an `InvalidInput` error if one is zero.
///
/// HTTP/1.0 and 1.1, keep-alive (unless the client says `Connection: close`), lines ending
/// in CRLF or a bare LF, request heads up to 8 KiB. `GET` or `HEAD /metrics` get the
/// exposition; another path gets `404`, another method `405`, a malformed request `400`
/// (and a close).
pub fn serve_with(
    addr: SocketAddr,
    stats: LiveStats,
    config: &EndpointConfig,
) -> io::Result<MetricsServer> {
    serve_listener_with(bind(addr)?, stats, config)
}

/// Serve the endpoint for `stats` on `listener` (from [`bind`], or handed over by the
/// server this one upgraded) with the default [`EndpointConfig`].
pub fn serve_listener(listener: TcpListener, stats: LiveStats) -> io::Result<MetricsServer> {
    serve_listener_with(listener, stats, &EndpointConfig::default())
}

/// [`serve_listener`] with the limits of `config`; an `InvalidInput` error if one is zero.
pub fn serve_listener_with(
    listener: TcpListener,
    stats: LiveStats,
    config: &EndpointConfig,
) -> io::Result<MetricsServer> {
    config.validate()?;
    let local_addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let stop = Arc::new(AtomicBool::new(false));
    let reactor = Reactor::new(
        poll,
        mio::net::TcpListener::from_std(listener),
        config.clone(),
        Source { stats },
        Arc::clone(&stop),
    )?;
    let thread = thread::Builder::new()
        .name("tcp-reactor-metrics".into())
        .spawn(move || reactor.run())?;
    Ok(MetricsServer {
        local_addr,
        stop,
        waker,
        thread: Some(thread),
    })
}

/// A listening socket for the metrics endpoint on `addr`, with `SO_REUSEADDR` and without
/// `SO_REUSEPORT`: a second server on the same address fails with `AddrInUse`.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}
