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

use crate::peer_addr::{PeerAddr, UnixPeer};

/// A listening socket: TCP or Unix.
#[derive(Debug)]
pub(crate) enum Listening {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix stream listener.
    Unix(UnixListener),
}

impl Listening {
    /// Take one waiting client.
    pub(crate) fn accept(&self) -> io::Result<(Stream, PeerAddr)> {
        match self {
            Listening::Tcp(listener) => {
                let (stream, addr) = listener.accept()?;
                Ok((Stream::Tcp(stream), PeerAddr::Tcp(addr)))
            }
            Listening::Unix(listener) => {
                let (stream, _) = listener.accept()?;
                let peer = UnixPeer::of(&stream);
                Ok((Stream::Unix(stream), PeerAddr::Unix(peer)))
            }
        }
    }

    /// Another descriptor for the same socket (one listen queue).
    pub(crate) fn try_clone(&self) -> io::Result<Listening> {
        Ok(match self {
            Listening::Tcp(listener) => Listening::Tcp(listener.try_clone()?),
            Listening::Unix(listener) => Listening::Unix(listener.try_clone()?),
        })
    }

    /// Switch the (shared) file description to nonblocking or blocking.
    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Listening::Tcp(listener) => listener.set_nonblocking(nonblocking),
            Listening::Unix(listener) => listener.set_nonblocking(nonblocking),
        }
    }
}

impl AsFd for Listening {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listening::Tcp(listener) => listener.as_fd(),
            Listening::Unix(listener) => listener.as_fd(),
        }
    }
}

impl AsRawFd for Listening {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl From<Listening> for OwnedFd {
    fn from(listening: Listening) -> OwnedFd {
        match listening {
            Listening::Tcp(listener) => listener.into(),
            Listening::Unix(listener) => listener.into(),
        }
    }
}

/// A blocking connected stream: TCP or Unix.
#[derive(Debug)]
pub(crate) enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix stream connection.
    Unix(UnixStream),
}

impl Stream {
    /// Disable Nagle's algorithm where it exists (TCP); a no-op on Unix sockets.
    pub(crate) fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_nodelay(true),
            Stream::Unix(_) => Ok(()),
        }
    }

    /// Bound every blocking read.
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_read_timeout(timeout),
            Stream::Unix(stream) => stream.set_read_timeout(timeout),
        }
    }

    /// Bound every blocking write.
    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_write_timeout(timeout),
            Stream::Unix(stream) => stream.set_write_timeout(timeout),
        }
    }

    /// Switch the socket to nonblocking or blocking.
    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_nonblocking(nonblocking),
            Stream::Unix(stream) => stream.set_nonblocking(nonblocking),
        }
    }

    /// Shut down one or both directions.
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.shutdown(how),
            Stream::Unix(stream) => stream.shutdown(how),
        }
    }

    /// Take the socket's pending error (`SO_ERROR`), as a connect's outcome.
    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        socket2::SockRef::from(self).take_error()
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => (&*stream).read(buf),
            Stream::Unix(stream) => (&*stream).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => (&*stream).write(buf),
            Stream::Unix(stream) => send_nosignal(stream, buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(stream) => stream.as_raw_fd(),
            Stream::Unix(stream) => stream.as_raw_fd(),
        }
    }
}

impl crate::rules::HalfClose for Stream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// `send` with `MSG_NOSIGNAL`: a peer that has gone yields `EPIPE` instead of raising
/// `SIGPIPE` in a process that embeds the server. `std` and `mio` do this for TCP streams
/// but not for Unix streams.
pub(crate) fn send_nosignal(socket: &impl AsRawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the duration of the call,
    // and the descriptor is borrowed from a live socket.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(stream) => stream.as_fd(),
            Stream::Unix(stream) => stream.as_fd(),
        }
    }
}
