//! One load connection: its socket, the messages in flight, and the check of every echoed
//! byte.
//!
//! This module owns the I/O of a single connection and classifies each I/O result; it must
//! not decide when the run starts or stops (that is the worker's job) nor print anything.

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use super::pattern;
use super::socket::Socket;
use super::tally::{Failure, Tally};
use crate::io::transport::Transport;
use crate::rules::ReadOutcome;

/// What one `read` or `write` call meant for this connection.
enum Step {
    /// Bytes moved; try again.
    Moved(usize),
    /// The kernel has nothing more for now: wait for the next readiness event.
    Blocked,
    /// The peer closed its side (`read` returned 0).
    Closed,
    /// A real error: the connection is finished.
    Failed(io::Error),
}

/// Classify an I/O result in one place.
fn classify(result: io::Result<usize>) -> Option<Step> {
    match result {
        // A read of 0 bytes is the peer's EOF; a write of 0 cannot happen on a socket with
        // bytes to send, so treat it the same way (the peer is gone).
        Ok(0) => Some(Step::Closed),
        Ok(n) => Some(Step::Moved(n)),
        // Not an error: the socket buffer is empty (read) or full (write).
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(Step::Blocked),
        // A signal interrupted the call before it moved anything: just call it again.
        Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
        // Reset, broken pipe and the rest end this connection (and only this one).
        Err(e) => Some(Step::Failed(e)),
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// The nonblocking `connect` has been issued; waiting for it to complete.
    Connecting,
    /// Connected, exchanging messages.
    Open,
    /// Finished (normally or not); its socket has been dropped.
    Done,
}

/// One client connection of the load generator.
#[derive(Debug)]
pub(crate) struct Client {
    /// The socket; `None` once the connection is done.
    stream: Option<Socket>,
    /// What the bytes travel through: the socket itself, or TLS.
    transport: Transport,
    /// Global index of this connection: seeds its message pattern.
    id: u64,
    /// Where the connection is in its life.
    pub(crate) state: State,
    /// True until the echo of the warm-up message has arrived: it proves the server
    /// serves this connection, and is neither timed nor counted.
    warming: bool,
    /// Messages this connection may still queue; `None` means no limit (duration mode).
    quota: Option<u64>,
    /// Messages queued so far: the sequence number of the next message.
    queued: u64,
    /// Echoed bytes verified so far (the stream offset of the next expected byte).
    verified: u64,
    /// When each message still in flight was queued for sending, oldest first.
    in_flight: VecDeque<Instant>,
    /// Bytes queued but not yet accepted by the kernel.
    out: Vec<u8>,
    /// How much of `out` has already been written.
    out_pos: usize,
}

impl Client {
    /// A connection whose nonblocking connect has been issued.
    pub(crate) fn connecting(stream: Socket, id: u64, quota: Option<u64>) -> Self {
        Client {
            stream: Some(stream),
            transport: Transport::Plain,
            id,
            state: State::Connecting,
            warming: false,
            quota,
            queued: 0,
            verified: 0,
            in_flight: VecDeque::new(),
            out: Vec::new(),
            out_pos: 0,
        }
    }

    /// The same connection, its bytes going through `transport`.
    #[cfg(feature = "tls")]
    pub(crate) fn over(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Global index of this connection.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Messages sent whose echo has not fully arrived.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// True while connecting or waiting for the warm-up echo.
    pub(crate) fn is_pending(&self) -> bool {
        self.state == State::Connecting || (self.state == State::Open && self.warming)
    }

    /// Send the warm-up message (sequence 0): not counted, not timed, but verified.
    pub(crate) fn start_warmup(&mut self, size: usize, tally: &mut Tally) {
        self.warming = true;
        self.out.resize(size, 0);
        pattern::fill(self.id, 0, &mut self.out);
        self.queued = 1;
        self.in_flight.push_back(Instant::now());
        self.flush(tally);
    }

    /// True when this connection may queue no further message.
    pub(crate) fn quota_spent(&self) -> bool {
        self.quota == Some(0)
    }

    /// After a readiness event while connecting: `Ok(true)` once connected, `Ok(false)` if
    /// the event was spurious and the connect is still in progress, `Err` if it failed.
    pub(crate) fn finish_connect(&mut self) -> io::Result<bool> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::other("connection already closed"));
        };
        let connected = stream.connected()?;
        if connected {
            self.state = State::Open;
        }
        Ok(connected)
    }

    /// Queue messages until `pipeline` are in flight (or the quota is spent), then write.
    pub(crate) fn top_up(&mut self, pipeline: usize, size: usize, tally: &mut Tally) {
        // Latency starts here: the message is written right after it is queued.
        let mut now = None;
        while self.in_flight.len() < pipeline && !self.quota_spent() {
            let start = self.out.len();
            self.out.resize(start + size, 0);
            pattern::fill(self.id, self.queued, &mut self.out[start..]);
            self.queued += 1;
            if let Some(left) = self.quota.as_mut() {
                *left -= 1;
            }
            self.in_flight
                .push_back(*now.get_or_insert_with(Instant::now));
            tally.sent += 1;
        }
        self.flush(tally);
    }

    /// Stop queuing new messages (the run is ending); those in flight are still awaited.
    pub(crate) fn stop_sending(&mut self) {
        self.quota = Some(0);
    }

    /// Write queued bytes until done or the socket is full.
    pub(crate) fn flush(&mut self, tally: &mut Tally) {
        while self.out_pos < self.out.len() {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let written = self.transport.write(stream, &self.out[self.out_pos..]);
            let Some(step) = classify(written) else {
                continue;
            };
            match step {
                Step::Moved(n) => self.out_pos += n,
                Step::Blocked => return,
                Step::Closed => {
                    return self.fail(
                        tally,
                        Failure::ClosedEarly,
                        "peer closed while we were writing",
                    );
                }
                Step::Failed(e) => return self.fail_io(tally, "write", &e),
            }
        }
        // Everything left: reuse the buffer from the start.
        self.out.clear();
        self.out_pos = 0;
        // TLS records the socket did not take yet go on the next call.
        if let Some(stream) = self.stream.as_mut()
            && let Err(e) = self.transport.push(stream)
        {
            self.fail_io(tally, "write", &e);
        }
    }

    /// Read and verify everything the socket has; record each completed message.
    /// `buf` is the worker's shared read buffer. `drain` is set when the readiness event
    /// said the peer closed its side (or the socket has an error): then read on until EOF
    /// or `WouldBlock`, since no further edge will come for what is left.
    pub(crate) fn receive(
        &mut self,
        buf: &mut [u8],
        expect: &mut Expected,
        size: usize,
        tally: &mut Tally,
        drain: bool,
    ) {
        while self.state == State::Open {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let step = match self.transport.read(stream, buf) {
                ReadOutcome::Data(n) => Step::Moved(n),
                ReadOutcome::Eof => Step::Closed,
                ReadOutcome::WouldBlock => Step::Blocked,
                ReadOutcome::Failed(e) => Step::Failed(e),
            };
            match step {
                Step::Moved(n) => {
                    self.verify(&buf[..n], expect, size, tally);
                    if n < buf.len() && !drain {
                        // A short read emptied the socket buffer. On Linux, bytes arriving
                        // later raise a new edge, so the read that would only say
                        // WouldBlock is skipped: one syscall less per message. Not when
                        // the event also reported the peer's FIN: it came with these
                        // bytes, raises no edge of its own, and only the next read sees it.
                        return;
                    }
                }
                Step::Blocked => {
                    // The TLS handshake completed: the warm-up message can go now.
                    if self.transport.take_flush_due() {
                        self.flush(tally);
                    }
                    return;
                }
                Step::Closed if self.in_flight.is_empty() && self.quota_spent() => {
                    // The peer closed after every echo we asked for arrived: not an error.
                    return self.close();
                }
                Step::Closed => {
                    let what = format!(
                        "peer closed before the run ended ({} message(s) unanswered)",
                        self.in_flight.len()
                    );
                    return self.fail(tally, Failure::ClosedEarly, &what);
                }
                Step::Failed(e) => return self.fail_io(tally, "read", &e),
            }
        }
    }

    /// Check `data` against the expected pattern, message by message.
    fn verify(&mut self, mut data: &[u8], expect: &mut Expected, size: usize, tally: &mut Tally) {
        while !data.is_empty() {
            let size64 = size as u64;
            let (seq, offset) = (self.verified / size64, (self.verified % size64) as usize);
            if seq >= self.queued {
                let what = format!("{} byte(s) arrived that were never sent", data.len());
                return self.fail(tally, Failure::Mismatch, &what);
            }
            let expect = expect.message(self.id, seq, size);
            let n = data.len().min(size - offset);
            if let Some(at) = first_difference(&data[..n], &expect[offset..offset + n]) {
                let what = format!(
                    "message {seq} byte {}: expected {:#04x}, got {:#04x}",
                    offset + at,
                    expect[offset + at],
                    data[at]
                );
                return self.fail(tally, Failure::Mismatch, &what);
            }
            self.verified += n as u64;
            if !self.warming {
                tally.bytes += n as u64;
            }
            data = &data[n..];
            if offset + n == size {
                self.complete_one(tally);
            }
        }
    }

    /// The last byte of the oldest message in flight has arrived.
    fn complete_one(&mut self, tally: &mut Tally) {
        let sent = self.in_flight.pop_front();
        if std::mem::take(&mut self.warming) {
            // The warm-up echo: the connection is served; measuring starts later.
            return;
        }
        if let Some(sent) = sent {
            let now = Instant::now();
            tally.record(now.duration_since(sent), now);
        }
    }

    /// A read or write failed with `err`: a reset or a broken pipe is the server closing
    /// the connection (with our bytes unread, or after its own close), so it counts as
    /// closed early; anything else is an I/O error.
    fn fail_io(&mut self, tally: &mut Tally, call: &str, err: &io::Error) {
        let kind = match err.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Failure::ClosedEarly,
            _ => Failure::Io,
        };
        let what = format!(
            "{call}: {err} ({} message(s) unanswered)",
            self.in_flight.len()
        );
        self.fail(tally, kind, &what);
    }

    /// Count one failure against this connection and close it.
    fn fail(&mut self, tally: &mut Tally, kind: Failure, what: &str) {
        tally.fail(kind, self.id, what);
        // Messages still awaited will never be answered: count them, they are not lost silently.
        tally.unanswered += self.in_flight.len() as u64;
        self.in_flight.clear();
        self.close();
    }

    /// Drop the socket; the connection is done.
    pub(crate) fn close(&mut self) {
        self.stream = None;
        self.state = State::Done;
        self.out = Vec::new();
        self.out_pos = 0;
    }

    /// The run's hard deadline passed with messages still in flight.
    pub(crate) fn time_out(&mut self, tally: &mut Tally) {
        let what = if self.warming {
            "no echo of the warm-up message before the connect deadline".to_string()
        } else {
            format!(
                "{} message(s) unanswered at the deadline",
                self.in_flight.len()
            )
        };
        self.fail(tally, Failure::TimedOut, &what);
    }
}

/// The expected content of the message being received, kept while its echo arrives in
/// pieces so that the pattern is generated once per message, not once per read.
#[derive(Debug, Default)]
pub(crate) struct Expected {
    /// Connection and sequence number whose content `bytes` holds.
    key: Option<(u64, u64)>,
    /// The message's bytes.
    bytes: Vec<u8>,
}

impl Expected {
    /// The content of message `seq` of connection `conn`.
    fn message(&mut self, conn: u64, seq: u64, size: usize) -> &[u8] {
        if self.key != Some((conn, seq)) || self.bytes.len() != size {
            self.bytes.resize(size, 0);
            pattern::fill(conn, seq, &mut self.bytes);
            self.key = Some((conn, seq));
        }
        &self.bytes
    }
}

/// Index of the first byte where `got` and `want` differ.
fn first_difference(got: &[u8], want: &[u8]) -> Option<usize> {
    if got == want {
        return None;
    }
    got.iter().zip(want).position(|(a, b)| a != b)
}
