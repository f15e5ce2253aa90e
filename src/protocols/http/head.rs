//! Framing a request head: `httparse` over the first bytes, then the checks RFC 9112 makes
//! a server's duty (`Host`, the version, `Content-Length` against `Transfer-Encoding`),
//! giving what the head asks for or why it is refused. Nothing here writes a reply.

use std::mem::MaybeUninit;

use super::chunked::Stage;
use super::{MAX_HEAD, MAX_HEADERS};

/// How much of a request body is still to come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Body {
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
pub(super) enum Persist {
    /// HTTP/1.1 default: stays open, no header needed.
    Open = 0,
    /// Closes after this reply: `Connection: close`.
    Close = 1,
    /// HTTP/1.0 that asked to stay open: `Connection: keep-alive`.
    KeepAlive = 2,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
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
pub(super) struct Head {
    /// Bytes of the request line and headers, including the blank line.
    pub(super) len: usize,
    /// `HEAD` request: no body in the reply.
    pub(super) head_only: bool,
    /// Keep the connection afterwards, and how to say so.
    pub(super) persist: Persist,
    /// The request body that follows the head.
    pub(super) body: Body,
    /// The client waits for `100 Continue` before sending the body.
    pub(super) expect_continue: bool,
}

/// The outcome of framing the front of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Frame {
    /// A whole request head is here.
    Request(Head),
    /// The head is not complete yet (and not too long yet).
    NeedMore,
    /// The bytes can never become an acceptable request.
    Refused(Refusal),
}

/// Frame the request at the front of `input`: a whole head, "need more", or a refusal.
///
/// The answer for a prefix never contradicts the answer for the whole: a head is refused
/// as too large by its length alone, whether it arrived whole or in pieces.
pub(super) fn frame(input: &[u8]) -> Frame {
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
