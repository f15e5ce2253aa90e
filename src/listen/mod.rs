//! Where a server listens: the [`Listener`]s it is given (a TCP address, a Unix socket
//! path, a socket the embedder opened, an inherited descriptor), how each is bound, and
//! how each worker gets its share.
//!
//! The server binds every listener here before any worker starts; the models then only
//! accept. Sharing: a TCP address gets one `SO_REUSEPORT` socket per worker, so the
//! kernel spreads a burst of clients over the workers' queues; before binding them, a
//! probe socket bound without `SO_REUSEPORT` makes a second server on a served address
//! fail with `AddrInUse` (see `listen_tcp`). Every other listener (a Unix path, a socket
//! handed in or inherited without `SO_REUSEPORT`) is one socket with one queue, and each
//! worker polls a duplicate descriptor of it (see `Bound::for_worker`).
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
    /// Its sockets: one `SO_REUSEPORT` socket per worker (or more, inherited from a
    /// predecessor that ran more workers) for a TCP address; otherwise the one socket
    /// every worker shares.
    sockets: Vec<BlockingListener>,
    /// Where it accepts.
    pub(crate) addr: ListenAddr,
    /// The socket file to remove on a graceful stop, if this server owns one.
    pub(crate) file: Option<SocketFile>,
}

impl Bound {
    /// Worker `index`'s listeners, of `workers`: with one socket, a duplicate descriptor
    /// of it (one listen queue, every worker polling it); with a socket per worker, its
    /// own, and every further one whose position is its index modulo `workers`, so that
    /// every socket is served and no client queued in one is left waiting.
    pub(crate) fn for_worker(
        &self,
        index: usize,
        workers: usize,
    ) -> io::Result<Vec<BlockingListener>> {
        if self.sockets.len() == 1 {
            return Ok(vec![self.sockets[0].try_clone()?]);
        }
        self.sockets
            .iter()
            .skip(index)
            .step_by(workers.max(1))
            .map(BlockingListener::try_clone)
            .collect()
    }

    /// A descriptor of each of its sockets, to hand to a successor, which then accepts
    /// from the same queues: no waiting client is reset when this server stops.
    pub(crate) fn descriptors(&self) -> io::Result<Vec<OwnedFd>> {
        self.sockets
            .iter()
            .map(|socket| socket.as_fd().try_clone_to_owned())
            .collect()
    }

    /// One socket of a `SO_REUSEPORT` group, if this listener is one: the template for
    /// further members.
    fn reuse_port_tcp(&self) -> Option<&std::net::TcpListener> {
        match self.sockets.first() {
            Some(BlockingListener::Tcp(socket))
                if SockRef::from(socket).reuse_port().unwrap_or(false) =>
            {
                Some(socket)
            }
            _ => None,
        }
    }
}

/// Bind every listener for `workers` workers, with listen queues of `backlog`: one
/// `SO_REUSEPORT` socket per worker for a TCP address (see `listen_tcp`). Inherited
/// `SO_REUSEPORT` sockets of one address (a predecessor's per-worker sockets) become one
/// listener again; when there are fewer of them than workers, further sockets are bound
/// to the address so that each worker has a queue of its own. None is ever closed: a
/// `SO_REUSEPORT` socket closed resets the clients queued in it.
pub(crate) fn bind_all(
    listeners: impl IntoIterator<Item = Listener>,
    backlog: i32,
    workers: usize,
) -> io::Result<Vec<Bound>> {
    let mut bound: Vec<Bound> = Vec::new();
    for listener in listeners {
        let next = bind(listener, backlog, workers)?;
        let group = next.reuse_port_tcp().map(|_| next.addr.clone());
        match bound.iter_mut().find(|b| {
            group.as_ref().is_some_and(|addr| *addr == b.addr) && b.reuse_port_tcp().is_some()
        }) {
            Some(same) => same.sockets.extend(next.sockets),
            None => bound.push(next),
        }
    }
    for listener in &mut bound {
        let Some(template) = listener.reuse_port_tcp() else {
            continue;
        };
        let addr = template.local_addr()?;
        let only_v6 = addr.is_ipv6() && SockRef::from(template).only_v6()?;
        let missing = workers.saturating_sub(listener.sockets.len());
        for _ in 0..missing {
            let socket = reuse_port_socket(addr, only_v6)?;
            socket.bind(&addr.into())?;
            socket.listen(backlog)?;
            listener.sockets.push(BlockingListener::Tcp(socket.into()));
        }
    }
    Ok(bound)
}

/// Bind `listener` with a listen queue of `backlog` (a TCP address: one socket for each
/// of `workers`).
fn bind(listener: Listener, backlog: i32, workers: usize) -> io::Result<Bound> {
    match listener.kind {
        Kind::TcpAddr(addr) => {
            let sockets = listen_tcp(addr, backlog, workers)?;
            Ok(Bound {
                addr: ListenAddr::Tcp(sockets[0].local_addr()?),
                sockets: sockets.into_iter().map(BlockingListener::Tcp).collect(),
                file: None,
            })
        }
        Kind::UnixPath { path, mode } => {
            let (socket, file) = unix::bind(&path, mode, backlog)?;
            Ok(Bound {
                sockets: vec![BlockingListener::Unix(socket)],
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
    Ok(Bound {
        sockets: vec![socket],
        addr,
        file,
    })
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

/// Listen on `addr` with `workers` sockets (at least one) in one `SO_REUSEPORT` group,
/// each with `SO_REUSEADDR` (a restart need not wait for the old connections'
/// `TIME_WAIT`).
///
/// First a probe socket is bound to `addr` without `SO_REUSEPORT`: where any server
/// listens on the address (ours, redis, nginx, with or without `SO_REUSEPORT`), that
/// fails with `AddrInUse`, as a plain bind would, and nothing is bound. Otherwise the probe
/// stays bound (not listening: it takes no client) while the group binds to the probe's
/// port, so port 0 gives every member the same port, and it is closed once the group
/// listens. From then on a second server's probe, or a second plain bind, fails against
/// the group's listening sockets. What remains: two servers started within the same
/// instant can both pass their probes before either listens and then share the address;
/// `SO_REUSEPORT` only lets sockets of the same user share it.
fn listen_tcp(
    addr: SocketAddr,
    backlog: i32,
    workers: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())?;
    let local = probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("a TCP socket without an address"))?;
    let mut group = Vec::with_capacity(workers.max(1));
    for _ in 0..workers.max(1) {
        let socket = reuse_port_socket(addr, addr.is_ipv6())?;
        socket.bind(&local.into())?;
        group.push(socket);
    }
    for socket in &group {
        socket.listen(backlog)?;
    }
    drop(probe);
    Ok(group.into_iter().map(Into::into).collect())
}

/// A TCP socket for `addr`'s family with `SO_REUSEADDR` and `SO_REUSEPORT`, IPv6-only
/// when `only_v6` (an IPv6 listener serves IPv6 only; bind 0.0.0.0 separately for IPv4).
fn reuse_port_socket(addr: SocketAddr, only_v6: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(only_v6)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    Ok(socket)
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
