//! TLS below the handler: one rustls session (a server's, or the load generator's client) over any nonblocking
//! `Read + Write` stream, offering the calls a plaintext socket offers (read some bytes,
//! write some bytes, shut down the sending side), so the connection above it keeps its
//! buffers, caps, timers and backpressure in plaintext bytes.
//!
//! Owns the handshake, decryption into the caller's buffer, encryption of the caller's
//! output one bounded slice at a time, `close_notify`, and what a TLS error or a
//! truncation means. It never calls a handler and never blocks: every socket call may
//! return `WouldBlock`, in either direction, during or after the handshake, and the
//! session resumes where it stopped on the next call.

use std::io::{self, Read, Write};
use std::sync::Arc;

use log::debug;
use rustls::{Connection, ServerConfig, ServerConnection};

use crate::rules::{ReadOutcome, is_timeout};

/// Most plaintext bytes sealed into TLS records by one write: rustls keeps the records
/// until the socket takes them, so this bounds what TLS holds beyond our own output
/// buffer (the caps and the high-water mark count the rest, in plaintext).
const SEAL_SLICE: usize = 64 * 1024;

/// A fatal `handshake_failure` alert as a plaintext TLS 1.2 record: content type 21
/// (alert), version 3.3, length 2, level 2 (fatal), description 40.
pub(crate) const HANDSHAKE_FAILURE: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];

/// True when a handshake that just failed left no alert of rustls's to send, where one of
/// ours must go: rustls 0.23 fails a TLS 1.2 handshake with no signature scheme in common
/// with the key ("incompatible signing key") without an alert, so the client would see
/// a bare TCP close. Before the TLS 1.2 ChangeCipherSpec an alert is plaintext; TLS 1.3
/// alerts are encrypted, and rustls sends those itself.
pub(crate) fn needs_own_alert(conn: &rustls::CommonState) -> bool {
    conn.is_handshaking()
        && !conn.wants_write()
        && conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3)
}

/// One TLS session, server or client side.
#[derive(Debug)]
pub(crate) struct TlsSession {
    /// rustls's state machine, with its buffers of records not yet read or written.
    conn: Connection,
    /// Plaintext bytes already sealed into records that the socket has not fully taken.
    sealed: usize,
    /// The handshake completed with output possibly waiting for it: flush once.
    flush_due: bool,
}

impl TlsSession {
    /// A session for a client just accepted.
    pub(crate) fn new(config: &Arc<ServerConfig>) -> io::Result<Self> {
        let conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        Ok(TlsSession::over(conn.into()))
    }

    /// A client's session with the server `name`; its first write sends the ClientHello.
    /// (The load generator's, which comes with the `cli` feature.)
    #[cfg(feature = "cli")]
    pub(crate) fn client(
        config: &Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<Self> {
        let conn =
            rustls::ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
        Ok(TlsSession::over(conn.into()))
    }

    /// A session driving `conn`.
    fn over(conn: Connection) -> Self {
        TlsSession {
            conn,
            sealed: 0,
            flush_due: false,
        }
    }

    /// True until the handshake has completed.
    #[inline]
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Plaintext counted as unsent: bytes sealed and not yet written, or 1 while records
    /// of our own (handshake, alerts) wait for the socket, so that a close waits for them.
    #[inline]
    pub(crate) fn unsent(&self) -> usize {
        if self.conn.wants_write() {
            self.sealed.max(1)
        } else {
            0
        }
    }

    /// True once after the handshake completed: output queued during it can now go.
    #[inline]
    pub(crate) fn take_flush_due(&mut self) -> bool {
        std::mem::take(&mut self.flush_due)
    }

    /// Read plaintext into `buf`: decrypted bytes already held first, then records from
    /// the socket until `buf` is full or the socket has nothing more (so that a short
    /// result means the socket was drained, as with a plaintext read). Handshake
    /// messages are answered on the way.
    pub(crate) fn read<S: Read + Write>(&mut self, stream: &mut S, buf: &mut [u8]) -> ReadOutcome {
        let mut filled = 0;
        loop {
            match self.conn.reader().read(&mut buf[filled..]) {
                // The peer's close_notify: a clean end of its data.
                Ok(0) if filled == 0 => return ReadOutcome::Eof,
                Ok(0) => return ReadOutcome::Data(filled),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return ReadOutcome::Data(filled);
                    }
                }
                // Nothing decrypted is waiting: read records below.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // rustls's verdict on a TCP EOF without close_notify: a truncation, which
                // is an error, not an end of data.
                Err(err) if filled == 0 => return ReadOutcome::Failed(err),
                Err(_) => return ReadOutcome::Data(filled),
            }
            match self.conn.read_tls(stream) {
                // TCP EOF: rustls records it; the reader above says what it means.
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if is_timeout(&err) => {
                    return if filled > 0 {
                        ReadOutcome::Data(filled)
                    } else {
                        ReadOutcome::WouldBlock
                    };
                }
                Err(err) => return ReadOutcome::Failed(err),
            }
            let was_handshaking = self.conn.is_handshaking();
            if let Err(err) = self.conn.process_new_packets() {
                debug!("TLS: {err}");
                let own_alert = needs_own_alert(&self.conn);
                // Tell the peer why (the alert rustls queued, or ours), best effort: it is
                // going.
                let _ = self.push_records(stream);
                if own_alert {
                    let _ = stream.write(&HANDSHAKE_FAILURE);
                }
                return ReadOutcome::Failed(io::Error::new(io::ErrorKind::InvalidData, err));
            }
            if was_handshaking && !self.conn.is_handshaking() {
                self.flush_due = true;
            }
            // TLS may need to write in order to read (handshake replies, key updates).
            if let Err(err) = self.push_records(stream) {
                return ReadOutcome::Failed(err);
            }
        }
    }

    /// Seal up to [`SEAL_SLICE`] bytes of `plain` and write records to the socket.
    /// Returns the plaintext bytes taken; `WouldBlock` when none could be: the socket is
    /// full of our records, or the handshake has not completed yet.
    pub(crate) fn write<S: Read + Write>(
        &mut self,
        stream: &mut S,
        plain: &[u8],
    ) -> io::Result<usize> {
        if !self.push_records(stream)? || self.conn.is_handshaking() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let slice = &plain[..plain.len().min(SEAL_SLICE)];
        let taken = self.conn.writer().write(slice)?;
        self.sealed = taken;
        self.push_records(stream)?;
        Ok(taken)
    }

    /// Write the records rustls holds. Ok(true) once all are written, Ok(false) when the
    /// socket is full.
    pub(crate) fn push_records<S: Read + Write>(&mut self, stream: &mut S) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) => return Err(err),
            }
        }
        self.sealed = 0;
        Ok(true)
    }

    /// Send `close_notify` (best effort: the close that follows does not wait for it).
    pub(crate) fn close_notify<S: Read + Write>(&mut self, stream: &mut S) {
        self.conn.send_close_notify();
        let _ = self.push_records(stream);
    }
}
