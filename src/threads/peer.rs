//! One threads-model client's socket as other threads see it: a [`Peer`] shared by its
//! own client thread and by any thread that sends it a message.
//!
//! Writers take turns at its `Gate` and write with `write`'s loop. It must not read from a
//! socket (the client thread does) or call a handler.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::wire::Wire;
use super::write::{Gate, Patience, WriteError};
use crate::ConnId;
use crate::io::stream::BlockingStream;

/// One client's socket, shared by its own thread and by threads that send it messages.
#[derive(Debug)]
pub(super) struct Peer {
    /// The connection. Reads and writes go through `&BlockingStream`, so no lock is needed to
    /// read while another thread writes.
    pub(super) stream: BlockingStream,
    /// Which worker accepted it (stop wakes only its own clients).
    pub(super) worker: usize,
    /// Writes take turns through this.
    pub(super) gate: Gate,
    /// Set when a sender gave up on this client: its owner closes with `OutputLimit`.
    pub(super) overflowed: AtomicBool,
    /// Set when a handler reset this connection (`Context::reset_conn`): its owner drops it
    /// without a FIN, so `SO_LINGER` 0 turns the close into a reset.
    pub(super) reset: AtomicBool,
    /// Set while its thread waits half-closed, where a shut read side no longer wakes it:
    /// a reset is then carried out at once by the thread that asks for it.
    pub(super) half_closed: AtomicBool,
    /// What bytes travel through: the socket itself, or TLS over it.
    pub(super) wire: Wire,
    /// For a connection a handler dialed: when its connect must have completed. Its
    /// thread opens the gate by then, so senders wait for the connect until then.
    pub(super) connect_deadline: Option<Instant>,
}

impl Peer {
    /// A peer for `stream`, owned by a thread of `worker`, its bytes going through `wire`.
    pub(super) fn new(stream: BlockingStream, worker: usize, wire: Wire) -> Self {
        Peer {
            stream,
            worker,
            gate: Gate::default(),
            overflowed: AtomicBool::new(false),
            reset: AtomicBool::new(false),
            half_closed: AtomicBool::new(false),
            wire,
            connect_deadline: None,
        }
    }

    /// A peer whose connect is under way (plaintext), due by `deadline`: senders wait at
    /// the gate until its thread opens it ([`Gate::open`]), so no write can take the
    /// connect's error before that thread reads it.
    pub(super) fn connecting(stream: BlockingStream, worker: usize, deadline: Instant) -> Self {
        let mut peer = Peer::new(stream, worker, Wire::Plain);
        peer.connect_deadline = Some(deadline);
        peer.gate.close();
        peer
    }

    /// Write a message from another client to this one (`to`), waiting at most `patience`
    /// for a turn and for the socket to take the bytes (after the connect, for a
    /// connection still connecting). Returns the bytes written.
    pub(super) fn deliver(&self, to: ConnId, bytes: &[u8], patience: Duration) -> u64 {
        if self.overflowed.load(Ordering::Relaxed) {
            // Given up on already: it is closing.
            return 0;
        }
        // A connect under way holds the gate until it ends, by its own deadline: the
        // patience starts from there, so a sender neither gives up on a connect that may
        // still succeed nor races its deadline (and shuts an upstream that was never
        // tried to the end).
        let now = Instant::now();
        let deadline = self.connect_deadline.map_or(now, |at| at.max(now)) + patience;
        let mut written = 0;
        let Some(_turn) = self.gate.enter(Some(deadline)) else {
            self.overflow();
            return written;
        };
        let patience = Patience::Until(deadline);
        match self
            .wire
            .write_all(&self.stream, bytes, patience, &mut written)
        {
            Ok(()) => {}
            Err(WriteError::Stalled | WriteError::Idle) => self.overflow(),
            Err(WriteError::OverCap) => {
                log::warn!(
                    "{to}: {} bytes of output waiting for its TLS handshake would exceed the \
                     output cap; closing",
                    self.wire.queued() + bytes.len()
                );
                self.overflow();
            }
            // The receiver is gone or broken; its own thread sees the error and closes.
            Err(WriteError::Failed(_)) => {}
        }
        written
    }

    /// One read of plaintext from `source` (this peer's socket, read one way or another),
    /// through the wire, giving up at `deadline` if given; what the wire writes meanwhile
    /// is written with `patience` (see [`Wire::read`]).
    pub(super) fn read(
        &self,
        source: impl io::Read,
        buf: &mut [u8],
        deadline: Option<Instant>,
        patience: Patience<'_>,
    ) -> crate::rules::ReadOutcome {
        self.wire
            .read(source, &self.stream, &self.gate, buf, deadline, patience)
    }

    /// Give up on a receiver that does not take its messages: mark it and wake its
    /// thread, which closes it with `OutputLimit` (as the reactor does when unsent output
    /// passes its cap).
    fn overflow(&self) {
        self.overflowed.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
