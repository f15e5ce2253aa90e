//! The metrics endpoint's own loop: one thread, one `mio::Poll`, a slab of [`Conn`]s, so
//! that any number of slow or idle clients (up to the cap) never delay a scrape.
//!
//! Each turn: poll (until the next deadline at most), drive every connection an event names,
//! accept, expire deadlines. It shares nothing with the server's workers but the
//! [`Source`] it reads snapshots from.
//!
//! Stopping is graceful: the clients already queued are accepted, the listener is closed,
//! idle connections close at once, and a request already under way is answered (with
//! `Connection: close`) before its connection closes, each within its own deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::config::EndpointConfig;
use super::conn::{Conn, Next};
use super::response::{Response, Source};
use crate::rules::{self, AcceptError, HalfClose};

/// The listening socket's token.
pub(super) const LISTENER: Token = Token(0);
/// The token of the waker that [`MetricsServer::stop`](super::MetricsServer::stop) uses.
pub(super) const WAKER: Token = Token(1);
/// Connection tokens are slab keys offset past the two above.
const FIRST_CONN: usize = 2;

/// Most connections accepted in one turn, so a connect storm cannot starve the clients
/// already connected; the rest are taken next turn.
const ACCEPT_BUDGET: usize = 64;

/// How long to stop accepting after running out of descriptors: with edge-triggered
/// readiness no new event would come for clients already queued, and retrying at once
/// would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The endpoint's loop and everything it owns.
#[derive(Debug)]
pub(super) struct Reactor {
    /// Readiness of the listener, the connections and the waker.
    poll: Poll,
    /// Where scrapers connect; `None` once stopping.
    listener: Option<TcpListener>,
    /// The connections being served, at most `config.max_connections`.
    conns: Slab<Conn>,
    /// The request deadline and the connection cap.
    config: EndpointConfig,
    /// What the routes answer from.
    source: Source,
    /// Raised (then the waker woken) to stop the loop.
    stop: Arc<AtomicBool>,
    /// The listener may have clients waiting: accept before polling again.
    accept_ready: bool,
    /// Accepting pauses until then after running out of descriptors.
    accept_paused_until: Option<Instant>,
}

impl Reactor {
    /// A loop over `listener` (registered with `poll` here) for `source`.
    pub(super) fn new(
        poll: Poll,
        mut listener: TcpListener,
        config: EndpointConfig,
        source: Source,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Self> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Reactor {
            poll,
            listener: Some(listener),
            conns: Slab::new(),
            config,
            source,
            stop,
            // Clients may have queued before the listener was registered.
            accept_ready: true,
            accept_paused_until: None,
        })
    }

    /// Serve until stopped and every request received is answered, or until polling or
    /// the listener fails (logged). Dropping the reactor afterwards closes the listener
    /// and every connection.
    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            if self.listener.is_none() && self.conns.is_empty() {
                log::debug!("metrics endpoint: stopped");
                return;
            }
            let timeout = self.next_wake(Instant::now());
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                // A signal interrupted the wait: poll again.
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("metrics endpoint: poll failed, it stops serving: {err}");
                return;
            }
            let now = Instant::now();
            if self.listener.is_some() && self.stop.load(Ordering::SeqCst) {
                self.begin_stop(now);
            }
            self.dispatch(&events, now);
            if !self.accept(now) {
                return;
            }
            self.expire(now);
        }
    }

    /// Stop accepting, gracefully: take the clients already queued (their requests may be
    /// in), close the listener (a successor holding the same socket goes on accepting
    /// from it), and tell every connection to finish its current request and close.
    fn begin_stop(&mut self, now: Instant) {
        log::debug!("metrics endpoint: stopping");
        self.accept_ready = true;
        self.accept_paused_until = None;
        // Bounded: the accept budget per call, and a cap of whole passes.
        for _ in 0..4 {
            if !self.accept(now) || !self.accept_ready {
                break;
            }
        }
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.stop();
            }
            self.drive(key, now);
        }
    }

    /// How long `poll` may wait: until the earliest deadline or the end of an accept
    /// backoff, not at all if clients wait to be accepted, forever if nothing is due.
    fn next_wake(&self, now: Instant) -> Option<Duration> {
        let backoff = self.accept_paused_until;
        if self.accept_ready && backoff.is_none() && self.listener.is_some() {
            return Some(Duration::ZERO);
        }
        // A scan, not a timer wheel: the cap keeps the slab small.
        self.conns
            .iter()
            .map(|(_, conn)| conn.deadline())
            .chain(backoff)
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    /// Drive every connection an event names; note a listener event for accepting.
    fn dispatch(&mut self, events: &Events, now: Instant) {
        for event in events {
            match event.token() {
                LISTENER => self.accept_ready = true,
                WAKER => {}
                Token(token) => self.drive(token - FIRST_CONN, now),
            }
        }
    }

    /// Drive the connection at `key`, closing it if it is done. The key may be stale (its
    /// connection closed and the slot reused within one batch of events): driving a
    /// connection with nothing to do is harmless.
    fn drive(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Next::Close(why) = conn.drive(now, self.config.request_timeout, &self.source) {
            self.close(key, why);
        }
    }

    /// Accept waiting clients, up to the budget: serve each while under the cap, refuse it
    /// with `503` beyond. False if the listener is broken.
    fn accept(&mut self, now: Instant) -> bool {
        if let Some(until) = self.accept_paused_until {
            if now < until {
                return true;
            }
            self.accept_paused_until = None;
        }
        if !self.accept_ready {
            return true;
        }
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = &self.listener else {
                return true;
            };
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(err) => match rules::classify_accept(&err) {
                    AcceptError::Retry | AcceptError::ClientGone => continue,
                    // Every waiting client is taken; the next one raises a new edge.
                    AcceptError::Drained => {
                        self.accept_ready = false;
                        return true;
                    }
                    AcceptError::Exhausted => {
                        log::warn!("metrics endpoint: accept: {err}; pausing accepts");
                        self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                        return true;
                    }
                    AcceptError::ListenerBroken => {
                        log::error!("metrics endpoint: accept failed, it stops serving: {err}");
                        return false;
                    }
                },
            };
            if self.conns.len() >= self.config.max_connections {
                log::debug!("metrics endpoint: {peer} refused: at the connection cap");
                rules::refuse(&stream, &Response::text(503).to_bytes(false, true, 1));
                continue;
            }
            self.admit(stream, peer, now);
        }
        // Budget spent with clients perhaps still waiting: `accept_ready` stays raised, so
        // the next poll does not wait.
        true
    }

    /// Register a new connection and serve what it already sent.
    fn admit(&mut self, mut stream: mio::net::TcpStream, peer: std::net::SocketAddr, now: Instant) {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let token = Token(key + FIRST_CONN);
        // Read and write interest once, for the connection's whole life.
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(err) = self.poll.registry().register(&mut stream, token, interest) {
            log::debug!("metrics endpoint: {peer} dropped: cannot register it: {err}");
            return;
        }
        log::trace!("metrics endpoint: {peer} accepted");
        entry.insert(Conn::new(stream, peer, now, self.config.request_timeout));
        self.drive(key, now);
    }

    /// Close every connection whose deadline has passed.
    fn expire(&mut self, now: Instant) {
        let due: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.deadline() <= now)
            .map(|(key, _)| key)
            .collect();
        for key in due {
            if let Some(conn) = self.conns.get_mut(key) {
                let why = conn.expire();
                self.close(key, why);
            }
        }
    }

    /// Deregister and drop the connection at `key`, which closes its socket.
    fn close(&mut self, key: usize, why: &str) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            // Closing the descriptor removes it from epoll anyway; failure changes nothing.
            let _ = self.poll.registry().deregister(&mut conn.stream);
            log::debug!("metrics endpoint: {} closed: {why}", conn.peer);
        }
    }
}

impl HalfClose for mio::net::TcpStream {
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}
