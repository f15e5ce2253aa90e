//! The RESP command layer (`protocols::Resp`), driven through its `Handler` as a server
//! model drives it: split-invariance, consumed counts, well-formed replies (one per
//! command the framer finds, a protocol error last and only then closed), bounded memory.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_reactor::fuzzing::{Check, Conn, Framer, MAX_INLINE};
use tcp_reactor::protocols::Resp;
use tcp_reactor_fuzz::{
    Checked, Plan, Setup, assert_heap_bounded, peak_heap, resp_reply, split_invariant,
};

/// A fresh store per run.
struct Server;

impl Setup for Server {
    type H = Checked<Resp>;

    fn handler(&self) -> Checked<Resp> {
        Checked(Resp::default())
    }

    fn open<'h>(&self, handler: &'h Checked<Resp>) -> Conn<'h, Checked<Resp>> {
        Conn::open(handler, 1)
    }
}

/// What the framer alone says the server must do with `stream`.
struct Expected {
    /// Replies due: one per command run, plus a protocol error's.
    replies: usize,
    /// The stream broke the framing: the last reply is a protocol error.
    protocol_error: bool,
    /// `QUIT` came, or the framing broke: the connection closes.
    closes: bool,
    /// Bytes left unconsumed when it does not close (an unfinished command).
    left: usize,
}

/// Frame `stream` command by command with a framer of its own, as a reference.
fn expected(stream: &[u8]) -> Expected {
    let mut framer = Framer::default();
    let mut replies = 0;
    let mut at = 0;
    loop {
        let rest = &stream[at..];
        match framer.check(rest) {
            Check::Complete(len) => {
                let args = framer.args();
                let frame = framer.frame(&rest[..len]);
                let quit = args
                    .first()
                    .is_some_and(|&(start, end)| frame[start..end].eq_ignore_ascii_case(b"quit"));
                replies += usize::from(!args.is_empty());
                framer.finish();
                at += len;
                if quit {
                    return Expected {
                        replies,
                        protocol_error: false,
                        closes: true,
                        left: 0,
                    };
                }
            }
            Check::Incomplete => {
                let left = stream.len() - at;
                return Expected {
                    replies,
                    protocol_error: false,
                    closes: false,
                    left,
                };
            }
            Check::Error(_) => {
                return Expected {
                    replies: replies + 1,
                    protocol_error: true,
                    closes: true,
                    left: 0,
                };
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(plan) = Plan::parse(data) else {
        return;
    };
    let outcome = split_invariant(&Server, &plan, |sent, conn, _mail| {
        // What the server holds of an unfinished inline command stays under its limit.
        let held = &sent[sent.len() - conn.buffered()..];
        if !conn.closed() && held.first().is_some_and(|&first| first != b'*') {
            assert!(
                held.len() < MAX_INLINE,
                "{} bytes of an inline command held",
                held.len()
            );
        }
    });
    let replies = resp_reply::split(&outcome.output)
        .unwrap_or_else(|err| panic!("a reply a client would reject: {err}"));
    let want = expected(plan.stream);
    assert_eq!(replies.len(), want.replies, "one reply per command");
    assert_eq!(outcome.closed, want.closes);
    if want.protocol_error {
        let last = replies.last().copied().unwrap_or_default();
        assert!(last.starts_with(b"-ERR Protocol error: "), "{last:?}");
    } else {
        assert!(
            replies
                .iter()
                .all(|reply| !reply.starts_with(b"-ERR Protocol error"))
        );
    }
    if !outcome.closed {
        assert_eq!(
            outcome.buffered, want.left,
            "unconsumed input is the unfinished command"
        );
    }
    assert_heap_bounded(peak_heap(&Server, &plan), plan.stream.len(), &outcome);
});
