//! HTTP/1.1: a tiny server that answers every request with one short plain-text body.
//!
//! This module owns request framing (on `httparse`), persistence (keep-alive, `Connection:
//! close`, HTTP/1.0), the checks RFC 9112 makes a server's duty (`Host`, the version, the
//! request target), skipping request bodies (`Content-Length` or chunked, decoded in
//! `chunked`), the `Date` line (cached per second in `date`), and the error replies (400,
//! 414, 431, 501, 505). It serves no files and routes nothing: every path gets the same body, which makes it a fair
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
//! when the handler is made, with the cached `Date` line copied in after the status line.
//! A session is three fixed-size fields, whatever a client sent.

use std::cmp::min;
use std::mem::MaybeUninit;
use std::time::Duration;

use crate::{Context, Handler};

mod chunked;
mod date;

#[cfg(feature = "fuzzing")]
pub(crate) use date::freeze as freeze_date;

use chunked::{Stage, Step};

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

/// How much of a request body is still to come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Body {
    /// None: the next bytes are a request head.
    #[default]
    None,
    /// `Content-Length`: this many bytes.
    Length(u64),
    /// Chunked, decoded from this stage.
    Chunked(Stage),
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
    /// Request line too long: 414.
    UriTooLong,
    /// A major version other than 1: 505.
    VersionNotSupported,
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
    /// The request body that follows the head.
    body: Body,
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

/// Frame the request at the front of `input`: a whole head, "need more", or a refusal.
///
/// The answer for a prefix never contradicts the answer for the whole: a head is refused
/// as too large by its length alone, whether it arrived whole or in pieces.
fn frame(input: &[u8]) -> Frame {
    // Only the first MAX_HEAD bytes are parsed: a head not done by then is too large,
    // whatever comes after (a malformed byte there would make it a 400 when read whole,
    // but a 431 when read in pieces that pass the limit before that byte arrives).
    let window = &input[..input.len().min(MAX_HEAD)];
    match parse(window, input.len()) {
        Err(httparse::Error::Version) => frame_other_version(window, input.len()),
        Err(_) => Frame::Refused(Refusal::BadRequest),
        Ok(framed) => framed,
    }
}

/// Parse the head in `window` (the first bytes of `total` buffered).
fn parse(window: &[u8], total: usize) -> Result<Frame, httparse::Error> {
    // Left uninitialised: httparse fills only the headers it finds, so a request with one
    // header does not pay for clearing all MAX_HEADERS slots (2 KiB) first.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(window, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        // Everything buffered belongs to this unfinished head.
        Ok(httparse::Status::Partial) if total <= MAX_HEAD => return Ok(Frame::NeedMore),
        // Too long: the request line alone, or the head as a whole.
        Ok(httparse::Status::Partial) if !window.contains(&b'\n') => {
            return Ok(Frame::Refused(Refusal::UriTooLong));
        }
        Ok(httparse::Status::Partial) => return Ok(Frame::Refused(Refusal::TooLarge)),
        Err(httparse::Error::TooManyHeaders) => return Ok(Frame::Refused(Refusal::TooLarge)),
        Err(err) => return Err(err),
    };
    Ok(match read_head(&request, len) {
        Ok(head) => Frame::Request(head),
        Err(refusal) => Frame::Refused(refusal),
    })
}

/// A request line whose version httparse does not take (it knows 1.0 and 1.1 only):
/// `HTTP/1.2` to `HTTP/1.9` are served as 1.1 (RFC 9110, 2.5: a 1.x request is processed
/// as the highest 1.x the server speaks), another `HTTP/d.d` gets 505, anything else 400.
fn frame_other_version(window: &[u8], total: usize) -> Frame {
    let Some(lf) = window.iter().position(|&byte| byte == b'\n') else {
        return match total {
            _ if total <= MAX_HEAD => Frame::NeedMore,
            _ => Frame::Refused(Refusal::UriTooLong),
        };
    };
    let line = window[..lf].strip_suffix(b"\r").unwrap_or(&window[..lf]);
    let at = line
        .iter()
        .rposition(|&byte| byte == b' ')
        .map_or(0, |sp| sp + 1);
    match line[at..] {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            // Rare: copy the head and write 1.1 over the version (same length, so every
            // offset, and the head's length, stays as it was).
            let mut copy = [0u8; MAX_HEAD];
            let copy = &mut copy[..window.len()];
            copy.copy_from_slice(window);
            copy[at + 7] = b'1';
            match parse(copy, total) {
                Ok(framed) => framed,
                Err(_) => Frame::Refused(Refusal::BadRequest),
            }
        }
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() && major != b'0' =>
        {
            Frame::Refused(Refusal::VersionNotSupported)
        }
        _ => Frame::Refused(Refusal::BadRequest),
    }
}

/// Read what matters from a parsed head: method, persistence and body, after the checks
/// RFC 9112 asks of a server (`Host`, the request target, the framing headers).
fn read_head(request: &httparse::Request<'_, '_>, len: usize) -> Result<Head, Refusal> {
    if request.method == Some("CONNECT") {
        // A 2xx to CONNECT means "tunnel established" (RFC 9110, 9.3.6); this server
        // tunnels nothing, for any target.
        return Err(Refusal::NotImplemented);
    }
    // The asterisk form is for OPTIONS only (RFC 9112, 3.2.4).
    if request.path == Some("*") && request.method != Some("OPTIONS") {
        return Err(Refusal::BadRequest);
    }
    let mut length = None;
    let mut chunked = false;
    let mut codings = false;
    let mut hosts = 0;
    let mut close = false;
    let mut keep_alive = false;
    let mut expect_continue = false;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = parse_length(header.value).ok_or(Refusal::BadRequest)?;
            // Two different lengths make the framing ambiguous (request smuggling).
            if length.is_some_and(|seen| seen != value) {
                return Err(Refusal::BadRequest);
            }
            length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in header.value.split(|&byte| byte == b',') {
                let coding = coding.trim_ascii();
                match coding {
                    // Empty list elements are allowed (RFC 9110, 5.6.1).
                    b"" => {}
                    // chunked must be last, and applied once (RFC 9112, 6.1 and 7).
                    _ if chunked => return Err(Refusal::BadRequest),
                    _ if coding.eq_ignore_ascii_case(b"chunked") => chunked = true,
                    _ => codings = true,
                }
            }
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if hosts > 1 || !valid_host(header.value) {
                return Err(Refusal::BadRequest);
            }
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
    // An HTTP/1.1 request must name its host (RFC 9112, 3.2).
    if request.version == Some(1) && hosts == 0 {
        return Err(Refusal::BadRequest);
    }
    let body = match (chunked, codings, length) {
        // A coding we do not decode, under or without chunked (RFC 9112, 6.1: 501).
        (_, true, _) if chunked || request.version == Some(1) => {
            return Err(Refusal::NotImplemented);
        }
        // Transfer-Encoding with Content-Length is a smuggling attempt until proven
        // otherwise, and in HTTP/1.0 a faulty framing (RFC 9112, 6.1): refuse both.
        (true, _, Some(_)) => return Err(Refusal::BadRequest),
        (true, _, None) if request.version == Some(0) => return Err(Refusal::BadRequest),
        (true, _, None) => Body::Chunked(Stage::Size),
        // A coding list without chunked: the body's length cannot be known (6.3).
        (false, true, _) => return Err(Refusal::BadRequest),
        (false, false, Some(0) | None) => Body::None,
        (false, false, Some(length)) => Body::Length(length),
    };
    let persist = match request.version {
        Some(1) if !close => Persist::Open,
        Some(0) if keep_alive && !close => Persist::KeepAlive,
        _ => Persist::Close,
    };
    Ok(Head {
        len,
        head_only: request.method == Some("HEAD"),
        persist,
        body,
        // HTTP/1.0 clients do not know interim replies (RFC 9110, 15.2).
        expect_continue: expect_continue && request.version == Some(1),
    })
}

/// A valid `Host` value (RFC 9110, 7.2): `uri-host [ ":" port ]`, where the host is an
/// IP literal in brackets or a reg-name (IPv4 addresses are reg-names by their bytes).
/// Not empty: this server has no use for a request without an authority.
fn valid_host(value: &[u8]) -> bool {
    let value = value.trim_ascii();
    let (host, port) = match value.iter().rposition(|&byte| byte == b':') {
        // `[v6]` alone has colons inside: only a colon after `]` starts the port.
        Some(colon) if !value.starts_with(b"[") || value[..colon].ends_with(b"]") => {
            (&value[..colon], &value[colon + 1..])
        }
        _ => (value, &b""[..]),
    };
    let host_ok = match host {
        [b'[', inner @ .., b']'] => {
            !inner.is_empty()
                && inner
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b":.vV".contains(&b))
        }
        _ => {
            !host.is_empty()
                && host
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b))
        }
    };
    host_ok && port.iter().all(u8::is_ascii_digit)
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
