//! Where a server listens: the [`Listener`]s it is given (a TCP address, a Unix socket
//! path, a socket the embedder opened, an inherited descriptor), how each is bound, and
//! how each worker gets its share.
//!
//! The server binds every listener here before any worker starts; the models then only
//! accept. Sharing: every listener is one socket with one queue, bound once and without
//! `SO_REUSEPORT` (so a second server on the same address fails with `AddrInUse`), and
//! each worker gets a duplicate descriptor of it (see `Bound::for_worker`).
//! This module must not accept or serve connections.
//!
//! # Files
//!
//! - `unix` — binding a socket path: stale files, live servers, permissions, removal;
//! - `activation` — descriptors inherited the systemd way (`LISTEN_FDS`);
//! - `proxy_header` — the PROXY protocol header a trusted balancer sends first;
//! - `upgrade` — handing the listeners to a new copy of the executable, and the pid file.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

pub mod activation;
pub mod proxy_header;
mod unix;
pub mod upgrade;

use crate::io::stream::BlockingListener;
pub(crate) use unix::SocketFile;

/// One place a server accepts clients. Build one with [`tcp`](Listener::tcp),
/// [`unix`](Listener::unix), [`from_tcp`](Listener::from_tcp),
/// [`from_unix`](Listener::from_unix) or [`inherited`](Listener::inherited), or parse
/// `"127.0.0.1:8866"` / `"unix:/run/app.sock"`.
#[derive(Debug)]
pub struct Listener {
    /// What to bind or take over.
    kind: Kind,
}

/// The kinds of [`Listener`].
#[derive(Debug)]
enum Kind {
    /// Bind this TCP address (once; the workers share the socket).
    TcpAddr(SocketAddr),
    /// Bind a Unix socket at this path, replacing a stale file; optionally chmod it.
    UnixPath {
        /// The socket file.
        path: PathBuf,
        /// Permission bits for the file (e.g. `0o660`).
        mode: Option<u32>,
    },
    /// A TCP listener the embedder opened.
    Tcp(std::net::TcpListener),
    /// A Unix listener the embedder opened.
    Unix(UnixListener),
    /// A listening descriptor inherited from a parent (systemd, or an upgrade).
    Fd {
        /// The descriptor.
        fd: OwnedFd,
        /// Remove the socket's file on a graceful stop (it was ours before an upgrade).
        owns_file: bool,
    },
}

impl Listener {
    /// Bind a TCP address (port 0 picks a free port).
    pub fn tcp(addr: SocketAddr) -> Listener {
        Listener {
            kind: Kind::TcpAddr(addr),
        }
    }

    /// Bind a Unix socket at `path`. A stale file left by a dead server is replaced; a
    /// path where a server still accepts is an `AddrInUse` error. The file is removed when
    /// the server stops gracefully.
    pub fn unix(path: impl Into<PathBuf>) -> Listener {
        Listener {
            kind: Kind::UnixPath {
                path: path.into(),
                mode: None,
            },
        }
    }

    /// Set the permission bits of a Unix socket's file (e.g. `0o660`); ignored by other
    /// kinds.
    pub fn mode(mut self, bits: u32) -> Listener {
        if let Kind::UnixPath { mode, .. } = &mut self.kind {
            *mode = Some(bits);
        }
        self
    }

    /// Serve a TCP listener the caller has already bound and put in the listening state.
    pub fn from_tcp(listener: std::net::TcpListener) -> Listener {
        Listener {
            kind: Kind::Tcp(listener),
        }
    }

    /// Serve a Unix listener the caller has already bound. Its file is left in place.
    pub fn from_unix(listener: UnixListener) -> Listener {
        Listener {
            kind: Kind::Unix(listener),
        }
    }

    /// Serve a listening descriptor inherited from a parent process (TCP or Unix, found
    /// out from the socket itself). Its file, if any, is left in place.
    pub fn inherited(fd: OwnedFd) -> Listener {
        Listener {
            kind: Kind::Fd {
                fd,
                owns_file: false,
            },
        }
    }

    /// For an inherited Unix socket: remove its file on a graceful stop, as the server
    /// that bound it would have (a binary upgrade hands the file's ownership over).
    pub fn remove_file_on_stop(mut self) -> Listener {
        if let Kind::Fd { owns_file, .. } = &mut self.kind {
            *owns_file = true;
        }
        self
    }
}

impl FromStr for Listener {
    type Err = String;

    /// `unix:PATH` is a Unix socket; anything else must be a socket address.
    fn from_str(text: &str) -> Result<Listener, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path, as in unix:/run/app.sock".into());
            }
            return Ok(Listener::unix(path));
        }
        text.parse().map(Listener::tcp).map_err(|_| {
            format!("{text:?} is neither an address (127.0.0.1:8866, [::1]:8866) nor unix:PATH")
        })
    }
}

/// Where a bound listener accepts clients, as reported by a running server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ListenAddr {
    /// A TCP address (with the port actually bound).
    Tcp(SocketAddr),
    /// A Unix socket, with its path (`None` for an abstract or unnamed socket).
    Unix(Option<PathBuf>),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => addr.fmt(f),
            ListenAddr::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            ListenAddr::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}

/// One listener, bound and ready for the workers.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The one socket every worker shares.
    socket: BlockingListener,
    /// Where it accepts.
    pub(crate) addr: ListenAddr,
    /// The socket file to remove on a graceful stop, if this server owns one.
    pub(crate) file: Option<SocketFile>,
}

impl Bound {
    /// A worker's listener: a duplicate descriptor of the one socket (one listen queue,
    /// every worker polling it).
    pub(crate) fn for_worker(&self) -> io::Result<BlockingListener> {
        self.socket.try_clone()
    }

    /// A descriptor of the socket, to hand to a successor, which then accepts from the
    /// same queue: no waiting client is reset when this server stops.
    pub(crate) fn descriptor(&self) -> io::Result<OwnedFd> {
        self.socket.as_fd().try_clone_to_owned()
    }
}

/// Bind `listener` with a listen queue of `backlog`.
pub(crate) fn bind(listener: Listener, backlog: i32) -> io::Result<Bound> {
    match listener.kind {
        Kind::TcpAddr(addr) => {
            let socket = listen_tcp(addr, backlog)?;
            Ok(Bound {
                addr: ListenAddr::Tcp(socket.local_addr()?),
                socket: BlockingListener::Tcp(socket),
                file: None,
            })
        }
        Kind::UnixPath { path, mode } => {
            let (socket, file) = unix::bind(&path, mode, backlog)?;
            Ok(Bound {
                socket: BlockingListener::Unix(socket),
                addr: ListenAddr::Unix(Some(path)),
                file: Some(file),
            })
        }
        Kind::Tcp(socket) => shared(BlockingListener::Tcp(socket), false),
        Kind::Unix(socket) => shared(BlockingListener::Unix(socket), false),
        Kind::Fd { fd, owns_file } => shared(classify(fd)?, owns_file),
    }
}

/// A listener every worker shares, checked to be listening.
fn shared(socket: BlockingListener, owns_file: bool) -> io::Result<Bound> {
    if !SockRef::from(&socket).is_listener()? {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the socket given is not listening",
        ));
    }
    let addr = match &socket {
        BlockingListener::Tcp(listener) => ListenAddr::Tcp(listener.local_addr()?),
        BlockingListener::Unix(listener) => {
            ListenAddr::Unix(listener.local_addr()?.as_pathname().map(Path::to_path_buf))
        }
    };
    let file = match (&addr, owns_file) {
        (ListenAddr::Unix(Some(path)), true) => Some(SocketFile::existing(path)),
        _ => None,
    };
    Ok(Bound { socket, addr, file })
}

/// Find out what an inherited descriptor is: a TCP or a Unix stream socket.
fn classify(fd: OwnedFd) -> io::Result<BlockingListener> {
    let socket = SockRef::from(&fd);
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    if socket.r#type()? != Type::STREAM {
        return Err(invalid("an inherited descriptor is not a stream socket"));
    }
    match socket.domain()? {
        Domain::UNIX => Ok(BlockingListener::Unix(UnixListener::from(fd))),
        Domain::IPV4 | Domain::IPV6 => Ok(BlockingListener::Tcp(std::net::TcpListener::from(fd))),
        _ => Err(invalid("an inherited descriptor is neither TCP nor Unix")),
    }
}

/// Create a listening socket on `addr` with `SO_REUSEADDR` (a restart need not wait for
/// the old connections' `TIME_WAIT`) and without `SO_REUSEPORT`: the workers and a
/// successor share this one socket, and any other server binding the address fails
/// with `AddrInUse` instead of silently taking a share of the clients.
fn listen_tcp(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // An IPv6 listener serves IPv6 only; bind 0.0.0.0 separately for IPv4.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_tcp_or_unix() {
        assert!(matches!(
            "127.0.0.1:0".parse::<Listener>().map(|l| l.kind),
            Ok(Kind::TcpAddr(_))
        ));
        match "unix:/tmp/x.sock".parse::<Listener>().map(|l| l.kind) {
            Ok(Kind::UnixPath { path, mode: None }) => assert_eq!(path, Path::new("/tmp/x.sock")),
            other => panic!("unexpected {other:?}"),
        }
        assert!("unix:".parse::<Listener>().is_err());
        assert!("localhost".parse::<Listener>().is_err());
    }
}
