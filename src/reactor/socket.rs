//! The reactor's sockets of either kind: a listener and a connected stream that are TCP or
//! Unix, each readable, writable and registrable with `mio` like the one inside.
//!
//! This file only forwards calls; it must not decide anything about a connection's life.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use crate::io::peer_addr::{PeerAddr, UnixPeer};
use crate::io::stream::{BlockingListener, send_nosignal};

/// `mio::event::Source` for an enum whose `Tcp` and `Unix` variants each hold a source:
/// every call goes to the one inside.
macro_rules! forward_source {
    ($kind:ident) => {
        impl Source for $kind {
            fn register(
                &mut self,
                registry: &Registry,
                token: Token,
                interest: Interest,
            ) -> io::Result<()> {
                match self {
                    $kind::Tcp(inner) => inner.register(registry, token, interest),
                    $kind::Unix(inner) => inner.register(registry, token, interest),
                }
            }

            fn reregister(
                &mut self,
                registry: &Registry,
                token: Token,
                interest: Interest,
            ) -> io::Result<()> {
                match self {
                    $kind::Tcp(inner) => inner.reregister(registry, token, interest),
                    $kind::Unix(inner) => inner.reregister(registry, token, interest),
                }
            }

            fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
                match self {
                    $kind::Tcp(inner) => inner.deregister(registry),
                    $kind::Unix(inner) => inner.deregister(registry),
                }
            }
        }
    };
}

forward_source!(MioListener);
forward_source!(MioStream);

/// A nonblocking listener: TCP or Unix.
#[derive(Debug)]
pub(crate) enum MioListener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix stream listener.
    Unix(UnixListener),
}

impl MioListener {
    /// Wrap a bound listener, switching it to nonblocking.
    pub(crate) fn from_std(listening: BlockingListener) -> io::Result<MioListener> {
        listening.set_nonblocking(true)?;
        Ok(match listening {
            BlockingListener::Tcp(listener) => MioListener::Tcp(TcpListener::from_std(listener)),
            BlockingListener::Unix(listener) => MioListener::Unix(UnixListener::from_std(listener)),
        })
    }

    /// Take one waiting client.
    pub(crate) fn accept(&self) -> io::Result<(MioStream, PeerAddr)> {
        match self {
            MioListener::Tcp(listener) => {
                let (stream, addr) = listener.accept()?;
                Ok((MioStream::Tcp(stream), PeerAddr::Tcp(addr)))
            }
            MioListener::Unix(listener) => {
                let (stream, _) = listener.accept()?;
                let peer = UnixPeer::of(&stream);
                Ok((MioStream::Unix(stream), PeerAddr::Unix(peer)))
            }
        }
    }
}

/// A nonblocking connected stream: TCP or Unix.
#[derive(Debug)]
pub(crate) enum MioStream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix stream connection.
    Unix(UnixStream),
}

impl MioStream {
    /// Disable Nagle's algorithm where it exists (TCP); a no-op on Unix sockets.
    pub(crate) fn set_nodelay(&self) -> io::Result<()> {
        match self {
            MioStream::Tcp(stream) => stream.set_nodelay(true),
            MioStream::Unix(_) => Ok(()),
        }
    }

    /// Shut down one or both directions.
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            MioStream::Tcp(stream) => stream.shutdown(how),
            MioStream::Unix(stream) => stream.shutdown(how),
        }
    }

    /// Take the socket's pending error (`SO_ERROR`), as a connect's outcome.
    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        socket2::SockRef::from(self).take_error()
    }

    /// Whether the socket has a peer: `NotConnected` while a connect is under way.
    pub(crate) fn is_connected(&self) -> io::Result<()> {
        socket2::SockRef::from(self).peer_addr().map(drop)
    }

    /// Bytes written to the socket that its peer has not taken yet (`SIOCOUTQ`: for TCP,
    /// what is unsent or unacknowledged; for a Unix stream, what the peer has not read).
    pub(crate) fn unacknowledged(&self) -> io::Result<u64> {
        crate::io::sys::outq(self.as_fd())
    }
}

impl Read for &MioStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MioStream::Tcp(stream) => (&*stream).read(buf),
            MioStream::Unix(stream) => (&*stream).read(buf),
        }
    }
}

impl Read for MioStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for &MioStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            // `write` on a mio TCP stream is `send(MSG_NOSIGNAL)`.
            MioStream::Tcp(stream) => (&*stream).write(buf),
            // A Unix stream's `write` is not: a peer gone would raise SIGPIPE.
            MioStream::Unix(stream) => send_nosignal(stream, buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for MioStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for MioStream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            MioStream::Tcp(stream) => stream.as_raw_fd(),
            MioStream::Unix(stream) => stream.as_raw_fd(),
        }
    }
}

impl crate::rules::HalfClose for MioStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl AsFd for MioStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            MioStream::Tcp(stream) => stream.as_fd(),
            MioStream::Unix(stream) => stream.as_fd(),
        }
    }
}
