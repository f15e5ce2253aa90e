//! HTTP/1.1 request framing (`protocols::Http`): heads, pipelining and skipped
//! `Content-Length` and chunked bodies, driven through its `Handler` as a server model drives it.
//! Split-invariance, consumed counts, an unfinished head held never over `HTTP_MAX_HEAD`,
//! replies that are whole HTTP responses whose `Content-Length` tells the truth, an error
//! or `Connection: close` reply only last and only then closed, bounded memory.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_reactor::fuzzing::Conn;
use tcp_reactor::protocols::{HTTP_HELLO, HTTP_MAX_HEAD, Http};
use tcp_reactor_fuzz::{Checked, Plan, Setup, assert_heap_bounded, peak_heap, split_invariant};

/// A server with the default body.
struct Server;

impl Setup for Server {
    type H = Checked<Http>;

    fn handler(&self) -> Checked<Http> {
        Checked(Http::default())
    }

    fn open<'h>(&self, handler: &'h Checked<Http>) -> Conn<'h, Checked<Http>> {
        Conn::open(handler, 1)
    }
}

/// One response as a client reads it.
#[derive(Debug)]
struct Response {
    /// The status code.
    status: u16,
    /// It said `Connection: close`.
    close: bool,
}

/// Read `output` as a series of whole HTTP/1.1 responses. A `200` carries the served body
/// unless it answers a `HEAD` (then the next response, or the end, follows its head); every
/// other final response carries exactly its `Content-Length`; `100` has no body.
fn responses(output: &[u8]) -> Result<Vec<Response>, String> {
    let mut found = Vec::new();
    let mut rest = output;
    while !rest.is_empty() {
        let end = rest
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .ok_or("a response head does not end")?;
        let head = std::str::from_utf8(&rest[..end]).map_err(|_| "a head is not UTF-8")?;
        rest = &rest[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|line| line.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("status line {status_line:?}"))?;
        let mut length = None;
        let mut close = false;
        for line in lines {
            let (name, value) = line
                .split_once(": ")
                .ok_or_else(|| format!("header {line:?}"))?;
            match name {
                "Content-Length" => {
                    length = Some(value.parse::<usize>().map_err(|e| e.to_string())?)
                }
                "Connection" => close = value == "close",
                _ => {}
            }
        }
        if status != 100 {
            let length = length.ok_or("no Content-Length")?;
            let head_only = status == 200 && (rest.is_empty() || rest.starts_with(b"HTTP/1.1 "));
            if !head_only {
                let body = rest
                    .get(..length)
                    .ok_or("the body is shorter than its Content-Length")?;
                if status == 200 && body != HTTP_HELLO {
                    return Err(format!("a 200 with body {body:?}"));
                }
                rest = &rest[length..];
            }
        }
        found.push(Response { status, close });
    }
    Ok(found)
}

fuzz_target!(|data: &[u8]| {
    let Some(plan) = Plan::parse(data) else {
        return;
    };
    tcp_reactor::fuzzing::freeze_http_date();
    let outcome = split_invariant(&Server, &plan, |_sent, conn, _mail| {
        // An unfinished head is refused as too large by its length: never held beyond it.
        assert!(
            conn.closed() || conn.buffered() <= HTTP_MAX_HEAD,
            "{} bytes held",
            conn.buffered()
        );
    });
    let replies = responses(&outcome.output)
        .unwrap_or_else(|err| panic!("a response a client would reject: {err}"));
    for (index, reply) in replies.iter().enumerate() {
        let last = index + 1 == replies.len();
        let ends = reply.close || !matches!(reply.status, 100 | 200);
        assert!(
            matches!(reply.status, 100 | 200 | 400 | 414 | 431 | 501 | 505),
            "status {}",
            reply.status
        );
        // A reply that ends the connection is the last, and the connection did close.
        assert!(
            !ends || (last && outcome.closed),
            "{reply:?} at {index} of {}",
            replies.len()
        );
    }
    if outcome.closed {
        let ended = replies
            .last()
            .is_some_and(|reply| reply.close || !matches!(reply.status, 100 | 200));
        assert!(ended, "closed without saying so: {replies:?}");
    }
    assert_heap_bounded(peak_heap(&Server, &plan), plan.stream.len(), &outcome);
});
