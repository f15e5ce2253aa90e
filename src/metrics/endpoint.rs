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

use mio::{Poll, Waker};

use super::LiveStats;
use super::config::EndpointConfig;
use super::reactor::{Reactor, WAKER};
use super::response::Source;

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

    /// Stop serving, gracefully: accept the clients already queued, close the listener,
    /// answer every request already received or under way (with `Connection: close`, each
    /// within its request deadline), close idle connections, and wait for the thread.
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
/// exposition; `/` and `/live.json` the live page and its data, and `POST /step`, `/run`,
/// `/pause` step mode's controls (`403` without step mode; see docs/live.md); another
/// path gets `404`, another method `405`, a malformed request `400` (and a close).
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
