//! Framing tests for [`Http`], driven without sockets through the test driver.

use proptest::prelude::*;

use super::*;
use crate::protocols::testkit::{self, Transcript, split_at};

/// `output` without its `Date` lines, each checked to be one (a 29-byte IMF-fixdate), so
/// that replies compare whatever second they were made in.
fn undated(output: &[u8]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(output.len());
    let mut rest = output;
    while let Some(at) = rest.windows(8).position(|w| w == b"\r\nDate: ") {
        let line = &rest[at + 2..at + 2 + date::DATE_LINE_LEN];
        assert!(
            line.ends_with(b" GMT\r\n"),
            "{:?}",
            line.escape_ascii().to_string()
        );
        kept.extend_from_slice(&rest[..at + 2]);
        rest = &rest[at + 2 + date::DATE_LINE_LEN..];
    }
    kept.extend_from_slice(rest);
    kept
}

/// The test driver's transcript, with the `Date` lines taken out of the output.
fn drive(http: &Http, chunks: &[&[u8]]) -> Transcript {
    let mut got = testkit::drive(http, chunks);
    got.output = undated(&got.output);
    got
}

/// One `data` call, with the `Date` lines taken out of the output.
fn one_call(http: &Http, input: &[u8]) -> (usize, Vec<u8>) {
    let (used, output) = testkit::one_call(http, input);
    (used, undated(&output))
}

/// The reply a correct server gives, written independently of the handler's table.
fn reference_reply(head_only: bool, connection: Option<&str>) -> Vec<u8> {
    let mut reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
        HELLO.len()
    );
    if let Some(value) = connection {
        reply.push_str(&format!("Connection: {value}\r\n"));
    }
    reply.push_str("\r\n");
    let mut bytes = reply.into_bytes();
    if !head_only {
        bytes.extend_from_slice(HELLO);
    }
    bytes
}

#[test]
fn error_replies_announce_their_true_length() {
    for reply in [
        BAD_REQUEST,
        TOO_LARGE,
        URI_TOO_LONG,
        VERSION_NOT_SUPPORTED,
        NOT_IMPLEMENTED,
        REQUEST_TIMEOUT,
        BUSY,
    ] {
        let text = std::str::from_utf8(reply).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{text}"
        );
    }
}

#[test]
fn get_is_answered_and_connection_stays_open() {
    let got = drive(&Http::default(), &[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]);
    assert_eq!(got.output, reference_reply(false, None));
    assert!(!got.closed);
}

#[test]
fn one_data_call_answers_one_request_so_the_model_can_stop_between_them() {
    let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let (used, output) = one_call(&Http::default(), &[&get[..], get, get].concat());
    assert_eq!((used, output), (get.len(), reference_reply(false, None)));
}

#[test]
fn head_gets_the_head_without_body() {
    let got = drive(&Http::default(), &[b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n"]);
    assert_eq!(got.output, reference_reply(true, None));
}

#[test]
fn connection_close_is_honoured_after_the_reply() {
    let got = drive(
        &Http::default(),
        &[b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"],
    );
    assert_eq!(got.output, reference_reply(false, Some("close")));
    assert!(got.closed);
}

#[test]
fn http10_closes_unless_keep_alive() {
    let got = drive(&Http::default(), &[b"GET / HTTP/1.0\r\n\r\n"]);
    assert_eq!(got.output, reference_reply(false, Some("close")));
    assert!(got.closed);
    let got = drive(
        &Http::default(),
        &[b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"],
    );
    assert_eq!(got.output, reference_reply(false, Some("keep-alive")));
    assert!(!got.closed);
}

#[test]
fn request_body_is_skipped_before_the_next_request() {
    let got = drive(
        &Http::default(),
        &[
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe",
            b"lloGET / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
        ],
    );
    let mut want = reference_reply(false, None);
    want.extend(reference_reply(false, None));
    want.extend(reference_reply(true, None));
    assert_eq!(got.output, want);
    assert_eq!(got.leftover, 0);
}

#[test]
fn close_waits_for_the_body_to_be_read() {
    let http = Http::default();
    let got = drive(
        &http,
        &[b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 4\r\n\r\nab"],
    );
    assert!(!got.closed, "closed before the body was read");
    assert!(got.output.is_empty(), "replied before the body was read");
    let got = drive(
        &http,
        &[
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 4\r\n\r\nab",
            b"cd",
        ],
    );
    assert!(got.closed);
    assert_eq!(got.output, reference_reply(false, Some("close")));
}

#[test]
fn expect_100_continue_gets_an_interim_reply_before_the_body() {
    let http = Http::default();
    let head = b"PUT /f HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    let got = drive(&http, &[head]);
    assert_eq!(got.output, CONTINUE);
    let got = drive(&http, &[head, b"abc"]);
    assert_eq!(
        got.output,
        [CONTINUE, &reference_reply(false, None)].concat()
    );
}

#[test]
fn malformed_request_gets_400_and_closes() {
    for bad in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"[..],
        b"\x00\x01\x02 / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTX/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.10\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        // RFC 9112, 3.2: no Host in 1.1, two of them, or an invalid one.
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h/path\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a@b\r\n\r\n",
        // The asterisk form belongs to OPTIONS.
        b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
        // Framing: chunked not last or twice, with Content-Length, in HTTP/1.0.
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        // A chunked body that breaks its framing.
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
    ] {
        let got = drive(&Http::default(), &[bad]);
        assert_eq!(
            got.output,
            BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert!(got.closed);
    }
}

#[test]
fn connect_and_unknown_codings_get_501_and_close() {
    for request in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        // A 200 would tell the client its tunnel is open; the TLS hello after it must not
        // be taken for a request either.
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01",
    ] {
        let got = drive(&Http::default(), &[request]);
        assert_eq!(got.output, NOT_IMPLEMENTED);
        assert!(got.closed);
    }
}

#[test]
fn every_reply_carries_a_date_after_its_status_line() {
    let output = testkit::drive(
        &Http::default(),
        &[b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n"],
    )
    .output;
    let text = String::from_utf8_lossy(&output);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{text}");
    assert!(
        text.contains("HTTP/1.1 400 Bad Request\r\nDate: "),
        "{text}"
    );
    assert_eq!(text.matches(" GMT\r\n").count(), 2, "{text}");
}

#[test]
fn minor_versions_above_1_1_are_served_as_1_1() {
    for version in ["1.2", "1.9"] {
        let request = format!("GET / HTTP/{version}\r\nHost: x\r\n\r\n");
        let got = drive(&Http::default(), &[request.as_bytes()]);
        assert_eq!(got.output, reference_reply(false, None), "{version}");
        assert!(!got.closed);
    }
    // Not before its line has ended.
    let got = drive(&Http::default(), &[b"GET / HTTP/1.2"]);
    assert!(got.output.is_empty() && !got.closed);
}

#[test]
fn other_major_versions_get_505_and_close() {
    for request in [
        &b"GET / HTTP/2.0\r\n\r\n"[..],
        b"GET / HTTP/3.0\r\nHost: x\r\n\r\n",
    ] {
        let got = drive(&Http::default(), &[request]);
        assert_eq!(got.output, VERSION_NOT_SUPPORTED);
        assert!(got.closed);
    }
}

#[test]
fn a_request_line_over_the_limit_gets_414() {
    let mut line = b"GET /".to_vec();
    line.resize(MAX_HEAD + 1, b'a');
    let got = drive(&Http::default(), &[&line]);
    assert_eq!(got.output, URI_TOO_LONG);
    assert!(got.closed);
}

#[test]
fn valid_hosts_and_options_star_are_served() {
    for host in [
        "example.com",
        "example.com:8080",
        "127.0.0.1:80",
        "[::1]:8080",
        "[::1]",
        "a-b_c~d.e",
        "x:",
    ] {
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let got = drive(&Http::default(), &[request.as_bytes()]);
        assert_eq!(got.output, reference_reply(false, None), "{host}");
    }
    let got = drive(
        &Http::default(),
        &[b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"],
    );
    assert_eq!(got.output, reference_reply(false, None));
    // HTTP/1.0 needs no Host.
    let got = drive(&Http::default(), &[b"GET / HTTP/1.0\r\n\r\n"]);
    assert_eq!(got.output, reference_reply(false, Some("close")));
}

#[test]
fn chunked_bodies_are_decoded_then_answered() {
    let wire = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n\
        GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let want = [reference_reply(false, None), reference_reply(false, None)].concat();
    let whole = drive(&Http::default(), &[wire]);
    assert_eq!(whole.output, want);
    assert_eq!(whole.leftover, 0);
    assert!(!whole.closed);
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    let split = drive(&Http::default(), &bytes);
    assert_eq!(split.output, want);
    // Not answered before the last chunk and the trailer section are in.
    let cut = wire.windows(5).position(|w| w == b"\r\n\r\nG").unwrap();
    let early = drive(&Http::default(), &[&wire[..cut + 2]]);
    assert!(early.output.is_empty() && !early.closed);
}

#[test]
fn bare_lf_line_endings_are_accepted() {
    let got = drive(
        &Http::default(),
        &[b"GET / HTTP/1.1\nHost: x\n\nHEAD / HTTP/1.1\r\nHost: x\n\r\n"],
    );
    let want = [reference_reply(false, None), reference_reply(true, None)].concat();
    assert_eq!(got.output, want);
    assert!(!got.closed);
}

#[test]
fn oversized_head_gets_431_even_before_it_ends() {
    let mut head = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
    head.resize(MAX_HEAD + 1, b'a');
    let got = drive(&Http::default(), &[&head]);
    assert_eq!(got.output, TOO_LARGE);
    assert!(got.closed);
}

#[test]
fn a_head_over_the_limit_gets_431_whole_or_cut_whatever_follows() {
    // Over the limit, then a byte no header may hold: read in pieces, the head is refused
    // by its length before that byte arrives, so read whole it must be refused the same.
    let mut head = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
    head.resize(MAX_HEAD + 100, b'a');
    head.extend_from_slice(b"\x01\r\n\r\n");
    let cut = drive(
        &Http::default(),
        &[&head[..MAX_HEAD + 1], &head[MAX_HEAD + 1..]],
    );
    let whole = drive(&Http::default(), &[&head]);
    assert_eq!(cut.output, TOO_LARGE);
    assert_eq!(
        String::from_utf8_lossy(&whole.output),
        String::from_utf8_lossy(TOO_LARGE)
    );
    assert!(whole.closed);
}

#[test]
fn head_just_under_the_limit_is_served() {
    let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ".to_vec();
    head.resize(MAX_HEAD - 4, b'a');
    head.extend_from_slice(b"\r\n\r\n");
    let got = drive(&Http::default(), &[&head]);
    assert_eq!(got.output, reference_reply(false, None));
}

#[test]
fn too_many_headers_get_431() {
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    for n in 0..=MAX_HEADERS {
        head.extend_from_slice(format!("X-{n}: y\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let got = drive(&Http::default(), &[&head]);
    assert_eq!(got.output, TOO_LARGE);
}

#[test]
fn incomplete_head_waits_without_reply() {
    let got = drive(&Http::default(), &[b"GET / HTTP/1.1\r\nHost: x\r\n"]);
    assert!(got.output.is_empty());
    assert!(!got.closed);
}

/// One generated request, valid by construction.
#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    path: String,
    http10: bool,
    connection: Option<&'static str>,
    extra: Vec<(String, String)>,
    expect: bool,
    body: Vec<u8>,
}

impl Request {
    fn encode(&self, into: &mut Vec<u8>) {
        let version = if self.http10 { "1.0" } else { "1.1" };
        into.extend_from_slice(
            format!(
                "{} {} HTTP/{version}\r\nHost: test\r\n",
                self.method, self.path
            )
            .as_bytes(),
        );
        for (name, value) in &self.extra {
            into.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if self.expect {
            into.extend_from_slice(b"Expect: 100-continue\r\n");
        }
        if let Some(value) = self.connection {
            into.extend_from_slice(format!("Connection: {value}\r\n").as_bytes());
        }
        if !self.body.is_empty() {
            into.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        into.extend_from_slice(b"\r\n");
        into.extend_from_slice(&self.body);
    }

    /// The reply and whether the connection stays open, by the rules of RFC 9112.
    fn expected(&self) -> (Vec<u8>, bool) {
        let close = self
            .connection
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let keep = self
            .connection
            .is_some_and(|c| c.eq_ignore_ascii_case("keep-alive"));
        let head_only = self.method == "HEAD";
        let (reply, open) = match (self.http10, close, keep) {
            (false, false, _) => (reference_reply(head_only, None), true),
            (true, false, true) => (reference_reply(head_only, Some("keep-alive")), true),
            _ => (reference_reply(head_only, Some("close")), false),
        };
        if self.expect && !self.http10 && !self.body.is_empty() {
            (
                [&b"HTTP/1.1 100 Continue\r\n\r\n"[..], &reply].concat(),
                open,
            )
        } else {
            (reply, open)
        }
    }
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "DELETE"]),
        "/[a-z0-9/._-]{0,20}",
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![
            "close",
            "keep-alive",
            "Keep-Alive",
            "CLOSE",
            "upgrade",
        ])),
        prop::collection::vec(("X-[A-Za-z]{1,8}", "[ -~]{0,30}"), 0..4),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(
            |(method, path, http10, connection, extra, expect, body)| Request {
                method,
                path,
                http10,
                connection,
                // Header values may not end in spaces we would trim differently; keep them tidy.
                extra: extra
                    .into_iter()
                    .map(|(n, v)| (n, v.trim().to_string()))
                    .collect(),
                expect,
                body,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pipelined_requests_get_exactly_the_expected_replies(
        requests in prop::collection::vec(request(), 1..12),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        let mut open = true;
        for request in &requests {
            request.encode(&mut wire);
            if open {
                let (reply, stays) = request.expected();
                want.extend(reply);
                open = stays;
            }
        }
        let got = drive(&Http::default(), &split_at(&wire, &cuts));
        prop_assert_eq!(String::from_utf8_lossy(&got.output), String::from_utf8_lossy(&want));
        prop_assert_eq!(got.closed, !open);
    }

    #[test]
    fn arbitrary_bytes_frame_the_same_whole_or_split(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = drive(&Http::default(), &[&bytes]);
        let split = drive(&Http::default(), &split_at(&bytes, &cuts));
        prop_assert_eq!(whole.output, split.output);
        prop_assert_eq!(whole.closed, split.closed);
    }

    #[test]
    fn damaged_requests_frame_the_same_whole_or_split(
        requests in prop::collection::vec(request(), 1..6),
        damage in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut wire = Vec::new();
        for request in &requests {
            request.encode(&mut wire);
        }
        for (at, byte) in damage {
            let at = at % wire.len();
            wire[at] = byte;
        }
        let whole = drive(&Http::default(), &[&wire]);
        let split = drive(&Http::default(), &split_at(&wire, &cuts));
        prop_assert_eq!(whole.output, split.output);
        prop_assert_eq!(whole.closed, split.closed);
    }

    #[test]
    fn byte_at_a_time_equals_whole(requests in prop::collection::vec(request(), 1..4)) {
        let mut wire = Vec::new();
        for request in &requests {
            request.encode(&mut wire);
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        let split = drive(&Http::default(), &bytes);
        let whole = drive(&Http::default(), &[&wire]);
        prop_assert_eq!(split.output, whole.output);
        prop_assert_eq!(split.closed, whole.closed);
    }
}
