//! One connection to the metrics endpoint: its socket, its input and output, its phase and
//! its deadline, and [`Conn::drive`], which moves it as far as it can go without blocking.
//!
//! A connection answers its requests one at a time, in order: the next request is parsed
//! only once the previous reply has been sent, so what it holds stays bounded (one
//! request's input, one reply's output) whatever the client does. It never sees another
//! connection, and nothing it does can block the loop.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::request::{Invalid, MAX_BODY, MAX_HEAD, Parsed, parse};
use super::response::{Response, Source};
use super::routes;

/// Most bytes of input held: one whole request at its largest.
const MAX_INPUT: usize = MAX_HEAD + MAX_BODY;

/// Longest a closing connection waits for the client's EOF after its last reply, so that
/// closing with the client's bytes unread does not reset the reply away (nginx's
/// `lingering_close`); shorter if the request timeout is.
const LINGER: Duration = Duration::from_secs(2);

/// How long after it was accepted a connection that has sent nothing yet may still send
/// its first request once the endpoint is stopping. During an upgrade the old process can
/// accept a client that connected a moment ago and whose request is still on its way;
/// closing it at once would answer that request with a reset.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request, reading it, or sending its reply; more may follow.
    Open,
    /// The last reply is queued: send it, then shut the write side.
    Closing,
    /// The write side is shut: read and drop what the client still sends, until its EOF
    /// or the deadline.
    Lingering,
}

/// What the loop should do with a connection after driving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Keep it: it waits for the socket (or for its deadline).
    Keep,
    /// Close it, for this reason (logged).
    Close(&'static str),
}

/// One client of the endpoint.
#[derive(Debug)]
pub(super) struct Conn {
    /// The socket, nonblocking, registered for read and write readiness once.
    pub(super) stream: TcpStream,
    /// Who the client is, for the log.
    pub(super) peer: SocketAddr,
    /// Input not yet answered: at most [`MAX_INPUT`] bytes.
    input: Vec<u8>,
    /// The reply being sent.
    output: Vec<u8>,
    /// Bytes of `output` already written.
    sent: usize,
    /// Where it is in its life.
    phase: Phase,
    /// When it is closed, whatever it is doing: the current request must have arrived and
    /// its reply have been taken by then, however slowly the bytes trickle.
    deadline: Instant,
    /// The client has finished sending (a read returned 0).
    peer_done: bool,
    /// The endpoint is stopping: answer the request under way, if any, then close.
    stopping: bool,
    /// When it was accepted, while it has sent no byte yet; `None` after its first byte.
    fresh_since: Option<Instant>,
}

impl Conn {
    /// A connection just accepted at `now`; its first request is due by `now + timeout`.
    pub(super) fn new(
        stream: TcpStream,
        peer: SocketAddr,
        now: Instant,
        timeout: Duration,
    ) -> Self {
        Conn {
            stream,
            peer,
            input: Vec::new(),
            output: Vec::new(),
            sent: 0,
            phase: Phase::Open,
            deadline: now + timeout,
            peer_done: false,
            stopping: false,
            fresh_since: Some(now),
        }
    }

    /// The endpoint is stopping: the request under way (received whole, or still
    /// arriving within its deadline) is answered with `Connection: close`; an idle
    /// connection closes when next driven, unless it was accepted moments ago and has sent
    /// nothing yet: that one gets until [`FIRST_REQUEST_GRACE`] after its accept.
    pub(super) fn stop(&mut self) {
        self.stopping = true;
        if let Some(accepted) = self.fresh_since {
            self.deadline = self.deadline.min(accepted + FIRST_REQUEST_GRACE);
        }
    }

    /// When the loop must close it if it has not finished by then.
    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Send, answer and read until the socket would block, the client is done, or an
    /// error; `timeout` is the time each request gets.
    ///
    /// Events are only hints: driving a connection that has nothing to do costs one read
    /// that would block, so a stale or spurious event is harmless.
    pub(super) fn drive(&mut self, now: Instant, timeout: Duration, source: &Source) -> Next {
        loop {
            // Reply first: the next request is not parsed before this one's reply is out.
            if self.sent < self.output.len() {
                match self.flush() {
                    Ok(true) => self.reply_sent(now, timeout),
                    Ok(false) => return Next::Keep,
                    Err(_) => return Next::Close("write failed"),
                }
            }
            match self.phase {
                Phase::Open => {}
                Phase::Closing => {
                    // Failure means the client is already gone; lingering finds out.
                    let _ = self.stream.shutdown(Shutdown::Write);
                    self.phase = Phase::Lingering;
                    self.deadline = self.deadline.min(now + LINGER.min(timeout));
                    continue;
                }
                Phase::Lingering => return self.drain(),
            }
            if self.answer(source) {
                continue;
            }
            if self.stopping && self.input.is_empty() && !self.awaits_first_request(now) {
                return Next::Close("the endpoint is stopping");
            }
            if self.peer_done {
                // A partial request that can never be completed: nothing to answer.
                return Next::Close("client finished sending");
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => return Next::Keep,
                Err(_) => return Next::Close("read failed"),
            }
        }
    }

    /// It has sent nothing since it was accepted, less than [`FIRST_REQUEST_GRACE`] ago.
    fn awaits_first_request(&self, now: Instant) -> bool {
        self.fresh_since
            .is_some_and(|accepted| now < accepted + FIRST_REQUEST_GRACE)
    }

    /// The deadline passed: say so when a request was under way (one attempt at `408`),
    /// and give the reason to close.
    pub(super) fn expire(&mut self) -> &'static str {
        match self.phase {
            Phase::Open if !self.input.is_empty() && self.output.is_empty() => {
                let reply = Response::text(408).to_bytes(false, true, 1);
                // One attempt: a short reply fits the socket's send buffer.
                let _ = self.stream.write(&reply);
                "request deadline passed"
            }
            Phase::Open if self.input.is_empty() && self.output.is_empty() => {
                "idle past the request deadline"
            }
            Phase::Open | Phase::Closing => "reply not taken by the deadline",
            Phase::Lingering => "no EOF by the linger deadline",
        }
    }

    /// Answer the request at the front of the input, if a whole one (or an invalid one) is
    /// there; true if a reply was queued.
    fn answer(&mut self, source: &Source) -> bool {
        let refusal = match parse(&self.input) {
            Parsed::NeedMore if self.input.len() < MAX_INPUT => return false,
            // Cannot happen (the parser refuses what could not fit), but never wait on a
            // full buffer.
            Parsed::NeedMore => routes::refuse(Invalid::HeadTooLarge),
            Parsed::Invalid(invalid) => routes::refuse(invalid),
            Parsed::Request(request) => {
                let len = request.len;
                // Stopping: every whole request already received is answered, and the
                // connection closes after the last of them.
                let more = self.stopping && matches!(parse(&self.input[len..]), Parsed::Request(_));
                let close = !request.keep_alive || (self.stopping && !more);
                let response = routes::respond(&request, source);
                let bytes =
                    response.to_bytes(request.method == "HEAD", close, request.minor_version);
                self.queue(bytes, len, close);
                return true;
            }
        };
        // Nothing after an invalid request can be framed: drop it all, and close.
        self.queue(refusal.to_bytes(false, true, 1), self.input.len(), true);
        true
    }

    /// Queue `reply` to the request that took the first `consumed` bytes of input; after
    /// it the connection closes if `close`.
    fn queue(&mut self, reply: Vec<u8>, consumed: usize, close: bool) {
        self.input.drain(..consumed);
        self.output = reply;
        self.sent = 0;
        if close {
            self.phase = Phase::Closing;
        }
    }

    /// Write queued output until it is all sent (true) or the socket would block (false).
    fn flush(&mut self) -> io::Result<bool> {
        while self.sent < self.output.len() {
            match self.stream.write(&self.output[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                // The kernel's buffer is full: a writable event will come.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                // A signal interrupted the call: try again.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(true)
    }

    /// A reply is out: free its bytes, and give an open connection's next request a
    /// deadline of its own.
    fn reply_sent(&mut self, now: Instant, timeout: Duration) {
        self.output = Vec::new();
        self.sent = 0;
        if self.phase == Phase::Open {
            self.deadline = now + timeout;
        }
    }

    /// Read once into the input, never past [`MAX_INPUT`]: true if bytes arrived or the
    /// client finished sending, false if the socket would block.
    fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 4096];
        // At least one byte: `answer` has taken a full buffer (a whole request or a
        // refusal) before a read is tried, and a read into no room would look like EOF.
        let room = (MAX_INPUT - self.input.len()).min(chunk.len());
        loop {
            match self.stream.read(&mut chunk[..room]) {
                // Zero bytes from a socket means the client closed its side.
                Ok(0) => {
                    self.peer_done = true;
                    return Ok(true);
                }
                Ok(n) => {
                    self.input.extend_from_slice(&chunk[..n]);
                    self.fresh_since = None;
                    return Ok(true);
                }
                // Nothing more for now: a readable event will come with the next bytes.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Read and drop what a lingering client sends until its EOF.
    fn drain(&mut self) -> Next {
        let mut sink = [0u8; 4096];
        loop {
            match self.stream.read(&mut sink) {
                Ok(0) => return Next::Close("closed after the last reply"),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close("reset after the last reply"),
            }
        }
    }
}
