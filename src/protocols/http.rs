//! HTTP/1.1: a tiny server that answers every request with one short plain-text body.
//!
//! This module owns request framing (on `httparse`), persistence (keep-alive, `Connection:
//! close`, HTTP/1.0), skipping request bodies, and the error replies (400, 431, 501 for
//! `CONNECT` and `Transfer-Encoding`). It
//! serves no files and routes nothing: every path gets the same body, which makes it a fair
//! benchmark opponent for a web server's `return 200 "..."`. It must not touch sockets.
//!
//! Framing keeps "need more bytes" (`httparse` says `Partial`) apart from real errors, so a
//! request split across any number of reads is answered exactly as if it came whole.
//! A line may end in a bare LF as well as CRLF: RFC 9112 (section 2.2) lets a recipient
//! accept a lone LF, and nginx and `httparse` do; replies always use CRLF.
//!
//! Each `data` call answers one request (or skips what has arrived of one body), so a
//! server model can stop between requests once unsent output passes its high-water mark;
//! it calls again at once while input remains, and output accumulates across those calls,
//! so the replies to a pipelined batch still leave in one write. Nothing is allocated per
//! request: the header array lives on the stack and replies are byte strings built once,
//! when the handler is made. A session is two fixed-size fields, whatever a client sent.

use std::cmp::min;
use std::mem::MaybeUninit;
use std::time::Duration;

use crate::{Context, Handler};

/// The largest request head (request line and headers) accepted; a longer one gets
/// `431 Request Header Fields Too Large` and the connection is closed.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most headers one request may carry (the stack array handed to `httparse`); more get
/// `431` too.
pub const MAX_HEADERS: usize = 64;

/// How long a request head may take to arrive once its first byte has, by default (nginx's
/// `client_header_timeout`); then the client gets `408` and is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// The idle timeout an HTTP server should run with (`Config::idle_timeout`; nginx's
/// `keepalive_timeout`): how long a keep-alive connection may wait for its next request.
/// `tcp-reactor serve --protocol http` uses it unless told otherwise.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);

/// Reply to a client whose request head did not arrive within the header timeout.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\n\
Content-Length: 16\r\nConnection: close\r\n\r\nRequest Timeout\n";

/// The body [`Http::default`] serves.
pub const HELLO: &[u8] = b"Hello, world!\n";

/// Reply to a request that is not HTTP/1.x, is malformed, or has a bad `Content-Length`.
const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 12\r\nConnection: close\r\n\r\nBad Request\n";

/// Reply to a head longer than [`MAX_HEAD`] or with more than [`MAX_HEADERS`] headers.
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
Content-Type: text/plain\r\nContent-Length: 32\r\nConnection: close\r\n\r\n\
Request Header Fields Too Large\n";

/// Interim reply to an HTTP/1.1 request with a body and `Expect: 100-continue`: the client
/// waits for it before sending the body.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Sent to a client refused because the server is full, before it is closed.
pub const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 20\r\nConnection: close\r\n\r\nService Unavailable\n";

/// Reply to `CONNECT` (no tunnels) and to a request with a `Transfer-Encoding` (chunked
/// bodies are not decoded).
const NOT_IMPLEMENTED: &[u8] = b"HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\n\
Content-Length: 16\r\nConnection: close\r\n\r\nNot Implemented\n";

/// Serves one fixed `text/plain` body to every request, over keep-alive connections.
///
/// - Any method and any path get `200 OK` with the body; `HEAD` gets the same head and no
///   body.
/// - HTTP/1.1 keeps the connection open unless the request says `Connection: close`;
///   HTTP/1.0 closes it unless the request says `Connection: keep-alive`.
/// - A request body announced by `Content-Length` is read and discarded; the reply follows
///   it (after a `100 Continue` when the request asked for one).
/// - A malformed request gets `400`, an oversized head `431`, `CONNECT` or a
///   `Transfer-Encoding` `501`; each of these closes the connection after the reply.
/// - A client refused because the server is full gets `503` ([`BUSY`]).
///
/// ```no_run
/// use tcp_reactor::{protocols::Http, Server};
///
/// let running = Server::new(Http::default()).bind("127.0.0.1:8080".parse().unwrap())?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Http {
    /// Ready-made `200` replies, indexed by `[head only][Persist]`.
    replies: [[Box<[u8]>; 3]; 2],
    /// How long a started request head may take to complete ([`HEADER_TIMEOUT`]).
    header_timeout: Option<Duration>,
    /// While set, every reply closes its connection (`Connection: close`): a drain.
    draining: Option<crate::Draining>,
}

/// Per-connection state: the request being received.
#[derive(Debug, Default)]
pub struct HttpSession {
    /// Bytes of the current request's body not yet received; they are skipped.
    body_left: u64,
    /// The request whose reply is due once its body is in.
    pending: Option<Head>,
    /// The header timer runs: part of a request head has arrived.
    head_timer: bool,
}

/// What a reply says about the connection, and so which `Connection` header it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persist {
    /// HTTP/1.1 default: stays open, no header needed.
    Open = 0,
    /// Closes after this reply: `Connection: close`.
    Close = 1,
    /// HTTP/1.0 that asked to stay open: `Connection: keep-alive`.
    KeepAlive = 2,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Malformed: 400.
    BadRequest,
    /// Head too long or too many headers: 431.
    TooLarge,
    /// `CONNECT`, or a transfer coding we do not decode: 501.
    NotImplemented,
}

/// What the head of one request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// Bytes of the request line and headers, including the blank line.
    len: usize,
    /// `HEAD` request: no body in the reply.
    head_only: bool,
    /// Keep the connection afterwards, and how to say so.
    persist: Persist,
    /// Request body bytes that follow the head.
    body: u64,
    /// The client waits for `100 Continue` before sending the body.
    expect_continue: bool,
}

/// The outcome of framing the front of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// A whole request head is here.
    Request(Head),
    /// The head is not complete yet (and not too long yet).
    NeedMore,
    /// The bytes can never become an acceptable request.
    Refused(Refusal),
}

impl Default for Http {
    /// Serves [`HELLO`].
    fn default() -> Self {
        Http::with_body(HELLO)
    }
}

impl Http {
    /// A server that answers every request with `body` as `text/plain`.
    pub fn with_body(body: &[u8]) -> Self {
        let reply = |head_only: bool, persist: Persist| -> Box<[u8]> {
            let connection = match persist {
                Persist::Open => "",
                Persist::Close => "Connection: close\r\n",
                Persist::KeepAlive => "Connection: keep-alive\r\n",
            };
            let mut bytes = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{connection}\r\n",
                body.len()
            )
            .into_bytes();
            if !head_only {
                bytes.extend_from_slice(body);
            }
            bytes.into_boxed_slice()
        };
        let row = |head_only| {
            [
                reply(head_only, Persist::Open),
                reply(head_only, Persist::Close),
                reply(head_only, Persist::KeepAlive),
            ]
        };
        Http {
            replies: [row(false), row(true)],
            header_timeout: Some(HEADER_TIMEOUT),
            draining: None,
        }
    }

    /// The same server, which closes each keep-alive connection after its next reply
    /// (`Connection: close`) while `draining` is set, as nginx does as it stops: no client
    /// is cut off mid-request, and each reconnects elsewhere.
    pub fn with_draining(mut self, draining: crate::Draining) -> Self {
        self.draining = Some(draining);
        self
    }

    /// The same server with another header timeout (`None`: wait for a head forever).
    pub fn with_header_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Queue the reply to `head`, whose body has been skipped, and close after it if the
    /// request said so.
    fn answer(&self, ctx: &mut Context<'_>, head: &Head) {
        let persist = match &self.draining {
            Some(draining) if draining.is_draining() => Persist::Close,
            _ => head.persist,
        };
        ctx.write(&self.replies[usize::from(head.head_only)][persist as usize]);
        if persist == Persist::Close {
            ctx.close();
        }
    }
}

impl Handler for Http {
    type Session = HttpSession;

    fn open(&self, _ctx: &mut Context<'_>) -> HttpSession {
        HttpSession::default()
    }

    /// Answers the request at the front of `input`, or skips what is here of its body;
    /// returns the bytes that took.
    fn data(&self, session: &mut HttpSession, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        if let Some(head) = session.pending {
            // `skip <= input.len()`, which is a `usize`, so this cannot truncate.
            let skip = min(session.body_left, input.len() as u64) as usize;
            session.body_left -= skip as u64;
            if session.body_left == 0 {
                session.pending = None;
                self.answer(ctx, &head);
            }
            return skip;
        }
        let framed = frame(input);
        if session.head_timer && !matches!(framed, Frame::NeedMore) {
            session.head_timer = false;
            ctx.cancel_timer();
        }
        match framed {
            Frame::Request(head) if head.body == 0 => {
                self.answer(ctx, &head);
                head.len
            }
            Frame::Request(head) => {
                if head.expect_continue {
                    ctx.write(CONTINUE);
                }
                session.body_left = head.body;
                session.pending = Some(head);
                head.len
            }
            Frame::NeedMore => {
                // A head has begun: it has this long to complete. Only partial heads arm
                // the timer, so whole requests cost no timer at all.
                if let Some(timeout) = self.header_timeout
                    && !input.is_empty()
                    && !session.head_timer
                {
                    session.head_timer = true;
                    ctx.set_timer(timeout);
                }
                0
            }
            Frame::Refused(refusal) => {
                ctx.write(match refusal {
                    Refusal::BadRequest => BAD_REQUEST,
                    Refusal::TooLarge => TOO_LARGE,
                    Refusal::NotImplemented => NOT_IMPLEMENTED,
                });
                ctx.close();
                // Nothing after a refused request can be framed; drop it all.
                input.len()
            }
        }
    }

    /// A request head took longer than the header timeout: `408`, then close.
    fn timer(&self, session: &mut HttpSession, ctx: &mut Context<'_>) {
        if session.head_timer {
            ctx.write(REQUEST_TIMEOUT);
            ctx.close();
        }
    }

    /// `503 Service Unavailable`.
    fn busy_reply(&self) -> &[u8] {
        BUSY
    }
}

/// Frame the request at the front of `input`: a whole head, "need more", or a refusal.
///
/// The answer for a prefix never contradicts the answer for the whole: a head is refused
/// as too large by its length alone, whether it arrived whole or in pieces.
fn frame(input: &[u8]) -> Frame {
    // Left uninitialised: httparse fills only the headers it finds, so a request with one
    // header does not pay for clearing all MAX_HEADERS slots (2 KiB) first.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    // Only the first MAX_HEAD bytes are parsed: a head not done by then is too large,
    // whatever comes after (a malformed byte there would make it a 400 when read whole,
    // but a 431 when read in pieces that pass the limit before that byte arrives).
    let window = &input[..input.len().min(MAX_HEAD)];
    let len = match request.parse_with_uninit_headers(window, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        // Everything buffered belongs to this unfinished head.
        Ok(httparse::Status::Partial) if input.len() <= MAX_HEAD => return Frame::NeedMore,
        Ok(httparse::Status::Partial) => return Frame::Refused(Refusal::TooLarge),
        Err(httparse::Error::TooManyHeaders) => return Frame::Refused(Refusal::TooLarge),
        Err(_) => return Frame::Refused(Refusal::BadRequest),
    };
    match read_head(&request, len) {
        Ok(head) => Frame::Request(head),
        Err(refusal) => Frame::Refused(refusal),
    }
}

/// Read what matters from a parsed head: method, persistence and body length.
fn read_head(request: &httparse::Request<'_, '_>, len: usize) -> Result<Head, Refusal> {
    if request.method == Some("CONNECT") {
        // A 2xx to CONNECT means "tunnel established" (RFC 9110, 9.3.6); this server
        // tunnels nothing, for any target.
        return Err(Refusal::NotImplemented);
    }
    let mut body = None;
    let mut close = false;
    let mut keep_alive = false;
    let mut expect_continue = false;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let length = parse_length(header.value).ok_or(Refusal::BadRequest)?;
            // Two different lengths make the framing ambiguous (request smuggling).
            if body.is_some_and(|seen| seen != length) {
                return Err(Refusal::BadRequest);
            }
            body = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Refusal::NotImplemented);
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = header
                .value
                .trim_ascii()
                .eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("connection") {
            for option in header.value.split(|&byte| byte == b',') {
                let option = option.trim_ascii();
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let persist = match request.version {
        Some(1) if !close => Persist::Open,
        Some(0) if keep_alive && !close => Persist::KeepAlive,
        _ => Persist::Close,
    };
    Ok(Head {
        len,
        head_only: request.method == Some("HEAD"),
        persist,
        body: body.unwrap_or(0),
        // HTTP/1.0 clients do not know interim replies (RFC 9110, 15.2).
        expect_continue: expect_continue && request.version == Some(1),
    })
}

/// Parse a `Content-Length` value: decimal digits only, at most 18 of them (no sign, no
/// spaces inside, no overflow).
fn parse_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0, |n, &digit| n * 10 + u64::from(digit - b'0')),
    )
}

#[cfg(test)]
mod tests;
