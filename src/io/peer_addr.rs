//! Who is on the other end of a connection: a TCP address, or a local process on a Unix
//! socket.
//!
//! A leaf of plain values: handlers see a [`PeerAddr`] through `Context::peer_addr`, and
//! both models fill it in when they accept. It must not touch sockets beyond reading the
//! peer's credentials once.

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::AsFd;

/// The peer of a connection.
///
/// Unix-socket clients almost never bind a name of their own, so what identifies them is
/// the process the kernel reports for the socket (`SO_PEERCRED`) instead of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerAddr {
    /// A TCP client's address.
    Tcp(SocketAddr),
    /// A client on a Unix socket.
    Unix(UnixPeer),
}

impl PeerAddr {
    /// The TCP address, for a TCP peer.
    pub fn as_tcp(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Tcp(addr) => Some(*addr),
            PeerAddr::Unix(_) => None,
        }
    }

    /// The Unix peer's credentials, for a Unix-socket peer.
    pub fn as_unix(&self) -> Option<UnixPeer> {
        match self {
            PeerAddr::Unix(peer) => Some(*peer),
            PeerAddr::Tcp(_) => None,
        }
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        PeerAddr::Tcp(addr)
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(addr) => addr.fmt(f),
            PeerAddr::Unix(peer) => peer.fmt(f),
        }
    }
}

/// A Unix-socket peer: the credentials of the process that connected, as the kernel
/// recorded them at `connect` (absent only if the kernel would not say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct UnixPeer {
    /// Process id of the client at connect time.
    pub pid: Option<u32>,
    /// Its user id.
    pub uid: Option<u32>,
    /// Its group id.
    pub gid: Option<u32>,
}

impl UnixPeer {
    /// Read the credentials of the peer of a connected Unix stream socket.
    pub(crate) fn of(socket: &impl AsFd) -> UnixPeer {
        let cred = match super::sys::peer_cred(socket.as_fd()) {
            Ok(cred) if cred.pid > 0 => cred,
            _ => return UnixPeer::default(),
        };
        UnixPeer {
            pid: Some(cred.pid as u32),
            uid: Some(cred.uid),
            gid: Some(cred.gid),
        }
    }
}

impl fmt::Display for UnixPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.pid, self.uid) {
            (Some(pid), Some(uid)) => write!(f, "unix:pid={pid},uid={uid}"),
            _ => f.write_str("unix:unknown"),
        }
    }
}
