//! Where the load connects and the nonblocking socket it connects with: TCP or Unix,
//! behind one type, so the rest of the load generator does not care which.
//!
//! This module owns only the choice of address and the socket calls that differ between
//! the two families; it must not read, verify or count anything.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::path::PathBuf;
use std::time::Duration;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::tools::client::Target;

/// How long the probe of one resolved address may take (see [`Endpoint::choose`]).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The resolved place every load connection connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl Endpoint {
    /// The endpoint of `target`. A host name with several addresses (`localhost`: `::1`
    /// and `127.0.0.1`) is probed in the resolver's order with one blocking connect, and
    /// the first that accepts is used by every connection, as a blocking client would
    /// settle on it; if none accepts, the first is used and the connections' failures
    /// are counted as usual.
    pub(crate) fn choose(target: &Target) -> io::Result<Endpoint> {
        if let Target::Unix(path) = target {
            return Ok(Endpoint::Unix(path.clone()));
        }
        let addrs = target.resolve()?;
        let accepting = match addrs.as_slice() {
            [one] => Some(*one),
            several => several
                .iter()
                .copied()
                .find(|addr| StdTcpStream::connect_timeout(addr, PROBE_TIMEOUT).is_ok()),
        };
        accepting
            .or_else(|| addrs.first().copied())
            .map(Endpoint::Tcp)
            .ok_or_else(|| io::Error::other(format!("no address for {target}")))
    }

    /// Start a nonblocking connect.
    pub(crate) fn connect(&self) -> io::Result<Socket> {
        match self {
            Endpoint::Tcp(addr) => TcpStream::connect(*addr).map(Socket::Tcp),
            Endpoint::Unix(path) => UnixStream::connect(path).map(Socket::Unix),
        }
    }
}

/// One load connection's socket.
#[derive(Debug)]
pub(crate) enum Socket {
    /// Over TCP.
    Tcp(TcpStream),
    /// Over a Unix stream socket.
    Unix(UnixStream),
}

impl Socket {
    /// After a readiness event while connecting: `Ok(true)` once connected, `Ok(false)`
    /// if the connect is still in progress, `Err` if it failed (mio's contract for a
    /// nonblocking connect: a pending error means failure, "not connected" means not yet).
    pub(crate) fn connected(&mut self) -> io::Result<bool> {
        let (error, peer) = match self {
            Socket::Tcp(s) => (s.take_error()?, s.peer_addr().map(drop)),
            Socket::Unix(s) => (s.take_error()?, s.peer_addr().map(drop)),
        };
        if let Some(err) = error {
            return Err(err);
        }
        match peer {
            Ok(()) => {
                // Small messages must leave at once, not wait for Nagle's algorithm.
                if let Socket::Tcp(s) = self {
                    s.set_nodelay(true)?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Read for Socket {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush(),
            Socket::Unix(s) => s.flush(),
        }
    }
}

impl Source for Socket {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.register(registry, token, interests),
            Socket::Unix(s) => s.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.reregister(registry, token, interests),
            Socket::Unix(s) => s.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.deregister(registry),
            Socket::Unix(s) => s.deregister(registry),
        }
    }
}
