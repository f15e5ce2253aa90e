//! A blocking accepted connection of either kind, and a listening socket of either kind,
//! for the threads model and for the server that binds them.
//!
//! This file only forwards socket calls to `std`'s TCP or Unix type; it must not decide
//! anything about a connection's life.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use crate::io::peer_addr::{PeerAddr, UnixPeer};

/// A listening socket: TCP or Unix.
#[derive(Debug)]
pub(crate) enum BlockingListener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix stream listener.
    Unix(UnixListener),
}

impl BlockingListener {
    /// Take one waiting client.
    pub(crate) fn accept(&self) -> io::Result<(BlockingStream, PeerAddr)> {
        match self {
            BlockingListener::Tcp(listener) => {
                let (stream, addr) = listener.accept()?;
                Ok((BlockingStream::Tcp(stream), PeerAddr::Tcp(addr)))
            }
            BlockingListener::Unix(listener) => {
                let (stream, _) = listener.accept()?;
                let peer = UnixPeer::of(&stream);
                Ok((BlockingStream::Unix(stream), PeerAddr::Unix(peer)))
            }
        }
    }

    /// Another descriptor for the same socket (one listen queue).
    pub(crate) fn try_clone(&self) -> io::Result<BlockingListener> {
        Ok(match self {
            BlockingListener::Tcp(listener) => BlockingListener::Tcp(listener.try_clone()?),
            BlockingListener::Unix(listener) => BlockingListener::Unix(listener.try_clone()?),
        })
    }

    /// Switch the (shared) file description to nonblocking or blocking.
    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            BlockingListener::Tcp(listener) => listener.set_nonblocking(nonblocking),
            BlockingListener::Unix(listener) => listener.set_nonblocking(nonblocking),
        }
    }
}

impl AsFd for BlockingListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            BlockingListener::Tcp(listener) => listener.as_fd(),
            BlockingListener::Unix(listener) => listener.as_fd(),
        }
    }
}

impl AsRawFd for BlockingListener {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl From<BlockingListener> for OwnedFd {
    fn from(listening: BlockingListener) -> OwnedFd {
        match listening {
            BlockingListener::Tcp(listener) => listener.into(),
            BlockingListener::Unix(listener) => listener.into(),
        }
    }
}

/// A blocking connected stream: TCP or Unix.
#[derive(Debug)]
pub(crate) enum BlockingStream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix stream connection.
    Unix(UnixStream),
}

impl BlockingStream {
    /// Disable Nagle's algorithm where it exists (TCP); a no-op on Unix sockets.
    pub(crate) fn set_nodelay(&self) -> io::Result<()> {
        match self {
            BlockingStream::Tcp(stream) => stream.set_nodelay(true),
            BlockingStream::Unix(_) => Ok(()),
        }
    }

    /// Bound every blocking read.
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            BlockingStream::Tcp(stream) => stream.set_read_timeout(timeout),
            BlockingStream::Unix(stream) => stream.set_read_timeout(timeout),
        }
    }

    /// Bound every blocking write.
    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            BlockingStream::Tcp(stream) => stream.set_write_timeout(timeout),
            BlockingStream::Unix(stream) => stream.set_write_timeout(timeout),
        }
    }

    /// Switch the socket to nonblocking or blocking.
    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            BlockingStream::Tcp(stream) => stream.set_nonblocking(nonblocking),
            BlockingStream::Unix(stream) => stream.set_nonblocking(nonblocking),
        }
    }

    /// Shut down one or both directions.
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            BlockingStream::Tcp(stream) => stream.shutdown(how),
            BlockingStream::Unix(stream) => stream.shutdown(how),
        }
    }

    /// Take the socket's pending error (`SO_ERROR`), as a connect's outcome.
    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        socket2::SockRef::from(self).take_error()
    }
}

impl Read for &BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Tcp(stream) => (&*stream).read(buf),
            BlockingStream::Unix(stream) => (&*stream).read(buf),
        }
    }
}

impl Write for &BlockingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Tcp(stream) => (&*stream).write(buf),
            BlockingStream::Unix(stream) => send_nosignal(stream, buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for BlockingStream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            BlockingStream::Tcp(stream) => stream.as_raw_fd(),
            BlockingStream::Unix(stream) => stream.as_raw_fd(),
        }
    }
}

impl crate::rules::HalfClose for BlockingStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// `send` with `MSG_NOSIGNAL`: a peer that has gone yields `EPIPE` instead of raising
/// `SIGPIPE` in a process that embeds the server. `std` and `mio` do this for TCP streams
/// but not for Unix streams.
pub(crate) fn send_nosignal(socket: &impl AsFd, buf: &[u8]) -> io::Result<usize> {
    super::sys::send_nosignal(socket.as_fd(), buf)
}

impl AsFd for BlockingStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            BlockingStream::Tcp(stream) => stream.as_fd(),
            BlockingStream::Unix(stream) => stream.as_fd(),
        }
    }
}
