//! Small handlers that exercise one part of the handler contract each, and a wrapper that
//! records why every connection closed and how much input was consumed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tcp_reactor::{CloseReason, ConnId, Context, Handler};

use crate::wait_until;

/// What [`Recorded`] saw: close reasons in the order connections closed, and the input
/// bytes the handler consumed.
#[derive(Debug, Default)]
pub struct Closes {
    /// One entry per closed connection.
    reasons: Mutex<Vec<(ConnId, CloseReason)>>,
    /// Input bytes consumed by the handler, over all connections.
    consumed: AtomicU64,
}

impl Closes {
    /// Input bytes the handler consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::SeqCst)
    }

    fn push(&self, id: ConnId, reason: CloseReason) {
        self.lock().push((id, reason));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(ConnId, CloseReason)>> {
        self.reasons.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections closed for this kind of reason (any `Error` matches any `Error`).
    pub fn count(&self, reason: CloseReason) -> usize {
        self.lock()
            .iter()
            .filter(|(_, r)| r.index() == reason.index())
            .count()
    }

    /// Connections closed for any reason.
    pub fn total(&self) -> usize {
        self.lock().len()
    }

    /// Every recorded reason.
    pub fn all(&self) -> Vec<CloseReason> {
        self.lock().iter().map(|&(_, r)| r).collect()
    }

    /// Wait until at least `n` connections closed for `reason`; true if they did in time.
    pub fn wait_for(&self, reason: CloseReason, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.count(reason) >= n)
    }
}

/// Runs `inner` and records every close reason, and the input consumed, in `closes`.
#[derive(Debug)]
pub struct Recorded<H> {
    /// The protocol under test.
    pub inner: H,
    /// Where close reasons go.
    pub closes: Arc<Closes>,
}

impl<H> Recorded<H> {
    /// Wrap `inner`; returns the handler and the shared record.
    pub fn new(inner: H) -> (Self, Arc<Closes>) {
        let closes = Arc::new(Closes::default());
        (
            Recorded {
                inner,
                closes: Arc::clone(&closes),
            },
            closes,
        )
    }
}

impl<H: Handler> Handler for Recorded<H> {
    type Session = H::Session;

    fn open(&self, ctx: &mut Context<'_>) -> H::Session {
        self.inner.open(ctx)
    }

    fn data(&self, session: &mut H::Session, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let consumed = self.inner.data(session, ctx, input);
        self.closes
            .consumed
            .fetch_add(consumed as u64, Ordering::SeqCst);
        consumed
    }

    fn timer(&self, session: &mut H::Session, ctx: &mut Context<'_>) {
        self.inner.timer(session, ctx)
    }

    fn close(&self, session: H::Session, id: ConnId, reason: CloseReason) {
        self.closes.push(id, reason);
        self.inner.close(session, id, reason)
    }

    fn busy_reply(&self) -> &[u8] {
        self.inner.busy_reply()
    }
}

/// The reply [`Busy`] sends to refused clients.
pub const BUSY: &[u8] = b"busy\n";

/// Echo, with a busy reply for refused clients.
#[derive(Debug, Default)]
pub struct Busy;

impl Handler for Busy {
    type Session = ();

    fn open(&self, _ctx: &mut Context<'_>) {}

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }

    fn busy_reply(&self) -> &[u8] {
        BUSY
    }
}

/// A framed protocol: input is `\n`-terminated lines; each complete line is answered with
/// its length (u32, big-endian) and its bytes, without the `\n`. A partial line is left
/// unconsumed, so a client trickling one makes no progress.
#[derive(Debug, Clone, Copy)]
pub struct Lines {
    /// Consume one line per `data` call (relying on the "called again at once" rule), or
    /// every complete line at once.
    pub one_per_call: bool,
}

impl Handler for Lines {
    type Session = ();

    fn open(&self, _ctx: &mut Context<'_>) {}

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let mut consumed = 0;
        while let Some(end) = input[consumed..].iter().position(|&b| b == b'\n') {
            let line = &input[consumed..consumed + end];
            ctx.write(&(line.len() as u32).to_be_bytes());
            ctx.write(line);
            consumed += end + 1;
            if self.one_per_call {
                break;
            }
        }
        consumed
    }
}

/// Decode the replies of [`Lines`] into the lines they frame; `None` if the stream is not
/// a whole number of frames.
pub fn decode_lines(mut reply: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut lines = Vec::new();
    while !reply.is_empty() {
        let len_bytes: [u8; 4] = reply.get(..4)?.try_into().ok()?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        lines.push(reply.get(4..4 + len)?.to_vec());
        reply = &reply[4 + len..];
    }
    Some(lines)
}

/// The reference framing: every `\n`-terminated line of `input`, without the `\n`; a
/// trailing partial line is not a frame.
pub fn reference_lines(input: &[u8]) -> Vec<Vec<u8>> {
    let mut pieces: Vec<Vec<u8>> = input.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    pieces.pop();
    pieces
}

/// Writes `tick <n>\n` every `period` by its own timer, `ticks` times, then closes.
/// Input is consumed and ignored.
#[derive(Debug, Clone, Copy)]
pub struct Ticker {
    /// Time between ticks.
    pub period: Duration,
    /// Ticks before closing.
    pub ticks: u32,
}

impl Handler for Ticker {
    type Session = u32;

    fn open(&self, ctx: &mut Context<'_>) -> u32 {
        ctx.set_timer(self.period);
        0
    }

    fn data(&self, _sent: &mut u32, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }

    fn timer(&self, sent: &mut u32, ctx: &mut Context<'_>) {
        *sent += 1;
        ctx.write(format!("tick {sent}\n").as_bytes());
        if *sent < self.ticks {
            ctx.set_timer(self.period);
        } else {
            ctx.close();
        }
    }
}

/// Sets a timer on open; input cancels it (or moves it, see [`Rearm`]) and is answered
/// with `ok\n`. When the timer fires it writes `fired\n`.
#[derive(Debug, Clone, Copy)]
pub struct Cancelling {
    /// The timer set on open.
    pub after: Duration,
    /// What input does to it.
    pub rearm: Rearm,
}

/// What [`Cancelling`] does to its timer when input arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rearm {
    /// `cancel_timer`.
    Cancel,
    /// `set_timer` again with this delay (replacing the first).
    Replace(Duration),
}

impl Handler for Cancelling {
    type Session = ();

    fn open(&self, ctx: &mut Context<'_>) {
        ctx.set_timer(self.after);
    }

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        match self.rearm {
            Rearm::Cancel => ctx.cancel_timer(),
            Rearm::Replace(after) => ctx.set_timer(after),
        }
        ctx.write(b"ok\n");
        input.len()
    }

    fn timer(&self, _session: &mut (), ctx: &mut Context<'_>) {
        ctx.write(b"fired\n");
    }
}

/// Answers the first input with a big reply of a known pattern, consuming everything.
#[derive(Debug, Clone)]
pub struct BigReply {
    /// The reply, built once.
    reply: Arc<Vec<u8>>,
}

impl BigReply {
    /// A handler whose reply is [`big_reply`]`(size)`.
    pub fn new(size: usize) -> Self {
        BigReply {
            reply: Arc::new(big_reply(size)),
        }
    }
}

/// `size` bytes of a pattern with a period of 251 (prime, so it never lines up with
/// buffer sizes): a shifted or truncated copy does not compare equal.
pub fn big_reply(size: usize) -> Vec<u8> {
    let period: Vec<u8> = (0..251u8).collect();
    let mut reply = Vec::with_capacity(size);
    while reply.len() < size {
        let n = period.len().min(size - reply.len());
        reply.extend_from_slice(&period[..n]);
    }
    reply
}

impl Handler for BigReply {
    type Session = bool;

    fn open(&self, _ctx: &mut Context<'_>) -> bool {
        false
    }

    fn data(&self, replied: &mut bool, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        if !*replied {
            *replied = true;
            ctx.write(&self.reply);
        }
        input.len()
    }
}
