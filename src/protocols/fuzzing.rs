//! What the fuzz targets in `fuzz/` reach that the public API does not: a socket-free
//! connection driven the way both server models drive one, and the RESP framer.
//!
//! Compiled only with the `fuzzing` feature and hidden from the docs: it is no API for
//! embedders and may change with the fuzz targets. It must not grow protocol knowledge of
//! its own; it only opens what the unit tests' driver (`protocols::testkit`) already does.

use std::fmt;

use crate::protocols::testkit::Driver;
use crate::{ConnId, Handler};

pub use crate::protocols::resp::frame::{
    Check, Framer, MAX_ARGS, MAX_BULK, MAX_INLINE, ProtocolError,
};

/// Make the `http` protocol's `Date` lines on this thread the epoch's, so that a split
/// feed and a whole one of the same input give the same bytes in any second.
pub fn freeze_http_date() {
    crate::protocols::http::freeze_date();
}

/// One connection of a handler, fed with `rules::feed` as both server models feed it (all
/// unconsumed input on every call, called again at once while it consumes), its output
/// taken as soon as it is written, so the high-water mark only splits the feeding.
pub struct Conn<'h, H: Handler>(Driver<'h, H>);

impl<'h, H: Handler> Conn<'h, H> {
    /// Open connection number `id` on `handler` (ids order connections, as the server's do).
    pub fn open(handler: &'h H, id: u64) -> Self {
        Conn(Driver::open(handler, ConnId(id)))
    }

    /// Deliver one read's bytes; nothing is delivered once the handler asked to close.
    pub fn read(&mut self, chunk: &[u8]) {
        self.0.read(chunk);
    }

    /// Every byte the handler wrote to this connection, in order.
    pub fn output(&self) -> &[u8] {
        &self.0.output
    }

    /// Forget the output so far (a greeting, say).
    pub fn clear_output(&mut self) {
        self.0.output.clear();
    }

    /// True once the handler asked to close (or abort).
    pub fn closed(&self) -> bool {
        self.0.closed
    }

    /// Input the handler has not consumed yet: what the server would hold for it.
    pub fn buffered(&self) -> usize {
        self.0.buffered()
    }

    /// Take the messages the handler sent to other connections, in order, as
    /// `(connection number, bytes)`.
    pub fn take_mail(&mut self) -> Vec<(u64, Vec<u8>)> {
        let mut mail = Vec::new();
        self.0
            .outbox
            .drain(|to, bytes| mail.push((to.0, bytes.to_vec())));
        mail
    }
}

impl<H: Handler> fmt::Debug for Conn<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("output", &self.0.output.len())
            .field("buffered", &self.0.buffered())
            .field("closed", &self.0.closed)
            .finish_non_exhaustive()
    }
}
