//! Chat: a line-based room where every line goes to everyone else.
//!
//! Shows the parts of the handler API a broadcast protocol needs: shared state in the
//! handler (the members), framing by consuming whole lines only, `send_to` other
//! connections, and a limit that closes one client.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use crate::{CloseReason, ConnId, Context, Handler};

/// Longest line accepted by [`Chat::new`], in bytes, without its newline.
pub const DEFAULT_MAX_LINE: usize = 4 * 1024;

/// A chat room: each complete line from one client is sent to every other client,
/// prefixed with the sender's id: `[3] hello\n`.
///
/// - A line ends with `\n`; a trailing `\r` is dropped. Bytes without a newline wait for
///   the rest of their line.
/// - A line longer than the limit ([`DEFAULT_MAX_LINE`], or [`Chat::with_max_line`]) is
///   refused: the client is sent `error: line too long (limit N bytes)\n` and closed, as
///   the input cap would close it ([`CloseReason::Handler`] is the reason reported).
///   Independently, the server's `Config::max_input` closes a client whose unfinished
///   line reaches that cap ([`CloseReason::InputLimit`]).
/// - The sender does not get its own lines back.
/// - When the server is full, refused clients read `server full, try again later\n`.
#[derive(Debug)]
pub struct Chat {
    /// Longest accepted line, without its line ending.
    max_line: usize,
    /// Who is connected, in the order they came (ids grow).
    members: Mutex<BTreeSet<ConnId>>,
}

impl Default for Chat {
    fn default() -> Self {
        Chat::new()
    }
}

impl Chat {
    /// A room with lines of at most [`DEFAULT_MAX_LINE`] bytes.
    pub fn new() -> Self {
        Chat::with_max_line(DEFAULT_MAX_LINE)
    }

    /// A room with lines of at most `max_line` bytes (not counting the line ending).
    pub fn with_max_line(max_line: usize) -> Self {
        Chat {
            max_line,
            members: Mutex::new(BTreeSet::new()),
        }
    }

    /// How many clients are in the room.
    pub fn members(&self) -> usize {
        self.lock().len()
    }

    /// The member set. Only `open`, `close` and the broadcast loop take it, and none of
    /// them can panic while holding it, so a poisoned lock still holds a valid set.
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<ConnId>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Send `line` from `from` to every other member.
    fn broadcast(&self, ctx: &mut Context<'_>, line: &[u8]) {
        let from = ctx.id();
        let mut message = Vec::with_capacity(line.len() + 24);
        message.extend_from_slice(format!("[{from}] ").as_bytes());
        message.extend_from_slice(line);
        message.push(b'\n');
        let members = self.lock();
        for &to in members.iter().filter(|&&to| to != from) {
            // Queued only; the server delivers after this callback returns.
            ctx.send_to(to, &message);
        }
    }
}

impl Handler for Chat {
    type Session = ();

    fn open(&self, ctx: &mut Context<'_>) {
        self.lock().insert(ctx.id());
    }

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&byte| byte == b'\n') else {
            // One byte of slack for a `\r` whose `\n` has not arrived yet, so the verdict
            // does not depend on where the reads split the line.
            if input.len() > self.max_line + 1 {
                refuse_line(ctx, self.max_line);
                return input.len();
            }
            // An unfinished line: wait for its newline.
            return 0;
        };
        let line = &input[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.max_line {
            refuse_line(ctx, self.max_line);
        } else {
            self.broadcast(ctx, line);
        }
        // One line per call; the server calls again at once with the rest.
        end + 1
    }

    fn close(&self, _session: (), id: ConnId, _reason: CloseReason) {
        self.lock().remove(&id);
    }

    fn busy_reply(&self) -> &[u8] {
        b"server full, try again later\n"
    }
}

/// Tell the client its line is too long, then close it once that is sent.
fn refuse_line(ctx: &mut Context<'_>, max_line: usize) {
    log::debug!(
        "{} ({}): line over {max_line} bytes",
        ctx.id(),
        ctx.peer_addr()
    );
    ctx.write(format!("error: line too long (limit {max_line} bytes)\n").as_bytes());
    ctx.close();
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::protocols::testkit::{Driver, split_at};

    /// What a two-member room produced when member 1 sent some bytes.
    #[derive(Debug, PartialEq, Eq)]
    struct Room {
        /// Bytes member 2 was sent.
        heard: Vec<u8>,
        /// Bytes member 1 was sent (error lines).
        told: Vec<u8>,
        /// Member 1 was closed.
        closed: bool,
    }

    /// Open members 1 and 2, feed member 1 `chunks` one read at a time, as a server
    /// model does.
    fn drive(chat: &Chat, chunks: &[&[u8]]) -> Room {
        let mut one = Driver::open(chat, ConnId(1));
        let _two = Driver::open(chat, ConnId(2));
        one.output.clear();
        for chunk in chunks {
            one.read(chunk);
        }
        let mut heard = Vec::new();
        one.outbox.drain(|to, bytes| {
            assert_eq!(to, ConnId(2), "a line went back to its sender");
            heard.extend_from_slice(bytes);
        });
        Room {
            heard,
            told: one.output,
            closed: one.closed,
        }
    }

    /// The room as a plain split on `\n` says it should be.
    fn reference(max_line: usize, bytes: &[u8]) -> Room {
        let mut heard = Vec::new();
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let line = &rest[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > max_line {
                return refused(max_line, heard);
            }
            heard.extend_from_slice(b"[1] ");
            heard.extend_from_slice(line);
            heard.push(b'\n');
            rest = &rest[end + 1..];
        }
        if rest.len() > max_line + 1 {
            return refused(max_line, heard);
        }
        Room {
            heard,
            told: Vec::new(),
            closed: false,
        }
    }

    fn refused(max_line: usize, heard: Vec<u8>) -> Room {
        let told = format!("error: line too long (limit {max_line} bytes)\n").into_bytes();
        Room {
            heard,
            told,
            closed: true,
        }
    }

    proptest! {
        #[test]
        fn lines_frame_like_a_plain_split_however_reads_cut_them(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>(), b'a'..=b'e'], 0..200),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            max_line in 1usize..24,
        ) {
            let chat = Chat::with_max_line(max_line);
            let got = drive(&chat, &split_at(&bytes, &cuts));
            prop_assert_eq!(got, reference(max_line, &bytes));
        }
    }

    #[test]
    fn a_line_at_the_limit_split_before_its_newline_is_still_accepted() {
        let chat = Chat::with_max_line(4);
        let room = drive(&chat, &[b"abcd\r", b"\n"]);
        assert_eq!(room.heard, b"[1] abcd\n");
        assert!(!room.closed);
    }
}
