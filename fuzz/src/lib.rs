//! What every fuzz target shares: how a fuzz input says where the reads are cut, a
//! connection fed in those reads and checked against a fresh one fed each prefix whole,
//! and a heap counter that bounds what a connection may hold.
//!
//! A target (`fuzz_targets/*.rs`) builds its handler, calls [`split_invariant`], and adds
//! the checks only its protocol knows (well-formed replies, its own limits).

pub mod checked;
pub mod heap;
pub mod resp_reply;

use tcp_reactor::Handler;
use tcp_reactor::fuzzing::Conn;

pub use checked::Checked;

/// A fuzz input: one header byte, then the sizes of the reads, then the bytes a client sends.
///
/// - Header, low nibble: how many size bytes follow (0 to 15). With none, the bytes arrive
///   one per read, the harshest cut.
/// - Header, high nibble: a setting the target may use (the chat target's line limit).
/// - Each size byte is a read of `size + 1` bytes; the sizes are used in turn, round and
///   round, until the bytes run out.
///
/// So a seed is the protocol's bytes behind a short prefix: `\x00` alone feeds them one byte
/// at a time, `\x01\xff` in reads of 256 bytes.
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    /// The header's high nibble.
    pub setting: u8,
    /// Read sizes less one; empty means reads of one byte.
    sizes: &'a [u8],
    /// What the client sends.
    pub stream: &'a [u8],
}

impl<'a> Plan<'a> {
    /// Read the header and sizes off `data`; `None` when `data` is too short for them.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&header, rest) = data.split_first()?;
        let count = usize::from(header & 0x0f);
        if rest.len() < count {
            return None;
        }
        let (sizes, stream) = rest.split_at(count);
        Some(Plan {
            setting: header >> 4,
            sizes,
            stream,
        })
    }

    /// Where each read ends, in order; the last is the stream's end.
    pub fn cuts(&self) -> Vec<usize> {
        let mut cuts = Vec::new();
        let mut at = 0;
        let mut sizes = self.sizes.iter().cycle();
        while at < self.stream.len() {
            let size = sizes.next().map_or(1, |&size| usize::from(size) + 1);
            at = (at + size).min(self.stream.len());
            cuts.push(at);
        }
        cuts
    }
}

/// What one connection was left with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every byte written to it.
    pub output: Vec<u8>,
    /// Messages it sent to other connections, as `(connection, bytes)`.
    pub mail: Vec<(u64, Vec<u8>)>,
    /// It asked to close.
    pub closed: bool,
    /// Input it left unconsumed; 0 once closed (a closing connection's input is dropped,
    /// and how much of it arrived depends on the reads).
    pub buffered: usize,
}

/// How a target sets up a handler: a fresh one per run, so no state leaks between runs or
/// between the two feedings compared.
pub trait Setup {
    /// The protocol under test.
    type H: Handler;
    /// A fresh handler.
    fn handler(&self) -> Self::H;
    /// Open the connection the bytes go to, with whatever else the protocol needs open
    /// first (the chat target opens a listener); returns it as connection 1.
    fn open<'h>(&self, handler: &'h Self::H) -> Conn<'h, Self::H>;
}

/// Feed `plan`'s stream in `plan`'s reads and check, at up to 32 cuts spread over the
/// stream and at the end, that the connection is exactly what a fresh connection fed the same prefix in
/// one read is: same output, mail, close and unconsumed input. `after_read` checks the
/// protocol's own invariants on the cut connection after every read, given the bytes sent
/// so far and the mail so far.
///
/// That is split-invariance, and it also proves that "need more" and errors are stable
/// under appending bytes: once a prefix is refused the connection is closed and takes no
/// more, so the whole must be refused the same way. Returns the final outcome.
pub fn split_invariant<S: Setup>(
    setup: &S,
    plan: &Plan<'_>,
    mut after_read: impl FnMut(&[u8], &Conn<'_, S::H>, &[(u64, Vec<u8>)]),
) -> Outcome {
    let stream = plan.stream;
    let cuts = plan.cuts();
    let handler = setup.handler();
    let mut conn = setup.open(&handler);
    let mut mail = Vec::new();
    let mut from = 0;
    // Comparing costs a feed of the prefix: at most 32 of them, whatever the reads.
    let stride = cuts.len().div_ceil(32).max(1);
    for (index, &cut) in cuts.iter().enumerate() {
        conn.read(&stream[from..cut]);
        from = cut;
        mail.extend(conn.take_mail());
        after_read(&stream[..cut], &conn, &mail);
        let last = index + 1 == cuts.len() || conn.closed();
        if index % stride == 0 || last {
            assert_eq!(
                outcome_of(&conn, &mail),
                feed_whole(setup, &stream[..cut]),
                "after {cut} bytes in reads, the connection differs from one fed them in one read"
            );
        }
        if conn.closed() {
            break;
        }
    }
    let outcome = outcome_of(&conn, &mail);
    // Once closed, the rest is never read: the whole stream must give the same.
    if outcome.closed {
        assert_eq!(
            outcome,
            feed_whole(setup, stream),
            "a prefix closed the connection, the whole stream did not do the same"
        );
    }
    outcome
}

/// The most heap a fresh handler and its connection hold while `plan`'s stream is fed in
/// `plan`'s reads (mail is delivered, so dropped, after each read), in bytes.
pub fn peak_heap<S: Setup>(setup: &S, plan: &Plan<'_>) -> usize {
    let cuts = plan.cuts();
    heap::measure(|| {
        let handler = setup.handler();
        let mut conn = setup.open(&handler);
        let mut from = 0;
        for cut in cuts {
            conn.read(&plan.stream[from..cut]);
            from = cut;
            drop(conn.take_mail());
        }
    })
    .1
}

/// A fresh connection fed `bytes` in one read.
pub fn feed_whole<S: Setup>(setup: &S, bytes: &[u8]) -> Outcome {
    let handler = setup.handler();
    let mut conn = setup.open(&handler);
    if !bytes.is_empty() {
        conn.read(bytes);
    }
    let mail = conn.take_mail();
    outcome_of(&conn, &mail)
}

/// The outcome so far of `conn`, whose mail so far is `mail`.
fn outcome_of<H: Handler>(conn: &Conn<'_, H>, mail: &[(u64, Vec<u8>)]) -> Outcome {
    Outcome {
        output: conn.output().to_vec(),
        mail: mail.to_vec(),
        closed: conn.closed(),
        buffered: if conn.closed() { 0 } else { conn.buffered() },
    }
}

/// Assert the heap a connection held stays within a constant plus a few times what
/// went in and came out: memory grows with the bytes, never with a length or count a
/// client announced but did not send.
pub fn assert_heap_bounded(peak: usize, input: usize, outcome: &Outcome) {
    let mail: usize = outcome.mail.iter().map(|(_, bytes)| bytes.len()).sum();
    let bound = 64 * 1024 + 8 * (input + outcome.output.len() + mail);
    assert!(
        peak <= bound,
        "the connection held {peak} bytes of heap for {input} bytes in and {} out (bound {bound})",
        outcome.output.len() + mail
    );
}
