//! The reactor's accepting part: this worker's listeners, whether the accept budget left
//! clients waiting, and the back-off after running out of descriptors. Accepting itself
//! (taking, admitting, refusing clients) is `accept`'s; this file keeps the state and
//! answers which tokens are listeners.

use mio::{Registry, Token};

use super::socket::MioListener;
use super::types::FIRST_LISTENER;

/// Where and whether this worker accepts.
#[derive(Debug)]
pub(super) struct Accepting {
    /// Listener `i` is registered as `FIRST_LISTENER - i`; empty once stopping or handed over.
    pub(super) listeners: Vec<MioListener>,
    /// Serve TLS with this configuration; `None` serves plaintext.
    #[cfg(feature = "tls")]
    pub(super) tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The accept budget ran out with clients possibly still waiting: accept next turn
    /// without waiting for an edge.
    pub(super) ready: bool,
    /// Accepting is suspended after running out of file descriptors.
    pub(super) paused: bool,
    /// An fd-exhaustion episode is in progress (logged once).
    pub(super) fd_episode: bool,
    /// Clients from trusted balancers whose PROXY header is still arriving.
    pub(super) headers: super::proxied::Headers,
    /// The address group each connection is counted in for `max_per_address`.
    pub(super) counted: std::collections::HashMap<crate::ConnId, std::net::IpAddr>,
}

impl Accepting {
    /// The token listener `index` is registered with.
    pub(super) fn token_for(index: usize) -> Token {
        Token(FIRST_LISTENER - index)
    }

    /// The index of the listener `token` names, if it names one.
    pub(super) fn listener_index(&self, token: Token) -> Option<usize> {
        let index = FIRST_LISTENER.checked_sub(token.0)?;
        (index < self.listeners.len()).then_some(index)
    }

    /// Stop accepting: deregister and drop every listener descriptor; true if there were
    /// any. The sockets live on while another worker or process holds them, so their
    /// queues are not reset by this.
    pub(super) fn close(&mut self, registry: &Registry) -> bool {
        let had = !self.listeners.is_empty();
        for mut listener in self.listeners.drain(..) {
            let _ = registry.deregister(&mut listener);
        }
        self.ready = false;
        had
    }
}
