//! The chat line splitter (`protocols::Chat`): a sender and a listener in one room, the
//! sender's bytes cut into the fuzzer's reads. Split-invariance, the listener hears exactly
//! the lines a plain split on `\n` finds, a line over the limit is refused and closes,
//! the unfinished line held stays within the limit, bounded memory.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_reactor::fuzzing::Conn;
use tcp_reactor::protocols::{Chat, DEFAULT_MAX_LINE};
use tcp_reactor_fuzz::{Checked, Plan, Setup, assert_heap_bounded, peak_heap, split_invariant};

/// Line limits the header's setting picks from: tiny ones make the limit easy to reach.
const LIMITS: [usize; 16] = [
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    13,
    16,
    31,
    64,
    100,
    255,
    1024,
    3000,
    DEFAULT_MAX_LINE,
];

/// A room whose lines are at most `max_line` bytes.
struct Room {
    /// The line limit.
    max_line: usize,
}

impl Setup for Room {
    type H = Checked<Chat>;

    fn handler(&self) -> Checked<Chat> {
        Checked(Chat::with_max_line(self.max_line))
    }

    /// The sender is connection 1; connection 2 joins and only listens.
    fn open<'h>(&self, handler: &'h Checked<Chat>) -> Conn<'h, Checked<Chat>> {
        let sender = Conn::open(handler, 1);
        Conn::open(handler, 2);
        sender
    }
}

/// What the listener hears, what the sender is told, and whether it is closed, by a plain
/// split on `\n` (a trailing `\r` dropped).
fn reference(max_line: usize, bytes: &[u8]) -> (Vec<u8>, Vec<u8>, bool) {
    let refused = format!("error: line too long (limit {max_line} bytes)\n").into_bytes();
    let mut heard = Vec::new();
    let mut rest = bytes;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > max_line {
            return (heard, refused, true);
        }
        heard.extend_from_slice(b"[1] ");
        heard.extend_from_slice(line);
        heard.push(b'\n');
        rest = &rest[end + 1..];
    }
    if rest.len() > max_line + 1 {
        return (heard, refused, true);
    }
    (heard, Vec::new(), false)
}

fuzz_target!(|data: &[u8]| {
    let Some(plan) = Plan::parse(data) else {
        return;
    };
    let room = Room {
        max_line: LIMITS[usize::from(plan.setting)],
    };
    let outcome = split_invariant(&room, &plan, |sent, conn, _mail| {
        if !conn.closed() {
            // Only the unfinished last line is held, and no more of it than the limit
            // (plus a `\r` whose `\n` has not come).
            let held = &sent[sent.len() - conn.buffered()..];
            assert!(!held.contains(&b'\n'), "a whole line was left unconsumed");
            assert!(
                conn.buffered() <= room.max_line + 1,
                "{} bytes held",
                conn.buffered()
            );
        }
    });
    let mut heard = Vec::new();
    for (to, bytes) in &outcome.mail {
        assert_eq!(*to, 2, "a line went back to its sender");
        heard.extend_from_slice(bytes);
    }
    let (want_heard, want_told, want_closed) = reference(room.max_line, plan.stream);
    assert_eq!(heard, want_heard);
    assert_eq!(outcome.output, want_told);
    assert_eq!(outcome.closed, want_closed);
    assert_heap_bounded(peak_heap(&room, &plan), plan.stream.len(), &outcome);
});
