//! Blocking client sockets for tests: connect with deadlines, send, receive, and assert on
//! what the server sends (or does not send).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::PATIENCE;

/// Connect to `addr` with read and write timeouts of [`PATIENCE`].
#[track_caller]
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = match TcpStream::connect_timeout(&addr, PATIENCE) {
        Ok(stream) => stream,
        Err(err) => panic!("could not connect to {addr}: {err}"),
    };
    set_timeouts(&stream, PATIENCE);
    stream
}

/// Write all of `bytes`.
#[track_caller]
pub fn send(stream: &mut TcpStream, bytes: &[u8]) {
    if let Err(err) = stream.write_all(bytes) {
        panic!("could not send {} bytes: {err}", bytes.len());
    }
}

/// Read exactly `len` bytes.
#[track_caller]
pub fn recv_exact(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    if let Err(err) = stream.read_exact(&mut buf) {
        panic!("could not read {len} bytes: {err}");
    }
    buf
}

/// Read until the server closes the connection (EOF); a reset or timeout fails.
#[track_caller]
pub fn recv_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Err(err) = stream.read_to_end(&mut buf) {
        panic!(
            "connection did not end cleanly after {} bytes: {err}",
            buf.len()
        );
    }
    buf
}

/// Read one `\n`-terminated line, byte by byte (tests only).
#[track_caller]
pub fn recv_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => panic!(
                "connection closed after {:?}",
                String::from_utf8_lossy(&line)
            ),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(err) => panic!("no line (got {:?}): {err}", String::from_utf8_lossy(&line)),
        }
    }
    String::from_utf8(line).expect("a UTF-8 line")
}

/// Read exactly as many bytes as `want` holds and check they are `want`.
#[track_caller]
pub fn expect_reply(stream: &mut TcpStream, want: &[u8]) {
    let got = recv_exact(stream, want.len());
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
}

/// Check the server closes the connection cleanly with nothing more to say.
#[track_caller]
pub fn expect_eof(stream: &mut TcpStream) {
    let rest = recv_to_end(stream);
    assert!(
        rest.is_empty(),
        "bytes after the last reply: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Assert that nothing arrives on `stream` within `wait` (the connection stays open).
#[track_caller]
pub fn assert_silent(stream: &mut TcpStream, wait: Duration) {
    stream
        .set_read_timeout(Some(wait))
        .expect("set a read timeout");
    let mut byte = [0u8; 64];
    match stream.read(&mut byte) {
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        Ok(0) => panic!("expected silence, the connection was closed"),
        Ok(n) => panic!(
            "expected silence, got {:?}",
            String::from_utf8_lossy(&byte[..n])
        ),
        Err(err) => panic!("expected silence, got an error: {err}"),
    }
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("set a read timeout");
}

/// Close the write side, telling the server this client has finished sending.
#[track_caller]
pub fn finish_sending(stream: &TcpStream) {
    stream
        .shutdown(Shutdown::Write)
        .expect("shut down the write side");
}

/// Connect with a small fixed receive buffer (`SO_RCVBUF`, set before connecting, which
/// also turns off receive autotuning), so the kernel cannot absorb much of what the
/// server sends: a client that does not read then pushes the burden onto the server.
#[track_caller]
pub fn connect_small_rcvbuf(addr: SocketAddr, bytes: usize) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("socket");
    socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    socket
        .connect_timeout(&addr.into(), PATIENCE)
        .unwrap_or_else(|err| panic!("cannot connect to {addr}: {err}"));
    let stream: TcpStream = socket.into();
    set_timeouts(&stream, PATIENCE);
    stream
}

/// Set both socket timeouts of `stream`.
#[track_caller]
pub fn set_timeouts(stream: &TcpStream, timeout: Duration) {
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .expect("set socket timeouts");
}

/// Send `payload` and check that exactly the same bytes come back.
#[track_caller]
pub fn echo_roundtrip(stream: &mut TcpStream, payload: &[u8]) {
    stream.write_all(payload).expect("write to echo server");
    let mut back = vec![0; payload.len()];
    stream
        .read_exact(&mut back)
        .expect("read the echo back within the timeout");
    assert!(back == payload, "echo returned different bytes");
}

/// Write `payload`, half-close, and return everything the server sends until it closes.
#[track_caller]
pub fn send_and_half_close(stream: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
    // A writer thread, so that a large payload cannot deadlock against a large reply.
    let mut writer = stream.try_clone().expect("clone the client socket");
    let payload = payload.to_vec();
    let sending = thread::spawn(move || {
        writer.write_all(&payload)?;
        writer.shutdown(Shutdown::Write)
    });
    let reply = recv_to_end(stream);
    sending
        .join()
        .expect("writer thread")
        .expect("write the payload and half-close");
    reply
}

/// How a client socket ended, as seen by one nonblocking check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Still open: a read would block.
    Open,
    /// The server closed it (EOF) or reset it.
    Closed,
}

/// Look at `stream` without blocking: discard whatever it has to read and report whether
/// the server has closed it. `stream` must be nonblocking.
pub fn poll_closed(stream: &mut TcpStream) -> Peer {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Peer::Closed,
            Ok(_) => continue,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Peer::Open,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Peer::Closed,
        }
    }
}

/// How long apart [`trickle_until_closed`] sends its bytes: a byte at a time, a message of
/// a few hundred bytes takes many times as long as the deadlines tests set.
pub const TRICKLE: Duration = Duration::from_millis(20);

/// What a trickle saw.
#[derive(Debug)]
pub struct Trickled {
    /// Bytes sent before the server's close was seen.
    pub sent: usize,
    /// Every byte the server sent, up to its EOF.
    pub received: Vec<u8>,
}

/// Send `bytes` one at a time, [`TRICKLE`] apart, until the server closes the connection
/// (or every byte is sent). The close is seen as a failed write (a closed socket answers
/// a byte with a reset) or, with `eof_ends`, as the server's EOF or reset on reading.
#[track_caller]
pub fn trickle_until_closed(stream: &TcpStream, bytes: &[u8], eof_ends: bool) -> Trickled {
    let closed = Arc::new(AtomicBool::new(false));
    let mut reader = stream.try_clone().expect("clone the client socket");
    let seen = Arc::clone(&closed);
    let reading = thread::spawn(move || {
        let mut received = Vec::new();
        let mut buf = [0; 4096];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            received.extend_from_slice(&buf[..n]);
        }
        seen.store(true, Ordering::SeqCst);
        received
    });
    let mut sent = 0;
    for &byte in bytes {
        if eof_ends && closed.load(Ordering::SeqCst) {
            break;
        }
        if (&*stream).write_all(&[byte]).is_err() {
            break;
        }
        sent += 1;
        thread::sleep(TRICKLE);
    }
    // What the reader waits for comes with the server's close (or its read timeout).
    let _ = stream.shutdown(Shutdown::Write);
    let received = reading.join().expect("the trickle's reader");
    Trickled { sent, received }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Length of the `Date: <IMF-fixdate>\r\n` line an HTTP reply carries after its status line.
pub const HTTP_DATE_LINE: usize = 37;

/// `bytes` without their `Date` header lines (each checked to be a 29-byte IMF-fixdate).
#[track_caller]
pub fn without_http_dates(bytes: &[u8]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = rest.windows(8).position(|w| w == b"\r\nDate: ") {
        let line = &rest[at + 2..(at + 2 + HTTP_DATE_LINE).min(rest.len())];
        assert!(
            line.len() == HTTP_DATE_LINE && line.ends_with(b" GMT\r\n"),
            "not a Date line: {:?}",
            String::from_utf8_lossy(line)
        );
        kept.extend_from_slice(&rest[..at + 2]);
        rest = &rest[at + 2 + HTTP_DATE_LINE..];
    }
    kept.extend_from_slice(rest);
    kept
}

/// Read the HTTP replies `want` holds, each final one with a `Date` line after its status
/// line (`want` is written without them), and check they are `want`.
#[track_caller]
pub fn expect_http_reply(stream: &mut TcpStream, want: &[u8]) {
    let text = String::from_utf8_lossy(want);
    let dated = text.matches("HTTP/1.1 ").count() - text.matches("HTTP/1.1 1").count();
    let got = recv_exact(stream, want.len() + dated * HTTP_DATE_LINE);
    assert_eq!(
        String::from_utf8_lossy(&without_http_dates(&got)),
        text,
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}
