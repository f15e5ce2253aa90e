//! HTTP/1.1: a tiny server that answers every request with one short plain-text body.
//!
//! This module owns persistence (keep-alive, `Connection: close`, HTTP/1.0), skipping
//! request bodies (`Content-Length` or chunked, decoded in `chunked`), the `Date` line
//! (cached per second in `date`) and the replies, errors included (400, 414, 431, 501,
//! 505). Framing a head, with the checks RFC 9112 makes a server's duty (`Host`, the
//! version, the request target), lives in `head`, on `httparse`. It serves no files and
//! routes nothing: every path gets the same body, which makes it a fair benchmark opponent
//! for a web server's `return 200 "..."`. It must not touch sockets.
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
//! when the handler is made, with the cached `Date` line copied in after the status line.
//! A session is three fixed-size fields, whatever a client sent.

use std::cmp::min;
use std::time::Duration;

use crate::{Context, Handler};

mod chunked;
mod date;
mod head;

#[cfg(feature = "fuzzing")]
pub(crate) use date::freeze as freeze_date;

use chunked::Step;
use head::{Body, Frame, Head, Persist, Refusal, frame};

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

/// Reply to a request line longer than [`MAX_HEAD`].
const URI_TOO_LONG: &[u8] = b"HTTP/1.1 414 URI Too Long\r\nContent-Type: text/plain\r\n\
Content-Length: 13\r\nConnection: close\r\n\r\nURI Too Long\n";

/// Reply to a request of a major version other than 1 (`HTTP/2.0` on a 1.1 connection).
const VERSION_NOT_SUPPORTED: &[u8] = b"HTTP/1.1 505 HTTP Version Not Supported\r\n\
Content-Type: text/plain\r\nContent-Length: 27\r\nConnection: close\r\n\r\n\
HTTP Version Not Supported\n";

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

/// Reply to `CONNECT` (no tunnels) and to a request with a transfer coding other than
/// `chunked`.
const NOT_IMPLEMENTED: &[u8] = b"HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\n\
Content-Length: 16\r\nConnection: close\r\n\r\nNot Implemented\n";

/// Serves one fixed `text/plain` body to every request, over keep-alive connections.
///
/// - Any method and any path get `200 OK` with the body; `HEAD` gets the same head and no
///   body.
/// - HTTP/1.1 keeps the connection open unless the request says `Connection: close`;
///   HTTP/1.0 closes it unless the request says `Connection: keep-alive`.
/// - A request body, announced by `Content-Length` or sent chunked, is read and discarded;
///   the reply follows it (after a `100 Continue` when the request asked for one).
/// - Every reply but `100` and [`BUSY`] carries a `Date` line.
/// - A malformed request gets `400`: bad syntax, a bad chunked body, an HTTP/1.1 request
///   without `Host`, more than one `Host` or an invalid one, `*` as the target of anything
///   but `OPTIONS`. A request line over [`MAX_HEAD`] gets `414`, any other oversized head
///   `431`, `CONNECT` or a transfer coding other than `chunked` `501`, a major version
///   other than 1 `505`; each of these closes the connection after the reply. A 1.x
///   version above 1.1 is served as 1.1 (RFC 9110, 2.5).
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
    /// Where the current request's body is: bytes of it still to skip, or the chunked
    /// decoder's stage.
    body: Body,
    /// The request whose reply is due once its body is in.
    pending: Option<Head>,
    /// The header timer runs: part of a request head has arrived.
    head_timer: bool,
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
        write_dated(
            ctx,
            &self.replies[usize::from(head.head_only)][persist as usize],
        );
        if persist == Persist::Close {
            ctx.close();
        }
    }

    /// Skip what is here of the current request's body, answering it once the body ends;
    /// returns the bytes taken.
    fn skip_body(&self, session: &mut HttpSession, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let (taken, done) = match session.body {
            Body::None => (0, true),
            Body::Length(left) => {
                // `skip <= input.len()`, which is a `usize`, so this cannot truncate.
                let skip = min(left, input.len() as u64) as usize;
                session.body = Body::Length(left - skip as u64);
                (skip, left == skip as u64)
            }
            Body::Chunked(stage) => match chunked::step(stage, input) {
                Step::Took(taken, next) => {
                    session.body = Body::Chunked(next);
                    (taken, false)
                }
                Step::Done(taken) => (taken, true),
                Step::NeedMore => (0, false),
                Step::Bad => {
                    session.body = Body::None;
                    session.pending = None;
                    refuse(ctx, Refusal::BadRequest);
                    return input.len();
                }
            },
        };
        if done {
            session.body = Body::None;
            if let Some(head) = session.pending.take() {
                self.answer(ctx, &head);
            }
        }
        taken
    }
}

/// Queue `reply` with the `Date` line after its status line.
fn write_dated(ctx: &mut Context<'_>, reply: &[u8]) {
    let status = reply
        .iter()
        .position(|&byte| byte == b'\n')
        .map_or(0, |lf| lf + 1);
    let date = date::date_line(ctx.now());
    // One write of the whole reply where it fits a small buffer (every reply but a large
    // body does): one append to the connection's output instead of three.
    let mut whole = [0u8; DATED_REPLY_MAX];
    let len = reply.len() + date.len();
    if len <= DATED_REPLY_MAX {
        whole[..status].copy_from_slice(&reply[..status]);
        whole[status..status + date.len()].copy_from_slice(&date);
        whole[status + date.len()..len].copy_from_slice(&reply[status..]);
        ctx.write(&whole[..len]);
    } else {
        ctx.write(&reply[..status]);
        ctx.write(&date);
        ctx.write(&reply[status..]);
    }
}

/// The longest dated reply assembled on the stack before it is written.
const DATED_REPLY_MAX: usize = 256;

/// Answer a refused request and close: nothing after it can be framed.
fn refuse(ctx: &mut Context<'_>, refusal: Refusal) {
    write_dated(
        ctx,
        match refusal {
            Refusal::BadRequest => BAD_REQUEST,
            Refusal::TooLarge => TOO_LARGE,
            Refusal::UriTooLong => URI_TOO_LONG,
            Refusal::VersionNotSupported => VERSION_NOT_SUPPORTED,
            Refusal::NotImplemented => NOT_IMPLEMENTED,
        },
    );
    ctx.close();
}

impl Handler for Http {
    type Session = HttpSession;

    fn open(&self, _ctx: &mut Context<'_>) -> HttpSession {
        HttpSession::default()
    }

    /// Answers the request at the front of `input`, or skips what is here of its body;
    /// returns the bytes that took.
    fn data(&self, session: &mut HttpSession, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        if session.pending.is_some() {
            return self.skip_body(session, ctx, input);
        }
        let framed = frame(input);
        if session.head_timer && !matches!(framed, Frame::NeedMore) {
            session.head_timer = false;
            ctx.cancel_timer();
        }
        match framed {
            Frame::Request(head) if head.body == Body::None => {
                self.answer(ctx, &head);
                head.len
            }
            Frame::Request(head) => {
                if head.expect_continue {
                    ctx.write(CONTINUE);
                }
                session.body = head.body;
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
                refuse(ctx, refusal);
                // Nothing after a refused request can be framed; drop it all.
                input.len()
            }
        }
    }

    /// A request head took longer than the header timeout: `408`, then close.
    fn timer(&self, session: &mut HttpSession, ctx: &mut Context<'_>) {
        if session.head_timer {
            write_dated(ctx, REQUEST_TIMEOUT);
            ctx.close();
        }
    }

    /// `503 Service Unavailable` (without `Date`, which RFC 9110 (6.6.1) leaves optional
    /// on a 5xx: this reply is one fixed string).
    fn busy_reply(&self) -> &[u8] {
        BUSY
    }
}

#[cfg(test)]
mod tests;
