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

/// The socket as rustls's `read_tls` sees it, noting whether its read was short (fewer
/// bytes than offered: the socket had no more).
struct NoteShort<'a, S> {
    stream: &'a mut S,
    short: bool,
}

impl<S: Read> Read for NoteShort<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.short = n > 0 && n < buf.len();
        Ok(n)
    }
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
    ///
    /// A socket read that returned less than it was offered drained the socket: on
    /// Linux, bytes arriving after it raise a new edge, so once it gave plaintext there is
    /// no read to make that would only meet `WouldBlock` (one syscall per request, as for
    /// plaintext). With no plaintext yet, reading goes on until `WouldBlock`: an EOF that
    /// arrived with a record carrying none must still be seen.
    pub(crate) fn read<S: Read + Write>(&mut self, stream: &mut S, buf: &mut [u8]) -> ReadOutcome {
        let mut filled = 0;
        let mut drained = false;
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
                    // Take what else rustls holds before reading the socket.
                    continue;
                }
                // Nothing decrypted is waiting, and the socket had nothing more.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock && drained && filled > 0 => {
                    return ReadOutcome::Data(filled);
                }
                // Nothing decrypted is waiting: read records below.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // rustls's verdict on a TCP EOF without close_notify: a truncation, which
                // is an error, not an end of data.
                Err(err) if filled == 0 => return ReadOutcome::Failed(err),
                Err(_) => return ReadOutcome::Data(filled),
            }
            let mut socket = NoteShort {
                stream: &mut *stream,
                short: false,
            };
            let read = self.conn.read_tls(&mut socket);
            drained = socket.short;
            match read {
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::io::tls_config;

    /// One end of an in-memory socket pair: reads take what the other end wrote, or
    /// `WouldBlock`; every read is counted.
    #[derive(Default)]
    struct Pipe {
        incoming: VecDeque<u8>,
        outgoing: Vec<u8>,
        reads: usize,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            if self.incoming.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.incoming.len());
            for (slot, byte) in buf.iter_mut().zip(self.incoming.drain(..n)) {
                *slot = byte;
            }
            Ok(n)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.outgoing.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A server and a client session over in-memory pipes, the handshake done.
    fn handshaken() -> (TlsSession, Pipe, TlsSession, Pipe) {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let server_config = tls_config::server_from_pem(&cert_path, &key_path, &[]).unwrap();
        let client_config = tls_config::client_from_pem(Some(&cert_path)).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut server = TlsSession::new(&server_config).unwrap();
        let mut client = TlsSession::client(&client_config, name).unwrap();
        let (mut server_end, mut client_end) = (Pipe::default(), Pipe::default());
        let mut buf = [0u8; 256];
        for _ in 0..10 {
            let _ = client.push_records(&mut client_end);
            server_end.incoming.extend(client_end.outgoing.drain(..));
            let _ = server.read(&mut server_end, &mut buf);
            client_end.incoming.extend(server_end.outgoing.drain(..));
            let _ = client.read(&mut client_end, &mut buf);
            if !server.is_handshaking() && !client.is_handshaking() {
                server_end.incoming.extend(client_end.outgoing.drain(..));
                let _ = server.read(&mut server_end, &mut buf);
                return (server, server_end, client, client_end);
            }
        }
        panic!("the in-memory handshake did not complete");
    }

    #[test]
    fn a_record_read_whole_gives_its_plaintext_in_one_socket_read() {
        let (mut server, mut server_end, mut client, mut client_end) = handshaken();
        assert_eq!(
            client
                .write(&mut client_end, b"GET / HTTP/1.1\r\n\r\n")
                .unwrap(),
            18
        );
        server_end.incoming.extend(client_end.outgoing.drain(..));
        server_end.reads = 0;
        let mut buf = [0u8; 4096];
        match server.read(&mut server_end, &mut buf) {
            ReadOutcome::Data(n) => assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n"),
            other => panic!("expected the request, got {other:?}"),
        }
        assert_eq!(
            server_end.reads, 1,
            "a short socket read means the socket is drained"
        );
    }

    #[test]
    fn a_record_split_across_socket_reads_is_read_until_it_is_whole() {
        let (mut server, mut server_end, mut client, mut client_end) = handshaken();
        client.write(&mut client_end, &[7u8; 1000]).unwrap();
        let record = std::mem::take(&mut client_end.outgoing);
        let mut buf = [0u8; 4096];
        // Half the record: no plaintext yet, and nothing more to read.
        server_end.incoming.extend(&record[..record.len() / 2]);
        assert!(matches!(
            server.read(&mut server_end, &mut buf),
            ReadOutcome::WouldBlock
        ));
        server_end.incoming.extend(&record[record.len() / 2..]);
        match server.read(&mut server_end, &mut buf) {
            ReadOutcome::Data(n) => assert_eq!(&buf[..n], &[7u8; 1000][..]),
            other => panic!("expected the plaintext, got {other:?}"),
        }
    }

    #[test]
    fn an_eof_after_a_record_without_plaintext_is_still_seen() {
        let (mut server, mut server_end, mut client, mut client_end) = handshaken();
        client.close_notify(&mut client_end);
        server_end.incoming.extend(client_end.outgoing.drain(..));
        let mut buf = [0u8; 64];
        assert!(matches!(
            server.read(&mut server_end, &mut buf),
            ReadOutcome::Eof
        ));
    }
}
