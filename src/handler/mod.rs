//! The protocol API: the one trait an embedder implements, and the context it works through.
//!
//! This module owns the contract between a server model (reactor or threads) and protocol
//! code. It must not touch sockets or `mio`: a handler sees bytes and a [`Context`], so the
//! same protocol runs unchanged under every model.

use std::any::Any;
use std::io;
use std::mem;
use std::time::{Duration, Instant};

use crate::{CloseReason, ConnId, PeerAddr};

mod reach;
pub(crate) mod reason;

pub(crate) use reach::{IdMint, Request};

/// A protocol: per-connection session state plus the callbacks a server model drives.
///
/// One handler value serves every connection of a server (and every worker), so it is
/// shared by reference (`&self`). State that belongs to one connection lives in
/// [`Handler::Session`]; state shared between connections (a chat room, a key-value store)
/// lives in the handler behind its own lock.
///
/// # Contract
///
/// - [`open`](Handler::open) is called once per connection, before any input: per
///   accepted client, and per connection dialed with [`Context::connect`] (right after
///   the dialing callback, with [`Context::dialed_by`] set; then
///   [`connected`](Handler::connected) once it is established).
/// - [`data`](Handler::data) is called with *all* unconsumed input of the connection. It
///   returns how many bytes it consumed, from the front. Bytes it does not consume stay
///   buffered and are offered again, with new bytes appended, when more arrive. Returning
///   `0` means "I need more bytes". After a non-zero return with input left, `data` is
///   called again at once, so a handler should consume one frame per call.
/// - Output is bounded by the high-water mark (`Config::high_water`), checked between
///   calls of `data`: once this connection's unsent output, or the output a callback
///   queued for other connections with [`Context::send_to`], passes it, the model stops
///   calling `data`, sends that output, and offers the rest of the input only once the
///   output has drained (the reactor serves other connections meanwhile). So pending
///   output stays within the mark plus what one call wrote: a handler that answers a
///   whole batch of frames in one call defeats the bound, and a single reply larger than
///   the mark is the only way past it.
///   A handler that consumes nothing while the buffered input reaches the input cap has its
///   connection closed with [`CloseReason::InputLimit`].
/// - [`timer`](Handler::timer) fires once per [`Context::set_timer`].
/// - [`close`](Handler::close) is called exactly once per opened connection, with the
///   reason, after which the connection id is dead: output sent to it is discarded.
///   [`ending`](Handler::ending) comes just before it, with a [`Context`].
/// - On the peer's EOF, [`read_closed`](Handler::read_closed) decides between closing
///   (the default) and a half-close; [`congested`](Handler::congested) and
///   [`drained`](Handler::drained) report the output crossing the high- and low-water
///   marks, for flow control across connections.
/// - No callback is made for a connection after `close`, and no callback ever sees a socket.
///
/// # Example
///
/// ```
/// use tcp_reactor::{Context, Handler};
///
/// /// Replies to each byte with its upper-case form.
/// struct Upper;
///
/// impl Handler for Upper {
///     type Session = ();
///     fn open(&self, _ctx: &mut Context<'_>) {}
///     fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         for byte in input {
///             ctx.write(&[byte.to_ascii_uppercase()]);
///         }
///         input.len()
///     }
/// }
/// # let _ = tcp_reactor::Server::new(Upper);
/// ```
pub trait Handler: Send + Sync + 'static {
    /// State kept for one connection from `open` to `close`.
    type Session: Send + 'static;

    /// A connection was accepted (or dialed: see [`Context::dialed_by`]); return its
    /// session. May already write output.
    fn open(&self, ctx: &mut Context<'_>) -> Self::Session;

    /// Input arrived: consume a prefix of `input` and return its length (`<= input.len()`).
    fn data(&self, session: &mut Self::Session, ctx: &mut Context<'_>, input: &[u8]) -> usize;

    /// The timer set with [`Context::set_timer`] expired.
    fn timer(&self, _session: &mut Self::Session, _ctx: &mut Context<'_>) {}

    /// The connection is gone; `reason` says why. Nothing can be sent to it any more.
    fn close(&self, _session: Self::Session, _id: ConnId, _reason: CloseReason) {}

    /// Bytes sent to a client refused because the server is full, before closing it.
    fn busy_reply(&self) -> &[u8] {
        b""
    }

    /// A connection started with [`Context::connect`] is established: output queued for it
    /// meanwhile is sent now. (Its `open` came when the connect started.)
    fn connected(&self, _session: &mut Self::Session, _ctx: &mut Context<'_>) {}

    /// The peer finished sending (EOF). Return `true` to keep the connection open for
    /// output, a half-close: it then closes once the handler closes it, or once its own
    /// sending side is shut with [`Context::shutdown_write`]. The default, `false`, flushes
    /// what is queued and closes, as for any client.
    fn read_closed(&self, _session: &mut Self::Session, _ctx: &mut Context<'_>) -> bool {
        false
    }

    /// This connection's unsent output passed the high-water mark (`Config::high_water`).
    /// A handler feeding it from another connection can pause that one here with
    /// [`Context::pause_reading`]; [`drained`](Handler::drained) follows.
    fn congested(&self, _session: &mut Self::Session, _ctx: &mut Context<'_>) {}

    /// This connection's unsent output fell to the low-water mark (`Config::low_water`)
    /// after [`congested`](Handler::congested).
    fn drained(&self, _session: &mut Self::Session, _ctx: &mut Context<'_>) {}

    /// The connection is about to close for `reason`, with a [`Context`] through which the
    /// handler can still act on other connections (reset a proxied peer, close it, write to
    /// it). Its own output is discarded. [`close`](Handler::close) follows at once.
    fn ending(&self, _session: &mut Self::Session, _ctx: &mut Context<'_>, _reason: CloseReason) {}

    /// A message posted with a [`Poster`](crate::Poster) from another thread. `ctx` belongs
    /// to no connection (writes to it are discarded): reach connections with
    /// [`Context::send_to`] and the other calls that take an id.
    fn posted(&self, _ctx: &mut Context<'_>, _message: Box<dyn Any + Send>) {}
}

/// How a handler asked to close its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseRequest {
    /// Flush queued output, then close.
    AfterFlush,
    /// Drop at once, discarding queued output.
    Now,
}

/// A change to the connection's handler timer, requested during a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerRequest {
    /// Fire at this instant.
    Set(Instant),
    /// Do not fire.
    Cancel,
}

/// What a callback asked the server model to do beyond writing its own output.
#[derive(Debug, Default)]
pub(crate) struct Actions {
    /// Close the connection, if set.
    pub(crate) close: Option<CloseRequest>,
    /// Change the handler timer, if set.
    pub(crate) timer: Option<TimerRequest>,
}

/// Output addressed to other connections, collected during a callback and delivered by
/// the server model afterwards (the sender's own buffer is borrowed while it runs), and
/// what the callback asked of other connections.
///
/// One byte arena and one index, both reused, so broadcasting allocates nothing once warm;
/// after a burst larger than [`KEEP_OUTBOX`] they are trimmed back to that size.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Every message's bytes, back to back.
    bytes: Vec<u8>,
    /// `(destination, end offset in bytes)` per message, in order.
    index: Vec<(ConnId, usize)>,
    /// Connects, pauses, shutdowns and resets asked for other connections, in order.
    pub(crate) requests: Vec<Request>,
    /// Makes the ids of connections a callback dials.
    pub(crate) mint: IdMint,
    /// While `open` runs for a dialed connection: the connection whose callback dialed it.
    pub(crate) opener: Option<ConnId>,
}

/// Capacity, in bytes, that an [`Outbox`]'s arena and index each keep once drained. A
/// burst (a fan-out of many lines to many members) may grow them far beyond; keeping that
/// would hold the peak for the life of the worker or connection.
pub(crate) const KEEP_OUTBOX: usize = 16 * 1024;

impl Outbox {
    /// Queue `data` for connection `to`.
    pub(crate) fn push(&mut self, to: ConnId, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        self.index.push((to, self.bytes.len()));
    }

    /// An empty outbox whose dialed connections take their ids from `mint`.
    pub(crate) fn minting(mint: IdMint) -> Self {
        Outbox {
            mint,
            ..Outbox::default()
        }
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.index.is_empty() && self.requests.is_empty()
    }

    /// True when no bytes are queued (requests may be).
    pub(crate) fn has_no_mail(&self) -> bool {
        self.index.is_empty()
    }

    /// Take the queued bytes, leaving the requests, the mint and the opener in place (the
    /// arena keeps its allocation through [`restore_mail`](Outbox::restore_mail)).
    pub(crate) fn take_mail(&mut self) -> Outbox {
        Outbox {
            bytes: mem::take(&mut self.bytes),
            index: mem::take(&mut self.index),
            ..Outbox::default()
        }
    }

    /// Give back the arena of a drained [`take_mail`](Outbox::take_mail), unless new mail
    /// arrived meanwhile.
    pub(crate) fn restore_mail(&mut self, drained: Outbox) {
        if self.index.is_empty() {
            self.bytes = drained.bytes;
            self.index = drained.index;
        }
    }

    /// Memory the queued messages take, in bytes: their bytes plus their index entries.
    /// This is what the high-water mark bounds per callback batch.
    pub(crate) fn queued(&self) -> usize {
        self.bytes.len() + self.index.len() * mem::size_of::<(ConnId, usize)>()
    }

    /// When every queued message goes to one connection: that connection and all the
    /// bytes, in order (the arena holds them back to back). `None` when nothing is queued
    /// or messages go to several connections.
    pub(crate) fn sole_recipient(&self) -> Option<(ConnId, &[u8])> {
        let (&(to, _), rest) = self.index.split_first()?;
        rest.iter()
            .all(|&(other, _)| other == to)
            .then_some((to, &self.bytes[..]))
    }

    /// Hand every queued message to `deliver`, in order, and empty the outbox.
    pub(crate) fn drain(&mut self, mut deliver: impl FnMut(ConnId, &[u8])) {
        let mut start = 0;
        for &(to, end) in &self.index {
            deliver(to, &self.bytes[start..end]);
            start = end;
        }
        self.bytes.clear();
        self.index.clear();
        self.bytes.shrink_to(KEEP_OUTBOX);
        self.index
            .shrink_to(KEEP_OUTBOX / mem::size_of::<(ConnId, usize)>());
    }
}

/// What a handler can do while it runs: write output, reach other connections, close,
/// and set a timer. Built by the server model for the duration of one callback.
///
/// ```
/// use std::time::Duration;
/// use tcp_reactor::{Context, Handler};
///
/// /// Greets each client, answers `bye` by closing, and closes after 10 silent seconds.
/// struct Greeter;
///
/// impl Handler for Greeter {
///     type Session = ();
///     fn open(&self, ctx: &mut Context<'_>) {
///         ctx.write(format!("hello, connection {}\n", ctx.id()).as_bytes());
///         ctx.set_timer(Duration::from_secs(10));
///     }
///     fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
///         let Some(end) = input.iter().position(|&b| b == b'\n') else {
///             return 0; // Not a whole line yet: wait for more bytes.
///         };
///         if &input[..end] == b"bye" {
///             ctx.write(b"goodbye\n");
///             ctx.close(); // After the goodbye has been sent.
///         } else {
///             ctx.set_timer(Duration::from_secs(10)); // Replaces the previous timer.
///         }
///         end + 1
///     }
///     fn timer(&self, _session: &mut (), ctx: &mut Context<'_>) {
///         ctx.write(b"too quiet\n");
///         ctx.close();
///     }
/// }
/// # let _ = tcp_reactor::Server::new(Greeter);
/// ```
#[derive(Debug)]
pub struct Context<'a> {
    /// Which connection this callback is about.
    id: ConnId,
    /// The peer's address, for logging.
    peer: PeerAddr,
    /// When the current turn of the server began.
    now: Instant,
    /// This connection's output buffer; its first `sent` bytes have already left.
    out: &'a mut Vec<u8>,
    /// How much of `out` is already written to the socket.
    sent: usize,
    /// Close and timer requests.
    actions: &'a mut Actions,
    /// Output to other connections.
    outbox: &'a mut Outbox,
}

impl<'a> Context<'a> {
    /// Assemble a context; only server models do this.
    #[inline]
    pub(crate) fn new(
        id: ConnId,
        peer: PeerAddr,
        now: Instant,
        out: &'a mut Vec<u8>,
        actions: &'a mut Actions,
        outbox: &'a mut Outbox,
    ) -> Self {
        Context {
            id,
            peer,
            now,
            out,
            sent: 0,
            actions,
            outbox,
        }
    }

    /// Say that the first `sent` bytes of the output buffer have already been written, so
    /// that [`pending_output`](Context::pending_output) counts only the rest.
    #[inline]
    pub(crate) fn already_sent(mut self, sent: usize) -> Self {
        self.sent = sent.min(self.out.len());
        self
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Who the peer is: a TCP address, or a Unix-socket client's process credentials.
    pub fn peer_addr(&self) -> PeerAddr {
        self.peer
    }

    /// The time the server's current turn began (cheaper than `Instant::now`).
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Queue `bytes` for this connection. They are sent in order, after earlier output.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Bytes queued for this connection and not yet sent (useful for a handler's own
    /// backpressure decisions).
    #[inline]
    pub fn pending_output(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Queue `bytes` for another connection, by id. Bytes for a connection that is gone
    /// (or is this one: use [`write`](Context::write)) are dropped.
    pub fn send_to(&mut self, to: ConnId, bytes: &[u8]) {
        if to == self.id {
            self.write(bytes);
        } else {
            self.outbox.push(to, bytes);
        }
    }

    /// Bytes this callback batch queued for other connections with
    /// [`send_to`](Context::send_to) that the server has not routed yet (with the
    /// bookkeeping per message). Like [`pending_output`](Context::pending_output), it is
    /// bounded by the high-water mark between calls of [`Handler::data`].
    pub fn queued_for_others(&self) -> usize {
        self.outbox.queued()
    }

    /// Close this connection once its queued output has been sent. No more input is
    /// delivered to the handler.
    pub fn close(&mut self) {
        if self.actions.close.is_none() {
            self.actions.close = Some(CloseRequest::AfterFlush);
        }
    }

    /// Drop this connection at once, discarding queued output.
    pub fn abort(&mut self) {
        self.actions.close = Some(CloseRequest::Now);
    }

    /// Call [`Handler::timer`] for this connection after `after` (replacing any timer
    /// already set).
    pub fn set_timer(&mut self, after: Duration) {
        self.actions.timer = Some(TimerRequest::Set(self.now + after));
    }

    /// True once this callback batch's output, to this connection or to others, passed
    /// `high_water`: the model stops feeding input until it is sent.
    pub(crate) fn over_high_water(&self, high_water: usize) -> bool {
        self.pending_output() > high_water || self.queued_for_others() > high_water
    }

    /// True once the handler asked to close (so a model stops feeding it input).
    #[inline]
    pub(crate) fn close_requested(&self) -> bool {
        self.actions.close.is_some()
    }

    /// Cancel the timer set with [`set_timer`](Context::set_timer), if any.
    pub fn cancel_timer(&mut self) {
        self.actions.timer = Some(TimerRequest::Cancel);
    }
}

impl io::Write for Context<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Context::write(self, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
