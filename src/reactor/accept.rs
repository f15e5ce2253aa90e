//! The reactor's accept path: taking clients from the listener within a budget, backing
//! off when descriptors run out, and admitting or refusing each client.
//!
//! What an accept error means and how a client is refused are `rules`; this file only
//! acts on them. It must not read from or write to an admitted connection: that starts
//! with the `open` callback on the I/O path.

use log::{debug, info, trace, warn};
use mio::{Interest, Token};

use super::connection::Connection;
use super::io_path::Call;
use super::socket::MioStream;
use super::timer::TimerKind;
use super::{LISTENER, Reactor};
use crate::io::transport::Transport;
use crate::rules::{self, AcceptError};
use crate::{Handler, PeerAddr};

impl<H: Handler> Reactor<H> {
    /// Accept clients until the kernel has none, or the per-turn budget is spent.
    pub(super) fn accept(&mut self) {
        if self.accept_paused {
            return;
        }
        self.listener_ready = false;
        for index in 0..self.listeners.len() {
            if !self.accept_from(index) {
                return;
            }
        }
    }

    /// Accept from listener `index` until it has no client waiting or the budget is
    /// spent; false when accepting must stop on every listener this turn.
    fn accept_from(&mut self, index: usize) -> bool {
        for _ in 0..self.config.accept_budget.max(1) {
            let Some(listener) = self.listeners.get(index) else {
                return false;
            };
            let err = match listener.accept() {
                Ok((stream, peer)) => {
                    if self.fd_episode {
                        self.fd_episode = false;
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
                    self.failure = Some(err);
                    return false;
                }
            }
        }
        // Budget spent: clients may still wait, and no new edge will announce them.
        self.listener_ready = true;
        true
    }

    /// Suspend accepting for the back-off period, logging once per episode.
    fn back_off_accept(&mut self, err: &std::io::Error) {
        self.stats.fd_exhausted += 1;
        if !self.fd_episode {
            self.fd_episode = true;
            warn!(
                "accept: {err}; pausing accept for {:?} ({} connections open)",
                self.config.accept_backoff,
                self.conns.len()
            );
        }
        self.accept_paused = true;
        self.timers.arm(
            self.now + self.config.accept_backoff,
            LISTENER,
            TimerKind::AcceptBackoff,
        );
    }

    /// Take a freshly accepted client into the slab, or refuse it when full.
    fn admit(&mut self, mut stream: MioStream, peer: PeerAddr) {
        // The limit is server-wide: every worker counts against it.
        if self.stop_deadline.is_some()
            || !self.live.try_open(self.index, self.config.max_connections)
        {
            self.refuse(stream, peer);
            return;
        }
        // Replies are written whole; do not let Nagle hold the last segment back.
        if let Err(err) = stream.set_nodelay() {
            debug!("{peer}: TCP_NODELAY: {err}");
        }
        let Some(transport) = self.transport_for(peer) else {
            self.live.closed();
            return;
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.generation = self.generation.wrapping_add(1);
        let token = Token(key | ((self.generation as usize) << 32));
        // Register once, for both directions: no epoll_ctl per message afterwards.
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(err) = self.poll.registry().register(&mut stream, token, interest) {
            warn!("{peer}: cannot register: {err}; dropping");
            self.live.closed();
            return;
        }
        let id = self.outbox.mint.next_id();
        entry.insert(Connection::new(stream, token, id, peer, self.now).with_transport(transport));
        self.ids.insert(id, key);
        self.stats.accepted += 1;
        // The token in decimal, as mio's own trace lines print it: slot | generation << 32.
        trace!(
            "accept {peer} as connection {id} (slot {key}, token {})",
            token.0
        );
        if let Some(idle) = self.config.idle_timeout {
            self.timers.arm(self.now + idle, token, TimerKind::Idle);
        }
        if self.conns[key].transport.is_handshaking() {
            let at = self.now + self.config.handshake_timeout;
            self.timers.arm(at, token, TimerKind::Handshake);
        }
        self.invoke(key, Call::Open);
    }

    /// The transport a new client's bytes go through: TLS when the server has a TLS
    /// configuration. `None` if its session cannot be made (logged).
    fn transport_for(&self, peer: PeerAddr) -> Option<Transport> {
        #[cfg(feature = "tls")]
        if let Some(config) = &self.tls {
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
        self.stats.refused += 1;
        self.live.count_refused();
        debug!("refused {peer}: {} connections open", self.conns.len());
    }
}
