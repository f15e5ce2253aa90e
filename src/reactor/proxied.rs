//! The reactor's clients from trusted balancers whose PROXY header has not fully arrived:
//! they hold a connection slot (counted in `max_connections`) and a socket registered for
//! reading, but no slab entry, no session and no transport yet.
//!
//! Their tokens count down from `FIRST_PENDING`, below the listeners', so they never name
//! a connection (whose slab keys stay far below 2^32). Once the header is taken, the
//! client is admitted as any other (`Reactor::admit_as`), with the header's address as
//! its peer, and TLS begins on the bytes after the header. Parsing is `listen::proxy_header`'s;
//! this file must not call the handler.

use std::io;

use log::debug;
use mio::{Interest, Token};
use slab::Slab;

use super::Reactor;
use super::socket::MioStream;
use super::types::{FIRST_LISTENER, TimerKind};
use crate::listen::proxy_header::HeaderRead;
use crate::{Handler, PeerAddr};

/// The highest token a pending client gets; room for 65,536 listeners above it.
const FIRST_PENDING: usize = FIRST_LISTENER - 65_536;
/// Pending clients have tokens in `FIRST_PENDING - LIMIT .. FIRST_PENDING`.
const LIMIT: usize = 1 << 30;

/// One client whose header is still arriving.
#[derive(Debug)]
pub(super) struct Pending {
    /// Its socket, registered with its pending token.
    stream: MioStream,
    /// The balancer's address (the kernel's peer).
    peer: PeerAddr,
    /// The header bytes taken so far.
    read: HeaderRead,
}

/// Every pending client of this worker.
#[derive(Debug, Default)]
pub(super) struct Headers {
    /// By slab key; the token is `FIRST_PENDING - key`.
    pending: Slab<Pending>,
}

impl Headers {
    /// The slab key a token names, if it is a pending client's token.
    fn key(&self, token: Token) -> Option<usize> {
        let key = FIRST_PENDING.checked_sub(token.0)?;
        (key < LIMIT && self.pending.contains(key)).then_some(key)
    }

    /// True if `token` names a pending client.
    pub(super) fn owns(&self, token: Token) -> bool {
        self.key(token).is_some()
    }
}

impl<H: Handler> Reactor<H> {
    /// Wait for the PROXY header of a client from a trusted source; it holds a slot
    /// already. Its deadline is the handshake timeout.
    pub(super) fn await_header(&mut self, mut stream: MioStream, peer: PeerAddr) {
        let headers = &mut self.accepting.headers;
        let entry = headers.pending.vacant_entry();
        if entry.key() >= LIMIT {
            self.setup.live.closed();
            return;
        }
        let token = Token(FIRST_PENDING - entry.key());
        if let Err(err) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            debug!("{peer}: cannot register: {err}; dropping");
            self.setup.live.closed();
            return;
        }
        entry.insert(Pending {
            stream,
            peer,
            read: HeaderRead::new(),
        });
        let at = self.now + self.setup.config.handshake_timeout;
        self.timers.arm(at, token, TimerKind::ProxyHeader);
        // Bytes that came with the connection raise no new edge: look now.
        self.read_header(token);
    }

    /// Read what has come of pending client `token`'s header; admit it once complete,
    /// drop it on a bad header or an error.
    pub(super) fn read_header(&mut self, token: Token) {
        let Some(key) = self.accepting.headers.key(token) else {
            return;
        };
        let pending = &mut self.accepting.headers.pending[key];
        let header = match pending.read.advance(&pending.stream) {
            Ok(None) => return,
            Ok(Some(header)) => header,
            Err(err) => {
                let pending = self.accepting.headers.pending.remove(key);
                self.drop_pending(pending, &err);
                return;
            }
        };
        let mut pending = self.accepting.headers.pending.remove(key);
        let peer = header.source.map_or(pending.peer, PeerAddr::Tcp);
        if let Err(err) = self.poll.registry().deregister(&mut pending.stream) {
            self.drop_pending(pending, &err);
            return;
        }
        self.setup.live.admission.count_proxied();
        debug!("{}: PROXY header names {peer}", pending.peer);
        self.admit_as(pending.stream, peer);
    }

    /// Close pending client `token` if its header is still incomplete at its deadline.
    pub(super) fn expire_header(&mut self, token: Token) {
        if let Some(key) = self.accepting.headers.key(token) {
            let pending = self.accepting.headers.pending.remove(key);
            let err = io::Error::new(io::ErrorKind::TimedOut, "no PROXY header in time");
            self.drop_pending(pending, &err);
        }
    }

    /// Close every pending client: the server is stopping, and none has been served.
    pub(super) fn drop_all_pending(&mut self) {
        for pending in std::mem::take(&mut self.accepting.headers.pending) {
            let err = io::Error::new(io::ErrorKind::Interrupted, "stopping");
            self.drop_pending(pending.1, &err);
        }
    }

    /// Close a pending client, giving back its slot.
    fn drop_pending(&mut self, mut pending: Pending, err: &io::Error) {
        debug!("{}: PROXY header: {err}; closing", pending.peer);
        let _ = self.poll.registry().deregister(&mut pending.stream);
        self.setup.live.admission.count_header_failed();
        self.setup.live.closed();
    }
}
