//! The reactor's accept path: taking clients from the listener within a budget, backing
//! off when descriptors run out, and admitting or refusing each client.
//!
//! What an accept error means and how a client is refused are `rules`; this file only
//! acts on them. It must not read from or write to an admitted connection: that starts
//! with the `open` callback on the I/O path.

use log::{debug, info, trace, warn};
use mio::Interest;

use super::Reactor;
use super::connection::Connection;
use super::socket::MioStream;
use super::types::ACCEPT_BACKOFF;
use super::types::Call;
use super::types::TimerKind;
use crate::io::transport::Transport;
use crate::rules::{self, AcceptError};
use crate::{Handler, PeerAddr};

impl<H: Handler> Reactor<H> {
    /// Accept clients until the kernel has none, or the per-turn budget is spent.
    pub(super) fn accept(&mut self) {
        if self.accepting.paused {
            return;
        }
        self.accepting.ready = false;
        for index in 0..self.accepting.listeners.len() {
            if !self.accept_from(index) {
                return;
            }
        }
    }

    /// Accept from listener `index` until it has no client waiting or the budget is
    /// spent; false when accepting must stop on every listener this turn.
    fn accept_from(&mut self, index: usize) -> bool {
        for _ in 0..self.setup.config.accept_budget.max(1) {
            let Some(listener) = self.accepting.listeners.get(index) else {
                return false;
            };
            let err = match listener.accept() {
                Ok((stream, peer)) => {
                    if self.accepting.fd_episode {
                        self.accepting.fd_episode = false;
                        info!("file descriptors available again; accepting");
                    }
                    self.admit(stream, peer);
                    continue;
                }
                Err(err) => err,
            };
            match rules::classify_accept(&err) {
                AcceptError::Retry => {}
                // The backlog is empty until the next edge.
                AcceptError::Drained => return true,
                // Retrying now would spin, and the waiting clients raise no new edge, so
                // a timer resumes us.
                AcceptError::Exhausted => {
                    self.back_off_accept(&err);
                    return false;
                }
                AcceptError::ClientGone => debug!("accept failed: {err}"),
                AcceptError::ListenerBroken => {
                    // `check_stop` begins the stop and the worker reports the error.
                    self.stopping.failure = Some(err);
                    return false;
                }
            }
        }
        // Budget spent: clients may still wait, and no new edge will announce them.
        self.accepting.ready = true;
        true
    }

    /// Suspend accepting for the back-off period, logging once per episode.
    fn back_off_accept(&mut self, err: &std::io::Error) {
        self.observed.stats.fd_exhausted += 1;
        if !self.accepting.fd_episode {
            self.accepting.fd_episode = true;
            warn!(
                "accept: {err}; pausing accept for {:?} ({} connections open)",
                self.setup.config.accept_backoff,
                self.conns.len()
            );
        }
        self.accepting.paused = true;
        self.timers.arm(
            self.now + self.setup.config.accept_backoff,
            ACCEPT_BACKOFF,
            TimerKind::AcceptBackoff,
        );
    }

    /// Take a freshly accepted client into the slab, or refuse it when full. A client
    /// from a trusted balancer first waits for its PROXY header (`proxied`).
    fn admit(&mut self, stream: MioStream, peer: PeerAddr) {
        // The limit is server-wide: every worker counts against it.
        if self.stopping.has_begun()
            || !self
                .setup
                .live
                .try_open(self.setup.index, self.setup.config.max_connections)
        {
            self.refuse(stream, peer);
            return;
        }
        if self.setup.config.trusts_proxy(peer) {
            self.await_header(stream, peer);
        } else {
            self.admit_as(stream, peer);
        }
    }

    /// Serve a client that holds a slot, as `peer` (the PROXY header's client, if it
    /// sent one), unless its address is at `max_per_address`.
    pub(super) fn admit_as(&mut self, mut stream: MioStream, peer: PeerAddr) {
        let group = rules::per_address::group(&self.setup.config, peer);
        if let (Some(group), Some(max)) = (group, self.setup.config.max_per_address)
            && !self.setup.live.admission.try_take(group, max)
        {
            self.setup.live.closed();
            self.refuse(stream, peer);
            return;
        }
        let release = |reactor: &mut Self| {
            reactor.setup.live.closed();
            if let Some(group) = group {
                reactor.setup.live.admission.release(group);
            }
        };
        // Replies are written whole; do not let Nagle hold the last segment back.
        if let Err(err) = stream.set_nodelay() {
            debug!("{peer}: TCP_NODELAY: {err}");
        }
        let Some(transport) = self.transport_for(peer) else {
            release(self);
            return;
        };
        let token = self.conns.next_token();
        // Register once, for both directions: no epoll_ctl per message afterwards.
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(err) = self.poll.registry().register(&mut stream, token, interest) {
            warn!("{peer}: cannot register: {err}; dropping");
            release(self);
            return;
        }
        let id = self.queues.outbox.mint.next_id();
        let key = self
            .conns
            .insert(Connection::new(stream, token, id, peer, self.now).with_transport(transport));
        self.observed.stats.accepted += 1;
        if let Some(group) = group {
            self.accepting.counted.insert(id, group);
        }
        // The token in decimal, as mio's own trace lines print it: slot | generation << 32.
        trace!(
            "accept {peer} as connection {id} (slot {key}, token {})",
            token.0
        );
        if let Some(idle) = self.setup.config.idle_timeout {
            self.timers.arm(self.now + idle, token, TimerKind::Idle);
        }
        if self.conns[key].is_handshaking() {
            let at = self.now + self.setup.config.handshake_timeout;
            self.timers.arm(at, token, TimerKind::Handshake);
        }
        self.invoke(key, Call::Open);
    }

    /// The transport a new client's bytes go through: TLS when the server has a TLS
    /// configuration. `None` if its session cannot be made (logged).
    fn transport_for(&self, peer: PeerAddr) -> Option<Transport> {
        #[cfg(feature = "tls")]
        if let Some(config) = &self.accepting.tls {
            return match crate::io::tls::TlsSession::new(config) {
                Ok(session) => Some(Transport::Tls(Box::new(session))),
                Err(err) => {
                    warn!("{peer}: cannot start TLS: {err}; dropping");
                    None
                }
            };
        }
        let _ = peer;
        Some(Transport::Plain)
    }

    /// Turn a client away (the stream is nonblocking, as `rules::refuse` needs).
    fn refuse(&mut self, stream: MioStream, peer: PeerAddr) {
        rules::refuse(&stream, self.handler.busy_reply());
        self.observed.stats.refused += 1;
        self.setup.live.count_refused();
        debug!("refused {peer}: {} connections open", self.conns.len());
    }
}
