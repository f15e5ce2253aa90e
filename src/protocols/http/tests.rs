//! Framing tests for [`Http`], driven without sockets through the test driver.

use proptest::prelude::*;

use super::*;
use crate::protocols::testkit::{drive, one_call, split_at};

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
    for reply in [BAD_REQUEST, TOO_LARGE, NOT_IMPLEMENTED, BUSY] {
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
    let get = b"GET / HTTP/1.1\r\n\r\n";
    let (used, output) = one_call(&Http::default(), &[&get[..], get, get].concat());
    assert_eq!((used, output), (get.len(), reference_reply(false, None)));
}

#[test]
fn head_gets_the_head_without_body() {
    let got = drive(&Http::default(), &[b"HEAD /x HTTP/1.1\r\n\r\n"]);
    assert_eq!(got.output, reference_reply(true, None));
}

#[test]
fn connection_close_is_honoured_after_the_reply() {
    let got = drive(
        &Http::default(),
        &[b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n"],
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
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhe",
            b"lloGET / HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\n",
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
        &[b"POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 4\r\n\r\nab"],
    );
    assert!(!got.closed, "closed before the body was read");
    assert!(got.output.is_empty(), "replied before the body was read");
    let got = drive(
        &http,
        &[
            b"POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 4\r\n\r\nab",
            b"cd",
        ],
    );
    assert!(got.closed);
    assert_eq!(got.output, reference_reply(false, Some("close")));
}

#[test]
fn expect_100_continue_gets_an_interim_reply_before_the_body() {
    let http = Http::default();
    let head = b"PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
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
        &b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"[..],
        b"\x00\x01\x02 / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
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
fn connect_and_chunked_bodies_get_501_and_close() {
    for request in [
        &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
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
    let mut head = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
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
            format!("{} {} HTTP/{version}\r\n", self.method, self.path).as_bytes(),
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
