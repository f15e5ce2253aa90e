//! One client of the reactor: its socket, its buffers, where it is in its life, and the
//! classification of every read and write result.
//!
//! This module owns the socket calls for connections and turns their results into a few
//! outcomes the reactor can act on. It must not call the handler or know about other
//! connections; that is the reactor's job.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

use mio::Token;
use mio::net::TcpStream;

use crate::{CloseReason, ConnId, Stats};

/// Unsent output buffers above this capacity are released once empty, so a connection
/// that once sent a burst does not keep the memory while idle.
const KEEP_OUTPUT_CAPACITY: usize = 16 * 1024;

/// What one `read` produced.
#[derive(Debug)]
pub(crate) enum ReadOutcome {
    /// This many bytes were read into the buffer.
    Data(usize),
    /// The peer closed its sending side: `read` returned 0.
    Eof,
    /// No more bytes for now; the next edge will tell us when there are.
    WouldBlock,
    /// The connection is broken (reset, or another error).
    Failed(io::Error),
}

/// What flushing the output buffer achieved.
#[derive(Debug)]
pub(crate) enum FlushOutcome {
    /// Every queued byte has been handed to the kernel.
    Done,
    /// The kernel's send buffer is full; a writable edge will come when it drains.
    Blocked,
    /// The connection is broken.
    Failed(io::Error),
}

/// One client connection, stored in the reactor's slab.
#[derive(Debug)]
pub(crate) struct Connection<S> {
    /// The nonblocking socket, registered once for read and write interest.
    pub(crate) stream: TcpStream,
    /// Slab key in the low 32 bits, a generation in the high bits, so an event for a
    /// reused slot is recognised as stale.
    pub(crate) token: Token,
    /// The id handlers use; unique for the server's life.
    pub(crate) id: ConnId,
    /// The peer's address, for logs and handlers.
    pub(crate) peer: SocketAddr,
    /// The handler's state for this connection; taken when it closes.
    pub(crate) session: Option<S>,
    /// Input the handler has not consumed yet. Empty (and unallocated) most of the time:
    /// input is handed to the handler straight from the reactor's shared read buffer.
    pub(crate) input: Vec<u8>,
    /// Output not yet sent; bytes before `sent` already left.
    pub(crate) output: Vec<u8>,
    /// How much of `output` has been written.
    pub(crate) sent: usize,
    /// The peer sent EOF; nothing more will be read.
    pub(crate) read_closed: bool,
    /// Output passed the high-water mark: reading is paused until it drains.
    pub(crate) paused: bool,
    /// The connection will close once its output is flushed, for this reason.
    pub(crate) closing: Option<CloseReason>,
    /// Our write side has been shut down (lingering close in progress).
    pub(crate) write_shut: bool,
    /// The connection is finished and waits to be reaped at the end of the turn.
    pub(crate) dead: Option<CloseReason>,
    /// Already on the ready list for a revisit next turn.
    pub(crate) queued: bool,
    /// Output is waiting for a flush at the end of this turn.
    pub(crate) dirty: bool,
    /// When the connection last made progress (the handler consumed input, or output was
    /// written), for the idle timeout.
    pub(crate) last_active: Instant,
    /// When a closing connection must be gone.
    pub(crate) linger_deadline: Option<Instant>,
    /// When the handler's timer fires.
    pub(crate) handler_timer: Option<Instant>,
}

impl<S> Connection<S> {
    /// A connection just accepted.
    pub(crate) fn new(
        stream: TcpStream,
        token: Token,
        id: ConnId,
        peer: SocketAddr,
        now: Instant,
    ) -> Self {
        Connection {
            stream,
            token,
            id,
            peer,
            session: None,
            input: Vec::new(),
            output: Vec::new(),
            sent: 0,
            read_closed: false,
            paused: false,
            closing: None,
            write_shut: false,
            dead: None,
            queued: false,
            dirty: false,
            last_active: now,
            linger_deadline: None,
            handler_timer: None,
        }
    }

    /// Bytes queued and not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.output.len() - self.sent
    }

    /// True while input should still be read and given to the handler.
    pub(crate) fn wants_input(&self) -> bool {
        self.dead.is_none() && !self.read_closed && !self.paused && self.closing.is_none()
    }

    /// True while the socket should still be read at all (a closing connection reads and
    /// discards input until the peer's EOF, so that closing does not send a reset).
    pub(crate) fn wants_read(&self) -> bool {
        self.dead.is_none() && !self.read_closed && (!self.paused || self.closing.is_some())
    }

    /// One `read` into `buf`, classified.
    pub(crate) fn read_into(&mut self, buf: &mut [u8]) -> ReadOutcome {
        loop {
            return match self.stream.read(buf) {
                // Zero bytes from a nonblocking socket means the peer closed its side.
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => ReadOutcome::Data(n),
                // Not an error: the socket is drained until the next edge.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
                // A signal interrupted the call before any byte moved: try again.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => ReadOutcome::Failed(err),
            };
        }
    }

    /// Write queued output until it is all sent or the kernel buffer is full.
    /// Counts the calls and the bytes written in `stats`.
    pub(crate) fn flush(&mut self, stats: &mut Stats) -> FlushOutcome {
        while self.sent < self.output.len() {
            stats.writes += 1;
            // `write` on a mio stream is `send(MSG_NOSIGNAL)`: a reset peer yields EPIPE
            // instead of raising SIGPIPE in the (possibly embedding) process.
            match self.stream.write(&self.output[self.sent..]) {
                Ok(0) => return FlushOutcome::Failed(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    stats.bytes_out += n as u64;
                }
                // Not an error: wait for the writable edge. Drop what was sent once it is
                // half the buffer (amortised O(1) per byte), so output that never fully
                // drains does not keep every byte ever sent.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if self.sent >= self.output.len() / 2 {
                        self.output.drain(..self.sent);
                        self.sent = 0;
                    }
                    return FlushOutcome::Blocked;
                }
                // Interrupted before anything was written: retry.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return FlushOutcome::Failed(err),
            }
        }
        self.output.clear();
        self.sent = 0;
        if self.output.capacity() > KEEP_OUTPUT_CAPACITY {
            self.output = Vec::new();
        }
        FlushOutcome::Done
    }

    /// Send `bytes` now, when nothing else is queued; whatever the kernel does not take is
    /// queued in `output` for the next writable edge. Counts the calls and the bytes
    /// written in `stats`.
    pub(crate) fn send(&mut self, bytes: &[u8], stats: &mut Stats) -> FlushOutcome {
        debug_assert_eq!(self.pending(), 0, "send would reorder queued output");
        let mut done = 0;
        while done < bytes.len() {
            stats.writes += 1;
            match self.stream.write(&bytes[done..]) {
                Ok(0) => return FlushOutcome::Failed(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done += n;
                    stats.bytes_out += n as u64;
                }
                // The kernel buffer is full: keep the rest for the writable edge.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.output.extend_from_slice(&bytes[done..]);
                    return FlushOutcome::Blocked;
                }
                // Interrupted before anything was written: retry.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return FlushOutcome::Failed(err),
            }
        }
        FlushOutcome::Done
    }

    /// Shut down our sending side: the peer sees EOF after the bytes already sent.
    pub(crate) fn shutdown_write(&mut self) {
        self.write_shut = true;
        // Failure means the peer is already gone; reading will report it.
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}
