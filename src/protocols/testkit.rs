//! A socket-free driver for protocol unit tests: feeds bytes to a [`Handler`] with the same
//! `rules::feed` both server models use, and collects what it writes.
//!
//! For unit tests, and for the fuzz targets through `crate::fuzzing` (feature `fuzzing`).
//! It mimics the model's contract (all unconsumed input on every call, called
//! again at once while it consumes and input remains, nothing delivered after `close`); it
//! must not grow protocol knowledge of its own.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use crate::handler::{Actions, Outbox};
use crate::{Config, ConnId, Context, Handler, PeerAddr, rules};

/// What one connection produced.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transcript {
    /// Every byte the handler wrote, in order.
    pub(crate) output: Vec<u8>,
    /// True once the handler asked to close (or abort).
    pub(crate) closed: bool,
    /// Input left unconsumed when the feed ended or the connection closed.
    pub(crate) leftover: usize,
}

/// Open one connection on `handler`, deliver `chunks` one read at a time, and return what
/// came out.
#[cfg(test)]
pub(crate) fn drive<H: Handler>(handler: &H, chunks: &[&[u8]]) -> Transcript {
    let mut conn = Driver::open(handler, ConnId(1));
    for chunk in chunks {
        conn.read(chunk);
    }
    assert!(
        conn.outbox.is_empty(),
        "protocol wrote to another connection"
    );
    Transcript {
        leftover: conn.input.len(),
        output: conn.output,
        closed: conn.closed,
    }
}

/// One connection of `handler`, fed the way both server models feed it (`rules::feed`),
/// with its output taken as soon as it is written.
pub(crate) struct Driver<'h, H: Handler> {
    /// The protocol under test.
    handler: &'h H,
    /// This connection's id.
    id: ConnId,
    /// The handler's state for this connection.
    session: H::Session,
    /// Input the handler has not consumed yet.
    input: Vec<u8>,
    /// Every byte the handler wrote to this connection, in order.
    pub(crate) output: Vec<u8>,
    /// Messages the handler sent to other connections, in order.
    pub(crate) outbox: Outbox,
    /// True once the handler asked to close (or abort): no more input is delivered.
    pub(crate) closed: bool,
}

/// The time every driven connection sees: one instant for the whole process, standing
/// still, so that replies which depend on the clock (a key's TTL) are the same however
/// the input is cut and whenever it is fed.
fn clock() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

impl<'h, H: Handler> Driver<'h, H> {
    /// Open connection `id` on `handler`.
    pub(crate) fn open(handler: &'h H, id: ConnId) -> Self {
        let (mut output, mut actions, mut outbox) =
            (Vec::new(), Actions::default(), Outbox::default());
        let session = handler.open(&mut Context::new(
            id,
            peer(),
            clock(),
            &mut output,
            &mut actions,
            &mut outbox,
        ));
        Driver {
            handler,
            id,
            session,
            input: Vec::new(),
            output,
            outbox,
            closed: actions.close.is_some(),
        }
    }

    /// Input the handler has not consumed yet.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Deliver one read's bytes. Output is taken at once, so a stop at the high-water mark
    /// only splits the feeding in two, as a server whose client reads does.
    pub(crate) fn read(&mut self, mut chunk: &[u8]) {
        while !self.closed {
            let mut actions = Actions::default();
            let sent = self.output.len();
            let mut ctx = Context::new(
                self.id,
                peer(),
                clock(),
                &mut self.output,
                &mut actions,
                &mut self.outbox,
            )
            .already_sent(sent);
            let high_water = Config::default().high_water;
            let fed = rules::feed(
                self.handler,
                &mut self.session,
                &mut self.input,
                chunk,
                &mut ctx,
                high_water,
            );
            self.closed = actions.close.is_some();
            if fed.stop != rules::Stop::HighWater {
                return;
            }
            chunk = &[];
        }
    }
}

/// Open one connection on `handler` and make one `data` call with `input`: how many bytes
/// it consumed, and what it wrote.
#[cfg(test)]
pub(crate) fn one_call<H: Handler>(handler: &H, input: &[u8]) -> (usize, Vec<u8>) {
    let mut conn = Driver::open(handler, ConnId(1));
    let mut actions = Actions::default();
    let mut ctx = Context::new(
        conn.id,
        peer(),
        clock(),
        &mut conn.output,
        &mut actions,
        &mut conn.outbox,
    );
    let used = handler.data(&mut conn.session, &mut ctx, input);
    (used, conn.output)
}

/// The address every test connection comes from.
fn peer() -> PeerAddr {
    PeerAddr::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000)))
}

/// Split `bytes` at the given cut points (any order, any value; clamped to the length).
#[cfg(test)]
pub(crate) fn split_at<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|&cut| cut % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::with_capacity(points.len() + 1);
    let mut start = 0;
    for point in points {
        chunks.push(&bytes[start..point]);
        start = point;
    }
    chunks.push(&bytes[start..]);
    chunks
}
