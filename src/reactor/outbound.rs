//! Connections a handler dials, and what a handler asks of connections by id: pause and
//! resume reading, shut down writing after the flush, close, abort, reset. Also the flow
//! notices a handler is sent: a connection's output passed high water, or drained.
//!
//! Dialing is the only socket creation outside the accept path: a nonblocking connect,
//! registered like an accepted client, in the [`Phase::Connecting`] phase until the poll
//! reports it writable and `SO_ERROR` says how it went. Everything else here only changes
//! a connection's [`Flow`](super::connection::Flow) or phase and leaves the socket calls to
//! the I/O path and `lifecycle`.

use std::io;
use std::mem;
use std::net::SocketAddr;

use log::{debug, trace};
use mio::Interest;
use mio::net::TcpStream;

use super::Reactor;
use super::connection::{Connection, Phase};
use super::socket::MioStream;
use super::types::TimerKind;
use super::types::{Call, Notice};
use crate::handler::{Actions, Request};
use crate::rules::Connect;
use crate::{CloseReason, ConnId, Context, Handler};

impl<H: Handler> Reactor<H> {
    /// Carry out what the last callbacks asked of connections by id, in order.
    pub(super) fn carry_out(&mut self, requests: &[Request]) {
        for &request in requests {
            match request {
                // Dialed before the mail is delivered, so bytes sent to it are queued.
                Request::Connect { .. } => {}
                Request::PauseReading(id) => self.with_conn(id, Connection::pause_reading),
                Request::ResumeReading(id) => {
                    if let Some(key) = self.key_of(id)
                        && self.conns[key].resume_reading()
                    {
                        // Input that arrived meanwhile raised its edge already.
                        self.queue_ready(key);
                    }
                }
                Request::ShutdownWrite(id) => {
                    if let Some(key) = self.key_of(id) {
                        self.conns[key].ask_shutdown_write();
                        self.settle(key);
                    }
                }
                Request::Close(id) => {
                    if let Some(key) = self.key_of(id) {
                        self.begin_close(key, CloseReason::Handler);
                        self.settle(key);
                    }
                }
                Request::Abort(id) => {
                    if let Some(key) = self.key_of(id) {
                        self.kill(key, CloseReason::Handler);
                    }
                }
                Request::Reset(id) => {
                    if let Some(key) = self.key_of(id) {
                        self.conns[key].set_reset_on_close();
                        self.kill(key, CloseReason::Reset);
                    }
                }
            }
        }
    }

    /// Dial every connection the requests ask for (before their mail is delivered).
    pub(super) fn dial_all(&mut self, requests: &[Request]) {
        for &request in requests {
            if let Request::Connect { id, addr, by } = request {
                self.dial(id, addr, by);
            }
        }
    }

    /// Start a nonblocking connect to `addr` as connection `id`, and call `open` for it.
    /// A connect that fails at once still gets its `open`, then its `close`.
    fn dial(&mut self, id: ConnId, addr: SocketAddr, by: ConnId) {
        let stream = if self.stopping.has_begun() {
            Err(io::Error::other("the server is stopping"))
        } else if !self
            .setup
            .live
            .try_open(self.setup.index, self.setup.config.max_connections)
        {
            Err(io::Error::other("the connection limit is reached"))
        } else {
            // `connect` on a mio stream is nonblocking: `EINPROGRESS` is success here.
            let stream = TcpStream::connect(addr).map(MioStream::Tcp);
            if stream.is_err() {
                self.setup.live.closed();
            }
            stream
        };
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(err) => {
                debug!("connect to {addr} for {by}: {err}");
                self.fail_unborn(id, addr, by, &err);
                return;
            }
        };
        let token = self.conns.next_token();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(err) = self.poll.registry().register(&mut stream, token, interest) {
            self.setup.live.closed();
            self.fail_unborn(id, addr, by, &err);
            return;
        }
        let key = self.conns.insert(Connection::connecting(
            stream,
            token,
            id,
            addr.into(),
            self.now,
        ));
        self.observed.stats.connected += 1;
        trace!(
            "dial {addr} as connection {id} (slot {key}, token {}) for {by}",
            token.0
        );
        self.timers.arm(
            self.now + self.setup.config.connect_timeout,
            token,
            TimerKind::Connect,
        );
        self.queues.outbox.opener = Some(by);
        self.invoke(key, Call::Open);
        self.queues.outbox.opener = None;
    }

    /// A dial that failed before it had a socket: the handler still sees `open` (so it
    /// learns the id's fate), then `ending` and `close` with `ConnectFailed`.
    fn fail_unborn(&mut self, id: ConnId, addr: SocketAddr, by: ConnId, err: &io::Error) {
        let reason = CloseReason::ConnectFailed(err.kind());
        let handler = std::sync::Arc::clone(&self.handler);
        let mut out = mem::take(&mut self.buffers.scratch_out);
        let mut actions = Actions::default();
        self.queues.outbox.opener = Some(by);
        let mut ctx = Context::new(
            id,
            addr.into(),
            self.now,
            &mut out,
            &mut actions,
            &mut self.queues.outbox,
        );
        let mut session = handler.open(&mut ctx);
        self.queues.outbox.opener = None;
        let mut ctx = Context::new(
            id,
            addr.into(),
            self.now,
            &mut out,
            &mut actions,
            &mut self.queues.outbox,
        );
        handler.ending(&mut session, &mut ctx, reason);
        out.clear();
        self.buffers.scratch_out = out;
        self.observed.stats.count_close(reason);
        handler.close(session, id, reason);
        self.outbox_route(None);
    }

    /// The poll reported a connecting connection: established, failed, or not yet.
    pub(super) fn finish_connect(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let reset = match conn.connect_result() {
            Connect::Pending => return,
            Connect::Failed(err) => {
                debug!(
                    "connect to {} for connection {}: {err}",
                    conn.peer(),
                    conn.id()
                );
                self.kill(key, CloseReason::ConnectFailed(err.kind()));
                return;
            }
            Connect::Established => false,
            Connect::EstablishedThenReset => true,
        };
        conn.establish(self.now);
        if let Some(idle) = self.setup.config.idle_timeout {
            self.timers
                .arm(self.now + idle, conn.token(), TimerKind::Idle);
        }
        self.invoke(key, Call::Connected);
        if reset {
            self.kill(key, CloseReason::Reset);
            return;
        }
        self.flush(key);
        // The peer may have written already: its readable edge may be this one.
        self.read(key, true);
    }

    /// A connect ran out of time.
    pub(super) fn expire_connect(&mut self, key: usize) {
        if self.conns[key].phase() == Phase::Connecting {
            self.kill(key, CloseReason::ConnectFailed(io::ErrorKind::TimedOut));
        }
    }

    /// Note a flow notice for connection `key`, delivered at the end of the turn.
    pub(super) fn notice(&mut self, key: usize, notice: Notice) {
        let conn = &mut self.conns[key];
        conn.noticed(notice);
        self.queues.notices.push((conn.token(), notice));
    }

    /// Tell handlers whose connections' output passed high water or drained.
    pub(super) fn notify_flow(&mut self) {
        while !self.queues.notices.is_empty() {
            let notices = mem::take(&mut self.queues.notices);
            for &(token, notice) in &notices {
                if let Some(key) = self.live_key(token) {
                    let call = match notice {
                        Notice::Congested => Call::Congested,
                        Notice::Drained => Call::Drained,
                    };
                    self.invoke(key, call);
                }
            }
            self.flush_dirty();
        }
    }

    /// The slab key of live connection `id`.
    fn key_of(&self, id: ConnId) -> Option<usize> {
        self.conns.live_key_of(id)
    }

    /// Change live connection `id`, if there is one.
    fn with_conn(&mut self, id: ConnId, change: impl FnOnce(&mut Connection<H::Session>)) {
        if let Some(key) = self.key_of(id) {
            change(&mut self.conns[key]);
        }
    }
}
