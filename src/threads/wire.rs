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
//!
//! Output for a client whose handshake has not completed waits in rustls, as a reactor
//! connection's unsent output waits in its buffer: within `Config::max_output` (past it
//! the client is closed with `OutputLimit`, and a log line) and counted in the server's
//! budget. rustls's own limit on what it keeps is lifted, since it would drop the rest.

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

use super::write::{Gate, Patience, WriteError, write_all};
use crate::io::stream::BlockingStream;
#[cfg(feature = "tls")]
use crate::rules::is_timeout;
use crate::rules::{self, ReadOutcome};
#[cfg(feature = "tls")]
use crate::worker::Live;

/// Ciphertext read from the socket at once: small enough that what it decrypts to always
/// fits rustls's received-plaintext limit (16 KiB).
#[cfg(feature = "tls")]
const RAW_READ: usize = 8 * 1024;

/// Plaintext sealed and written at once when a write is larger: the records of one piece
/// are all that is held besides the caller's bytes.
#[cfg(feature = "tls")]
const SEAL_PIECE: usize = 64 * 1024;

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
    /// The session, shared by the reading thread and every writer.
    session: Mutex<Session>,
    /// When the handshake must have completed.
    handshake_deadline: Instant,
    /// Most plaintext kept for the client before its handshake completes
    /// (`Config::max_output`).
    max_queued: usize,
    /// The server-wide budget, which counts that plaintext.
    live: Arc<Live>,
}

/// rustls's state machine, and the output it keeps until the handshake completes.
#[cfg(feature = "tls")]
#[derive(Debug)]
struct Session {
    /// rustls's state machine.
    conn: rustls::ServerConnection,
    /// Plaintext written before the handshake completed, which rustls keeps until then.
    queued: usize,
    /// Bytes this session is counted for in the budget.
    accounted: usize,
}

impl Wire {
    /// The transport for a client just accepted: TLS when `tls` is given, the handshake
    /// due within `handshake_timeout`, keeping at most `max_queued` bytes of output until
    /// then (counted in `live`'s budget).
    #[cfg(feature = "tls")]
    pub(super) fn for_client(
        tls: Option<&Arc<rustls::ServerConfig>>,
        handshake_timeout: Duration,
        max_queued: usize,
        live: &Arc<Live>,
    ) -> io::Result<Wire> {
        let Some(config) = tls else {
            return Ok(Wire::Plain);
        };
        let mut conn =
            rustls::ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        // rustls keeps 64 KiB by default and takes no more: the rest of a write would be
        // lost. What it keeps is bounded here instead (`max_queued` before the handshake,
        // one piece of a write after it).
        conn.set_buffer_limit(None);
        Ok(Wire::Tls(Box::new(TlsWire {
            session: Mutex::new(Session {
                conn,
                queued: 0,
                accounted: 0,
            }),
            handshake_deadline: Instant::now() + handshake_timeout,
            max_queued,
            live: Arc::clone(live),
        })))
    }

    /// When the handshake must have completed, while it has not.
    #[cfg(feature = "tls")]
    pub(super) fn handshake_deadline(&self) -> Option<Instant> {
        match self {
            Wire::Plain => None,
            Wire::Tls(tls) => tls
                .lock()
                .conn
                .is_handshaking()
                .then_some(tls.handshake_deadline),
        }
    }

    /// Output kept for the client until its handshake completes.
    pub(super) fn queued(&self) -> usize {
        match self {
            Wire::Plain => 0,
            #[cfg(feature = "tls")]
            Wire::Tls(tls) => tls.lock().queued,
        }
    }

    /// When the handshake must have completed, while it has not: never without TLS.
    #[cfg(not(feature = "tls"))]
    pub(super) fn handshake_deadline(&self) -> Option<Instant> {
        None
    }

    /// One read of plaintext into `buf`, from `source` (the socket, blocking with its
    /// timeout or not at all); what TLS must write meanwhile (handshake replies, then the
    /// output kept until the handshake completed) is written to `stream` in a turn of
    /// `gate`, with the owner's `patience`. `WouldBlock` once `deadline` passes (the
    /// caller's next deadline): the socket's timeout, which the caller sets to end by
    /// then, bounds one read only.
    pub(super) fn read(
        &self,
        source: impl Read,
        stream: &BlockingStream,
        gate: &Gate,
        buf: &mut [u8],
        deadline: Option<Instant>,
        patience: Patience<'_>,
    ) -> ReadOutcome {
        match self {
            Wire::Plain => {
                // One read: the socket's timeout bounds it.
                let _ = (stream, gate, deadline, patience);
                rules::read_once(source, buf)
            }
            #[cfg(feature = "tls")]
            Wire::Tls(tls) => tls.read(source, stream, gate, buf, deadline, patience),
        }
    }

    /// Write all of `bytes` (the caller holds a turn of the gate), counting the plaintext
    /// bytes taken into `written`.
    pub(super) fn write_all(
        &self,
        stream: &BlockingStream,
        bytes: &[u8],
        patience: Patience<'_>,
        written: &mut u64,
    ) -> Result<(), WriteError> {
        match self {
            Wire::Plain => write_all(stream, bytes, patience, written),
            #[cfg(feature = "tls")]
            Wire::Tls(tls) => {
                for piece in bytes.chunks(SEAL_PIECE) {
                    tls.seal(piece)?;
                    tls.push(stream, patience)?;
                    *written += piece.len() as u64;
                }
                Ok(())
            }
        }
    }

    /// The transport's own end of a graceful close: TLS sends `close_notify` (best effort,
    /// not waiting on a full socket); a plain socket has nothing to say.
    pub(super) fn close_notify(&self, stream: &BlockingStream, gate: &Gate) {
        match self {
            Wire::Plain => {
                let _ = (stream, gate);
            }
            #[cfg(feature = "tls")]
            Wire::Tls(tls) => {
                let _turn = gate.enter(None);
                tls.lock().conn.send_close_notify();
                let _ = tls.push(stream, Patience::NoStall(Duration::ZERO));
            }
        }
    }
}

#[cfg(feature = "tls")]
impl TlsWire {
    /// The session; a panic elsewhere while holding it leaves it usable for a close.
    fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decrypted bytes already held first; otherwise one read of ciphertext from `source`,
    /// processed, answered if the protocol needs it, and tried again, until `deadline`.
    fn read(
        &self,
        mut source: impl Read,
        stream: &BlockingStream,
        gate: &Gate,
        buf: &mut [u8],
        deadline: Option<Instant>,
        patience: Patience<'_>,
    ) -> ReadOutcome {
        // On the client thread's stack: no allocation per read.
        let mut raw = [0; RAW_READ];
        let mut first = true;
        loop {
            match self.lock().conn.reader().read(buf) {
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
                let mut session = self.lock();
                let conn = &mut session.conn;
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
                let own_alert = result.is_err() && crate::io::tls::needs_own_alert(conn);
                let wants_write = conn.wants_write();
                if !conn.is_handshaking() && session.queued > 0 {
                    // rustls has sealed what it kept: it is written now, below.
                    session.queued = 0;
                    self.live.budget.update(&mut session.accounted, 0);
                }
                result.map(|()| wants_write).map_err(|err| (err, own_alert))
            };
            // TLS may need to write in order to read (handshake replies, alerts).
            let wants_write = match &processed {
                Ok(wants) => *wants,
                Err(_) => true,
            };
            if wants_write {
                let _turn = gate.enter(None);
                let pushed = self.push(stream, patience);
                if let (Err(err), Ok(_)) = (pushed, &processed) {
                    // What was not written is lost with the records: the connection ends.
                    return ReadOutcome::Failed(match err {
                        WriteError::Failed(err) => err,
                        WriteError::Stalled | WriteError::Idle | WriteError::OverCap => {
                            io::ErrorKind::TimedOut.into()
                        }
                    });
                }
            }
            if let Err((err, own_alert)) = processed {
                if own_alert {
                    // rustls sent no alert: say why the handshake failed, best effort.
                    let _turn = gate.enter(None);
                    let alert = &crate::io::tls::HANDSHAKE_FAILURE;
                    let _ = write_all(stream, alert, patience, &mut 0);
                }
                return ReadOutcome::Failed(err);
            }
        }
    }

    /// Seal `bytes` into records, for [`push`](TlsWire::push) to write. Before the
    /// handshake completes rustls keeps the plaintext, within `max_queued` and counted in
    /// the budget, and the reading thread writes it once the handshake completes.
    fn seal(&self, bytes: &[u8]) -> Result<(), WriteError> {
        let mut session = self.lock();
        if session.conn.is_handshaking() {
            let queued = session.queued + bytes.len();
            if queued > self.max_queued {
                return Err(WriteError::OverCap);
            }
            session.queued = queued;
            let Session {
                queued, accounted, ..
            } = &mut *session;
            self.live.budget.update(accounted, *queued);
        }
        // Without a buffer limit rustls takes every byte, or fails.
        session
            .conn
            .writer()
            .write_all(bytes)
            .map_err(WriteError::Failed)
    }

    /// Write every record rustls holds (the caller holds a turn of the gate).
    fn push(&self, stream: &BlockingStream, patience: Patience<'_>) -> Result<(), WriteError> {
        let mut records = Vec::new();
        {
            let mut session = self.lock();
            let conn = &mut session.conn;
            while conn.wants_write() {
                conn.write_tls(&mut records).map_err(WriteError::Failed)?;
            }
        }
        let mut sent = 0;
        write_all(stream, &records, patience, &mut sent)
    }
}

#[cfg(feature = "tls")]
impl Drop for TlsWire {
    fn drop(&mut self) {
        // Output still kept for a client that never completed its handshake leaves the
        // budget with the session.
        let session = self
            .session
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        self.live.budget.update(&mut session.accounted, 0);
    }
}

/// Wait until `stream` has something to read (bytes, EOF or an error), or `deadline`
/// passes: false if it passed first. Without a deadline, true at once (the read blocks as
/// the socket's timeout says).
#[cfg(feature = "tls")]
fn readable_before(stream: &BlockingStream, deadline: Option<Instant>) -> bool {
    let Some(deadline) = deadline else {
        return true;
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        // Rounded up, so the wait does not end just short of the deadline and spin.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        match crate::io::sys::poll_one(stream.as_raw_fd(), libc::POLLIN, ms) {
            Ok(0) => {}
            Ok(_) => return true,
            // Interrupted: wait again for what is left.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // Any other failure of poll: let the read report the socket's state.
            Err(_) => return true,
        }
    }
}
