//! What a threads-model client's bytes travel through between its buffers and its
//! blocking socket: the socket itself, or a TLS session over it.
//!
//! Owns the TLS session of a threads-model client: decrypting what its own thread reads,
//! encrypting what any writer writes, and `close_notify`. The session is shared by the
//! client thread (reads) and every writer (the client's own flushes and other clients'
//! messages), so it sits behind a mutex that no one holds across a blocking socket call;
//! records reach the socket in the order rustls made them because every writer makes and
//! writes them within one turn of the peer's `Gate`. Everything above counts plaintext.
//!
//! A read of plaintext may take several reads of the socket (a record, a handshake
//! flight); each is bounded by the caller's deadline, not only by the socket's timeout,
//! which a client sending a byte at a time would restart with every byte.

use std::io::Read;
#[cfg(feature = "tls")]
use std::io::{self, Write};
#[cfg(feature = "tls")]
use std::os::fd::AsRawFd;
#[cfg(feature = "tls")]
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
#[cfg(feature = "tls")]
use std::time::Duration;
use std::time::Instant;

use super::peer::{Gate, Patience, WriteError, write_all};
use crate::listener::stream::Stream;
#[cfg(feature = "tls")]
use crate::rules::is_timeout;
use crate::rules::{self, ReadOutcome};

/// Ciphertext read from the socket at once: small enough that what it decrypts to always
/// fits rustls's received-plaintext limit (16 KiB).
#[cfg(feature = "tls")]
const RAW_READ: usize = 8 * 1024;

/// A threads-model client's transport.
#[derive(Debug)]
pub(super) enum Wire {
    /// Bytes go to the socket as they are.
    Plain,
    /// Bytes are sealed into TLS records.
    #[cfg(feature = "tls")]
    Tls(Box<TlsWire>),
}

/// One TLS session of a threads-model client.
#[cfg(feature = "tls")]
#[derive(Debug)]
pub(super) struct TlsWire {
    /// rustls's state machine, shared by the reading thread and every writer.
    conn: Mutex<rustls::ServerConnection>,
    /// When the handshake must have completed.
    handshake_deadline: Instant,
}

impl Wire {
    /// The transport for a client just accepted: TLS when `tls` is given, the handshake
    /// due within `handshake_timeout`.
    #[cfg(feature = "tls")]
    pub(super) fn for_client(
        tls: Option<&Arc<rustls::ServerConfig>>,
        handshake_timeout: Duration,
    ) -> io::Result<Wire> {
        let Some(config) = tls else {
            return Ok(Wire::Plain);
        };
        let conn = rustls::ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        Ok(Wire::Tls(Box::new(TlsWire {
            conn: Mutex::new(conn),
            handshake_deadline: Instant::now() + handshake_timeout,
        })))
    }

    /// When the handshake must have completed, while it has not.
    #[cfg(feature = "tls")]
    pub(super) fn handshake_deadline(&self) -> Option<Instant> {
        match self {
            Wire::Plain => None,
            Wire::Tls(tls) => tls
                .lock()
                .is_handshaking()
                .then_some(tls.handshake_deadline),
        }
    }

    /// When the handshake must have completed, while it has not: never without TLS.
    #[cfg(not(feature = "tls"))]
    pub(super) fn handshake_deadline(&self) -> Option<Instant> {
        None
    }

    /// One read of plaintext into `buf`, from `source` (the socket, blocking with its
    /// timeout or not at all); handshake replies are written to `stream` in a turn of
    /// `gate`. `WouldBlock` once `deadline` passes (the caller's next deadline): the
    /// socket's timeout, which the caller sets to end by then, bounds one read only.
    pub(super) fn read(
        &self,
        source: impl Read,
        stream: &Stream,
        gate: &Gate,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> ReadOutcome {
        match self {
            Wire::Plain => {
                // One read: the socket's timeout bounds it.
                let _ = (stream, gate, deadline);
                rules::read_once(source, buf)
            }
            #[cfg(feature = "tls")]
            Wire::Tls(tls) => tls.read(source, stream, gate, buf, deadline),
        }
    }

    /// Write all of `bytes` (the caller holds a turn of the gate), counting the plaintext
    /// bytes taken into `written`.
    pub(super) fn write_all(
        &self,
        stream: &Stream,
        bytes: &[u8],
        patience: Patience<'_>,
        written: &mut u64,
    ) -> Result<(), WriteError> {
        match self {
            Wire::Plain => write_all(stream, bytes, patience, written),
            #[cfg(feature = "tls")]
            Wire::Tls(tls) => {
                tls.seal(bytes)?;
                tls.push(stream, patience)?;
                *written += bytes.len() as u64;
                Ok(())
            }
        }
    }

    /// The transport's own end of a graceful close: TLS sends `close_notify` (best effort,
    /// not waiting on a full socket); a plain socket has nothing to say.
    pub(super) fn close_notify(&self, stream: &Stream, gate: &Gate) {
        match self {
            Wire::Plain => {
                let _ = (stream, gate);
            }
            #[cfg(feature = "tls")]
            Wire::Tls(tls) => {
                let _turn = gate.enter(None);
                tls.lock().send_close_notify();
                let _ = tls.push(stream, Patience::NoStall);
            }
        }
    }
}

#[cfg(feature = "tls")]
impl TlsWire {
    /// The session; a panic elsewhere while holding it leaves it usable for a close.
    fn lock(&self) -> MutexGuard<'_, rustls::ServerConnection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decrypted bytes already held first; otherwise one read of ciphertext from `source`,
    /// processed, answered if the protocol needs it, and tried again, until `deadline`.
    fn read(
        &self,
        mut source: impl Read,
        stream: &Stream,
        gate: &Gate,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> ReadOutcome {
        // On the client thread's stack: no allocation per read.
        let mut raw = [0; RAW_READ];
        let mut first = true;
        loop {
            match self.lock().reader().read(buf) {
                // The peer's close_notify: a clean end of its data.
                Ok(0) => return ReadOutcome::Eof,
                Ok(n) => return ReadOutcome::Data(n),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // A TCP EOF without close_notify: rustls calls it a truncation.
                Err(err) => return ReadOutcome::Failed(err),
            }
            // The caller's timeout bounds the first read; later ones wait only until the
            // deadline, so a peer that trickles a record or a handshake cannot extend it.
            if !std::mem::take(&mut first) && !readable_before(stream, deadline) {
                return ReadOutcome::WouldBlock;
            }
            let n = match source.read(&mut raw) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if is_timeout(&err) => return ReadOutcome::WouldBlock,
                Err(err) => return ReadOutcome::Failed(err),
            };
            let processed = {
                let mut conn = self.lock();
                let mut fresh = &raw[..n];
                let mut result = Ok(());
                // An empty slice tells rustls about the EOF.
                while result.is_ok() {
                    result = match conn.read_tls(&mut fresh) {
                        Ok(_) => conn.process_new_packets().map(|_| ()).map_err(|err| {
                            log::debug!("TLS: {err}");
                            io::Error::new(io::ErrorKind::InvalidData, err)
                        }),
                        Err(err) => Err(err),
                    };
                    if fresh.is_empty() {
                        break;
                    }
                }
                result.map(|()| conn.wants_write())
            };
            // TLS may need to write in order to read (handshake replies, alerts).
            let wants_write = match &processed {
                Ok(wants) => *wants,
                Err(_) => true,
            };
            if wants_write {
                let _turn = gate.enter(None);
                if let Err(WriteError::Failed(err)) = self.push(stream, Patience::NoStall)
                    && processed.is_ok()
                {
                    return ReadOutcome::Failed(err);
                }
            }
            if let Err(err) = processed {
                return ReadOutcome::Failed(err);
            }
        }
    }

    /// Seal `bytes` into records, for [`push`](TlsWire::push) to write. Before the
    /// handshake completes rustls keeps the plaintext, and the reading thread writes it
    /// once the handshake completes.
    fn seal(&self, bytes: &[u8]) -> Result<(), WriteError> {
        self.lock()
            .writer()
            .write_all(bytes)
            .map_err(WriteError::Failed)
    }

    /// Write every record rustls holds (the caller holds a turn of the gate).
    fn push(&self, stream: &Stream, patience: Patience<'_>) -> Result<(), WriteError> {
        let mut records = Vec::new();
        {
            let mut conn = self.lock();
            while conn.wants_write() {
                conn.write_tls(&mut records).map_err(WriteError::Failed)?;
            }
        }
        let mut sent = 0;
        write_all(stream, &records, patience, &mut sent)
    }
}

/// Wait until `stream` has something to read (bytes, EOF or an error), or `deadline`
/// passes: false if it passed first. Without a deadline, true at once (the read blocks as
/// the socket's timeout says).
#[cfg(feature = "tls")]
fn readable_before(stream: &Stream, deadline: Option<Instant>) -> bool {
    let Some(deadline) = deadline else {
        return true;
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fd = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Rounded up, so the wait does not end just short of the deadline and spin.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, for the duration of the call; poll only writes `revents`.
        match unsafe { libc::poll(&mut fd, 1, ms) } {
            0 => {}
            n if n > 0 => return true,
            // Interrupted: wait again for what is left.
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            // Any other failure of poll: let the read report the socket's state.
            _ => return true,
        }
    }
}
