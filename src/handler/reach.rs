//! A handler's reach beyond its own connection: dialing out, pausing and resuming reading,
//! shutting down, closing or resetting any connection it holds by id.
//!
//! This module owns those [`Context`] calls and the [`Request`]s they leave in the
//! callback's outbox; the server model carries them out after the callback. Nothing here
//! touches a socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Context;
use crate::ConnId;

/// Something a callback asked of a connection, by id, carried out after the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// Start a nonblocking connect to `addr` as connection `id`, dialed by `by`.
    Connect {
        /// The id returned to the handler.
        id: ConnId,
        /// Where to connect.
        addr: SocketAddr,
        /// The connection whose callback asked.
        by: ConnId,
    },
    /// Stop reading this connection until resumed.
    PauseReading(ConnId),
    /// Read this connection again.
    ResumeReading(ConnId),
    /// Shut down this connection's sending side once its queued output is flushed.
    ShutdownWrite(ConnId),
    /// Close this connection once its queued output is flushed.
    Close(ConnId),
    /// Close this connection at once, discarding queued output.
    Abort(ConnId),
    /// Reset this connection (`SO_LINGER` 0): the peer sees `ECONNRESET`.
    Reset(ConnId),
}

/// Makes connection ids for one worker: `first`, `first + step`, … (workers stripe the
/// id space, so an id also says which worker owns it); or, for the threads model, from
/// the server's one shared counter.
#[derive(Debug, Clone)]
pub(crate) struct IdMint {
    /// The next id to hand out.
    next: u64,
    /// How far apart this worker's ids are: the number of workers.
    step: u64,
    /// The last id handed out server-wide, when ids come from a shared counter.
    shared: Option<Arc<AtomicU64>>,
}

impl Default for IdMint {
    /// A mint for a model that numbers its connections elsewhere: its ids start halfway
    /// up the space, clear of any connection's.
    fn default() -> Self {
        IdMint {
            next: 1 << 63,
            step: 1,
            shared: None,
        }
    }
}

impl IdMint {
    /// The mint of worker `index` of `workers`.
    pub(crate) fn new(index: usize, workers: usize) -> Self {
        IdMint {
            next: index as u64 + 1,
            step: workers.max(1) as u64,
            shared: None,
        }
    }

    /// A mint drawing from `last`, the last id handed out server-wide.
    pub(crate) fn shared(last: Arc<AtomicU64>) -> Self {
        IdMint {
            shared: Some(last),
            ..IdMint::default()
        }
    }

    /// A fresh id, never handed out before by this mint.
    pub(crate) fn next_id(&mut self) -> ConnId {
        if let Some(last) = &self.shared {
            return ConnId(last.fetch_add(1, Ordering::Relaxed) + 1);
        }
        let id = ConnId(self.next);
        self.next += self.step;
        id
    }
}

impl Context<'_> {
    /// Start a nonblocking connect to `addr`, served by this same handler, and return its
    /// id at once. [`Handler::open`](crate::Handler::open) is called for it right after
    /// this callback (with [`dialed_by`](Context::dialed_by) naming this connection), then
    /// [`Handler::connected`](crate::Handler::connected) once it is established, or
    /// [`Handler::close`](crate::Handler::close) with
    /// [`CloseReason::ConnectFailed`](crate::CloseReason::ConnectFailed) if it cannot be
    /// (refused, unreachable, or not established within `Config::connect_timeout`).
    /// Output sent to it meanwhile is queued and sent once it is established.
    ///
    /// Under the threads model the connection gets its own thread, as a client does.
    pub fn connect(&mut self, addr: SocketAddr) -> crate::ConnId {
        let id = self.outbox.mint.next_id();
        self.outbox.requests.push(Request::Connect {
            id,
            addr,
            by: self.id,
        });
        id
    }

    /// In `open` of a connection started with [`connect`](Context::connect): the
    /// connection whose callback dialed it. `None` for an accepted client.
    pub fn dialed_by(&self) -> Option<ConnId> {
        self.outbox.opener
    }

    /// Stop reading connection `id` (this one or another): its input stays in the kernel,
    /// so its peer is slowed by TCP flow control. Output to it is still sent.
    pub fn pause_reading(&mut self, id: ConnId) {
        self.outbox.requests.push(Request::PauseReading(id));
    }

    /// Read connection `id` again after [`pause_reading`](Context::pause_reading).
    pub fn resume_reading(&mut self, id: ConnId) {
        self.outbox.requests.push(Request::ResumeReading(id));
    }

    /// Shut down the sending side of connection `id` once the output queued for it so far
    /// is sent: its peer reads EOF. A connection whose peer has also finished sending (and
    /// whose handler kept it open with `read_closed`) then closes.
    pub fn shutdown_write(&mut self, id: ConnId) {
        self.outbox.requests.push(Request::ShutdownWrite(id));
    }

    /// Close connection `id` once its queued output is sent.
    pub fn close_conn(&mut self, id: ConnId) {
        self.outbox.requests.push(Request::Close(id));
    }

    /// Drop connection `id` at once, discarding its queued output.
    pub fn abort_conn(&mut self, id: ConnId) {
        self.outbox.requests.push(Request::Abort(id));
    }

    /// Reset connection `id`: it is dropped at once and its peer reads `ECONNRESET`.
    pub fn reset_conn(&mut self, id: ConnId) {
        self.outbox.requests.push(Request::Reset(id));
    }
}
