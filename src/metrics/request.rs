//! The metrics endpoint's request framing: bytes in, and out a whole request, "need more
//! bytes", or a reason the bytes can never become an acceptable request.
//!
//! [`parse`] is a pure function of its input (no socket, no clock, no allocation), so the
//! endpoint calls it again after every read and a fuzz target can call it on any bytes. It
//! is public for that target only and is not a stable API.
//!
//! A line may end in a bare LF as well as CRLF, as the `http` protocol accepts (RFC 9112,
//! section 2.2). A request head is at most [`MAX_HEAD`] bytes and a body at most
//! [`MAX_BODY`], so what a connection buffers is bounded whatever a client sends.

/// The largest request head (request line, headers and the blank line) accepted; a longer
/// one is [`Invalid::HeadTooLarge`]. A scrape's head is a few hundred bytes.
pub const MAX_HEAD: usize = 8 * 1024;

/// The largest request body accepted (announced by `Content-Length`); a longer one is
/// [`Invalid::BodyTooLarge`].
pub const MAX_BODY: usize = 8 * 1024;

/// The most headers one request may carry; more are [`Invalid::HeadTooLarge`].
pub const MAX_HEADERS: usize = 32;

/// What the front of a connection's input holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole request: head and body.
    Request(Request<'a>),
    /// Not a whole request yet, but it may become one: read more.
    NeedMore,
    /// These bytes can never become an acceptable request, whatever follows.
    Invalid(Invalid),
}

/// One whole request, borrowed from the input it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The path, without the query (an absolute-form target is reduced to its path).
    pub path: &'a str,
    /// The query after `?`, or empty.
    pub query: &'a str,
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor_version: u8,
    /// The client asked to keep the connection after the reply (HTTP/1.1 unless it said
    /// `Connection: close`; HTTP/1.0 only if it said `Connection: keep-alive`).
    pub keep_alive: bool,
    /// The body (empty without `Content-Length`).
    pub body: &'a [u8],
    /// Bytes of input the request took, head and body: the next request starts there.
    pub len: usize,
}

/// Why bytes can never become an acceptable request; each maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not an HTTP/1.x request, a bad `Content-Length`, or an HTTP/1.1 request without
    /// exactly one `Host` header (RFC 9112, section 3.2): `400 Bad Request`.
    Malformed,
    /// A head longer than [`MAX_HEAD`] or with more than [`MAX_HEADERS`] headers:
    /// `431 Request Header Fields Too Large`.
    HeadTooLarge,
    /// A body longer than [`MAX_BODY`]: `413 Content Too Large`.
    BodyTooLarge,
    /// A `Transfer-Encoding` (chunked bodies are not decoded): `501 Not Implemented`.
    NotImplemented,
}

/// Frame the request at the front of `input`.
///
/// The answer for a prefix never contradicts the answer for the whole: every proper
/// prefix of a whole request is [`Parsed::NeedMore`], and a head is too large by its length
/// alone, whether it arrived whole or in pieces. So the endpoint may call this after any
/// read, and "need more" is never mistaken for an error.
pub fn parse(input: &[u8]) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    // Only the first MAX_HEAD bytes can hold an acceptable head, and looking no further
    // keeps the verdict independent of how the bytes arrived: a byte past the limit must
    // not turn a head that is too large (found on a shorter read) into a malformed one.
    let window = &input[..input.len().min(MAX_HEAD)];
    let head_len = match request.parse(window) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Complete(_)) => return Parsed::Invalid(Invalid::HeadTooLarge),
        // Everything here belongs to this unfinished head.
        Ok(httparse::Status::Partial) if input.len() <= MAX_HEAD => return Parsed::NeedMore,
        Ok(httparse::Status::Partial) => return Parsed::Invalid(Invalid::HeadTooLarge),
        Err(httparse::Error::TooManyHeaders) => return Parsed::Invalid(Invalid::HeadTooLarge),
        Err(_) => return Parsed::Invalid(Invalid::Malformed),
    };
    let (Some(method), Some(target), Some(minor_version)) =
        (request.method, request.path, request.version)
    else {
        // httparse fills all three in a complete head; be safe rather than sorry.
        return Parsed::Invalid(Invalid::Malformed);
    };
    let framing = match read_headers(request.headers) {
        Ok(framing) => framing,
        Err(invalid) => return Parsed::Invalid(invalid),
    };
    // HTTP/1.1 requires one Host header, and a server must refuse a request with none or
    // several (RFC 9112, section 3.2); HTTP/1.0 predates it.
    if minor_version == 1 && framing.hosts != 1 {
        return Parsed::Invalid(Invalid::Malformed);
    }
    // `body_len <= MAX_BODY`, so this cannot overflow.
    let len = head_len + framing.body_len;
    let Some(body) = input.get(head_len..len) else {
        return Parsed::NeedMore;
    };
    let (path, query) = split_target(target);
    Parsed::Request(Request {
        method,
        path,
        query,
        minor_version,
        keep_alive: match minor_version {
            1 => !framing.close,
            _ => framing.keep_alive && !framing.close,
        },
        body,
        len,
    })
}

/// What the headers say about the body and the connection.
#[derive(Debug, Default)]
struct Framing {
    /// Body bytes after the head.
    body_len: usize,
    /// `Connection: close`.
    close: bool,
    /// `Connection: keep-alive`.
    keep_alive: bool,
    /// How many `Host` headers the request carries.
    hosts: usize,
}

/// Read the headers that frame the request: `Content-Length`, `Transfer-Encoding` and
/// `Connection`; and count `Host`.
fn read_headers(headers: &[httparse::Header<'_>]) -> Result<Framing, Invalid> {
    let mut framing = Framing::default();
    let mut length = None;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = parse_length(header.value).ok_or(Invalid::Malformed)?;
            // Two different lengths make the framing ambiguous (request smuggling).
            if length.is_some_and(|seen| seen != value) {
                return Err(Invalid::Malformed);
            }
            length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Invalid::NotImplemented);
        } else if name.eq_ignore_ascii_case("host") {
            framing.hosts += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            for option in header.value.split(|&byte| byte == b',') {
                let option = option.trim_ascii();
                framing.close |= option.eq_ignore_ascii_case(b"close");
                framing.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    framing.body_len = match length {
        Some(length) if length > MAX_BODY as u64 => return Err(Invalid::BodyTooLarge),
        // At most MAX_BODY, which is a `usize`.
        Some(length) => length as usize,
        None => 0,
    };
    Ok(framing)
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

/// Split a request target into path and query; an absolute-form target
/// (`http://host/metrics`, which a server must accept) is reduced to its path.
fn split_target(target: &str) -> (&str, &str) {
    let origin = ["http://", "https://"]
        .iter()
        .find_map(|scheme| {
            let prefix = target.get(..scheme.len())?;
            prefix.eq_ignore_ascii_case(scheme).then(|| {
                let rest = &target[scheme.len()..];
                rest.find('/').map_or("/", |slash| &rest[slash..])
            })
        })
        .unwrap_or(target);
    origin.split_once('?').unwrap_or((origin, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request `parse` finds in `input`, or a failure naming what it found instead.
    #[track_caller]
    fn request(input: &[u8]) -> Request<'_> {
        match parse(input) {
            Parsed::Request(request) => request,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn a_scrape_is_one_whole_request_and_every_prefix_needs_more() {
        let input = b"GET /metrics?x=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\nGET /next";
        let scrape = request(input);
        assert_eq!(
            (scrape.method, scrape.path, scrape.query),
            ("GET", "/metrics", "x=1")
        );
        assert!(scrape.keep_alive);
        assert_eq!(&input[scrape.len..], b"GET /next");
        for end in 0..scrape.len {
            assert_eq!(parse(&input[..end]), Parsed::NeedMore, "prefix of {end}");
        }
    }

    #[test]
    fn lines_may_end_in_a_bare_lf() {
        let input = b"GET /metrics HTTP/1.1\nHost: h\nConnection: close\n\n";
        let scrape = request(input);
        assert_eq!(scrape.path, "/metrics");
        assert!(!scrape.keep_alive);
        assert_eq!(scrape.len, input.len());
    }

    #[test]
    fn an_http11_request_needs_exactly_one_host() {
        for input in [
            &b"GET /metrics HTTP/1.1\r\n\r\n"[..],
            b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ] {
            assert_eq!(parse(input), Parsed::Invalid(Invalid::Malformed));
        }
        // HTTP/1.0 has no Host requirement.
        assert_eq!(request(b"GET /metrics HTTP/1.0\r\n\r\n").path, "/metrics");
        assert_eq!(
            request(b"GET /metrics HTTP/1.1\r\nhost: h\r\n\r\n").path,
            "/metrics"
        );
    }

    #[test]
    fn persistence_follows_the_version_and_the_connection_header() {
        let keep = |input: &'static [u8]| request(input).keep_alive;
        assert!(keep(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
        assert!(!keep(
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n"
        ));
        assert!(!keep(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(keep(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert!(!keep(
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
    }

    #[test]
    fn a_body_is_part_of_the_request_and_waited_for() {
        let input = b"POST /step HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET";
        let post = request(input);
        assert_eq!(post.body, b"abc");
        assert_eq!(&input[post.len..], b"GET");
        assert_eq!(parse(&input[..post.len - 1]), Parsed::NeedMore);
    }

    #[test]
    fn malformed_requests_are_errors_not_need_more() {
        for input in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET /metrics HTTP/2.0\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"\x00\x01\x02",
        ] {
            assert_eq!(
                parse(input),
                Parsed::Invalid(Invalid::Malformed),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Parsed::Invalid(Invalid::NotImplemented)
        );
    }

    #[test]
    fn sizes_are_bounded_by_length_alone() {
        let mut long = b"GET /metrics HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&long), Parsed::NeedMore);
        long.push(b'a');
        assert_eq!(parse(&long), Parsed::Invalid(Invalid::HeadTooLarge));
        let mut many = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            many.extend_from_slice(b"X: y\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Parsed::Invalid(Invalid::HeadTooLarge));
        let big = format!(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(
            parse(big.as_bytes()),
            Parsed::Invalid(Invalid::BodyTooLarge)
        );
    }

    #[test]
    fn an_absolute_target_is_reduced_to_its_path() {
        let scrape = request(b"GET http://host:9100/metrics?a HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((scrape.path, scrape.query), ("/metrics", "a"));
        assert_eq!(
            request(b"GET HTTP://host HTTP/1.1\r\nHost: h\r\n\r\n").path,
            "/"
        );
    }

    #[test]
    fn a_head_too_large_is_so_however_it_was_cut() {
        // Found by the fuzz target: a head over the limit with a bad byte after it was
        // 431 when a read ended at the limit and 400 when it arrived whole.
        let mut head = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        head.resize(MAX_HEAD + 100, b'a');
        head.extend_from_slice(b"\x01\r\n\r\n");
        for len in [MAX_HEAD + 1, MAX_HEAD + 101, head.len()] {
            assert_eq!(
                parse(&head[..len]),
                Parsed::Invalid(Invalid::HeadTooLarge),
                "{len} bytes"
            );
        }
    }
}
