//! The metrics endpoint's request parser (`metrics::request::parse`), driven as the
//! endpoint drives it: the input grows read by read, after each read every whole request at
//! the front is taken (pipelining) and an invalid one ends the connection. Invariants: no
//! panic; split-invariance (the requests and final verdict are those of the whole stream,
//! and of the stream cut once anywhere); consumed counts and body slices inside the input;
//! every proper prefix of a whole request needs more; a head that needs more never exceeds
//! `MAX_HEAD`; the parser allocates nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_reactor::metrics::request::{Invalid, MAX_BODY, MAX_HEAD, Parsed, Request, parse};
use tcp_reactor_fuzz::Plan;
use tcp_reactor_fuzz::heap::measure;

/// One request as owned values, to compare across feedings.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    method: String,
    path: String,
    query: String,
    minor_version: u8,
    keep_alive: bool,
    body: Vec<u8>,
    len: usize,
}

/// What a connection was left with: the requests answered, then where it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fed {
    requests: Vec<Owned>,
    /// `None`: waiting for more bytes; `Some`: refused and closed.
    refused: Option<Invalid>,
    /// Unconsumed bytes held while waiting (0 once refused: the endpoint drops them).
    held: usize,
}

/// Check `request`, parsed from `input`, against its input, and own it.
fn check(request: &Request<'_>, input: &[u8]) -> Owned {
    assert!(
        request.len > 0 && request.len <= input.len(),
        "took {} of {} bytes",
        request.len,
        input.len()
    );
    assert!(request.body.len() <= MAX_BODY);
    // The body is the input's last bytes of the request.
    let body_start = request.len - request.body.len();
    assert_eq!(&input[body_start..request.len], request.body);
    assert!(body_start <= MAX_HEAD, "a head of {body_start} bytes");
    assert!(request.minor_version <= 1);
    assert!(!request.method.is_empty());
    assert!(!request.path.contains('?'));
    Owned {
        method: request.method.to_string(),
        path: request.path.to_string(),
        query: request.query.to_string(),
        minor_version: request.minor_version,
        keep_alive: request.keep_alive,
        body: request.body.to_vec(),
        len: request.len,
    }
}

/// Feed `stream` in reads ending at `cuts`, as the endpoint does; stop at a refusal.
fn feed(stream: &[u8], cuts: &[usize]) -> Fed {
    let mut fed = Fed {
        requests: Vec::new(),
        refused: None,
        held: 0,
    };
    let mut start = 0;
    for &end in cuts {
        loop {
            let input = &stream[start..end];
            match parse(input) {
                Parsed::Request(request) => {
                    fed.requests.push(check(&request, input));
                    start += request.len;
                }
                Parsed::NeedMore => {
                    assert!(input.len() <= MAX_HEAD + MAX_BODY, "held {}", input.len());
                    break;
                }
                Parsed::Invalid(invalid) => {
                    fed.refused = Some(invalid);
                    fed.held = 0;
                    return fed;
                }
            }
        }
        fed.held = end - start;
    }
    fed
}

fuzz_target!(|data: &[u8]| {
    let Some(plan) = Plan::parse(data) else {
        return;
    };
    let stream = plan.stream;
    let whole = feed(stream, &[stream.len()]);
    // In the fuzzer's reads, and in two pieces cut where the header's setting says.
    let pieces = feed(stream, &plan.cuts());
    assert_eq!(pieces, whole, "fed in reads {:?}", plan.cuts());
    if !stream.is_empty() {
        let cut = usize::from(plan.setting) * stream.len() / 16;
        let two = feed(stream, &[cut, stream.len()]);
        assert_eq!(two, whole, "cut once at {cut}");
    }
    // Every proper prefix of the first whole request needs more (sampled: at most 64).
    if let Some(first) = whole.requests.first() {
        let step = first.len.div_ceil(64).max(1);
        for len in (0..first.len).step_by(step) {
            assert_eq!(parse(&stream[..len]), Parsed::NeedMore, "prefix of {len}");
        }
    }
    // No allocation: the endpoint calls it after every read.
    let (_, heap) = measure(|| parse(stream));
    assert_eq!(heap, 0, "parse allocated {heap} bytes");
});
