//! A reactor connection's life after each event: resume reading when output drains, close
//! once flushed, linger for the peer's EOF, revisit what a budget stopped early, and free
//! what finished.
//!
//! Every decision here is a `match` over the connection's [`Phase`]. This file makes no
//! socket call of its own except the FIN of a lingering close: reading, writing and handler
//! callbacks go through the I/O path, which a revisit calls.

use std::mem;

use log::trace;

use super::Reactor;
use super::connection::Phase;
use super::types::Call;
use super::types::Notice;
use super::types::TimerKind;
use crate::handler::Actions;
use crate::rules::Ending;
use crate::{CloseReason, Context, Handler};

impl<H: Handler> Reactor<H> {
    /// Decide what a connection does next after its output changed: resume reading below
    /// the low-water mark, and close once everything is flushed if it is closing.
    pub(super) fn settle(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        // Nothing left to write: an idle connection keeps no output buffer.
        let pending = conn.release_output(&mut self.buffers.spare);
        // What it holds now, once an emptied buffer went back to the pool.
        conn.account(&self.setup.live.budget);
        if conn.is_congested() && pending <= self.setup.config.low_water {
            self.notice(key, Notice::Drained);
        }
        let conn = &mut self.conns[key];
        conn.shutdown_if_asked();
        match conn.phase() {
            Phase::Paused if pending <= self.setup.config.low_water => {
                conn.resume_below_low_water();
                // Input that arrived while paused raised its edge already: revisit.
                self.queue_ready(key);
            }
            // Everything below waits for the output to be flushed.
            _ if pending > 0 => {}
            // The peer is done and so are we.
            Phase::Draining(reason) => {
                conn.close_notify();
                self.kill(key, reason);
            }
            // Both directions are finished: the peer's by its EOF, ours by the shutdown.
            Phase::HalfClosed if conn.write_shut() => {
                conn.close_notify();
                self.kill(key, CloseReason::Eof);
            }
            // Lingering close (stopping too): send our FIN, then read until the peer's EOF
            // (or the linger deadline) so unread input does not turn the close into a reset.
            // A client that closes on EOF sends nothing more, so it waits no longer.
            Phase::Closing(reason) => conn.linger(reason),
            Phase::Open
            | Phase::Paused
            | Phase::Connecting
            | Phase::HalfClosed
            | Phase::Lingering(_)
            | Phase::Dead(_) => {}
        }
    }

    /// The peer sent EOF: stop reading, flush what is queued (bounded by the linger
    /// timeout), then close.
    /// The handler may keep it open for output instead (`read_closed`): a half-close.
    pub(super) fn on_eof(&mut self, key: usize) {
        if self.keeps_half_open(key) {
            self.settle(key);
            return;
        }
        if let Some(conn) = self.conns.get_mut(key) {
            conn.peer_closed();
            self.arm_linger(key);
            self.settle(key);
        }
    }

    /// Ask the handler whether connection `key`, whose peer sent EOF, stays open for
    /// output; if so it becomes [`Phase::HalfClosed`].
    fn keeps_half_open(&mut self, key: usize) -> bool {
        let asks = self
            .conns
            .get(key)
            .is_some_and(|conn| matches!(conn.phase(), Phase::Open | Phase::Paused));
        if !asks {
            return false;
        }
        self.queues.half_open_asked = false;
        self.invoke(key, Call::ReadClosed);
        let keep = mem::take(&mut self.queues.half_open_asked);
        keep && self
            .conns
            .get_mut(key)
            .is_some_and(|conn| conn.half_close())
    }

    /// The poll reports that the peer has finished sending. A paused connection does not
    /// read its EOF until its output drains, which a peer that never reads prevents: bound
    /// its life with the linger deadline now.
    pub(super) fn peer_finished(&mut self, key: usize) {
        if self
            .conns
            .get(key)
            .is_some_and(|conn| conn.phase() == Phase::Paused)
        {
            self.arm_linger(key);
        }
    }

    /// End connection `key` as `ending` says.
    pub(super) fn end(&mut self, key: usize, ending: Ending) {
        match ending {
            Ending::Abrupt(reason) => self.kill(key, reason),
            Ending::Lingering(reason) => self.begin_close(key, reason),
            Ending::Graceful(reason)
                if self
                    .conns
                    .get(key)
                    .is_some_and(|conn| conn.phase() == Phase::Connecting) =>
            {
                self.kill(key, reason)
            }
            // Flush, then close without waiting for the peer: as after its EOF.
            Ending::Graceful(reason) => {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.close_after_flush(reason);
                    self.arm_linger(key);
                }
            }
        }
    }

    /// Start closing connection `key` for `reason` once its output is flushed.
    /// A connection still connecting has nothing to flush: it is dropped at once.
    pub(super) fn begin_close(&mut self, key: usize, reason: CloseReason) {
        if self
            .conns
            .get(key)
            .is_some_and(|conn| conn.phase() == Phase::Connecting)
        {
            self.kill(key, reason);
            return;
        }
        if let Some(conn) = self.conns.get_mut(key) {
            if conn.request_close(reason) {
                trace!("connection {}: closing ({reason}) after flush", conn.id());
            }
            self.arm_linger(key);
        }
    }

    /// Bound how long a closing connection may live.
    pub(super) fn arm_linger(&mut self, key: usize) {
        let at = self.now + self.setup.config.linger;
        if let Some(conn) = self.conns.get_mut(key)
            && conn.arm_linger(at)
        {
            self.timers.arm(at, conn.token(), TimerKind::Linger);
        }
    }

    /// Mark connection `key` finished; it is freed in the reap step.
    pub(super) fn kill(&mut self, key: usize, reason: CloseReason) {
        if let Some(conn) = self.conns.get_mut(key)
            && conn.die(reason)
        {
            self.queues.reap.push(key);
        }
    }

    /// Put connection `key` on the list to read again next turn.
    pub(super) fn queue_ready(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && conn.mark_queued()
        {
            self.queues.ready.push(conn.token());
        }
    }

    /// Serve again what a budget or a pause stopped early, without a new edge.
    pub(super) fn revisit_ready(&mut self) {
        if self.accepting.ready {
            self.accept();
        }
        let mut ready = mem::take(&mut self.queues.ready);
        for token in ready.drain(..) {
            let Some(key) = self.live_key(token) else {
                continue;
            };
            let conn = &mut self.conns[key];
            conn.take_queued();
            // Input buffered while paused (or held at high water) is offered first; only
            // once it is all taken is the socket read again. Under the memory budget it
            // waits as a read would: feeding it grows output here or at its receivers.
            if conn.buffered_input() > 0
                && conn.phase().wants_input()
                && (!self.budget_allows_read(key) || self.invoke(key, Call::Data(0)))
            {
                continue;
            }
            self.read(key, true);
        }
        // Keep the allocation unless new entries arrived meanwhile.
        if self.queues.ready.is_empty() {
            self.queues.ready = ready;
        }
    }

    /// Feed the handler what connection `key` has received and not yet offered, as a
    /// stop begins: its buffered input, then what waits in the socket (within one read
    /// budget). Closing with a request unanswered would lose a reply the client is owed.
    pub(super) fn answer_arrived(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if !conn.phase().wants_input() {
            // Paused above high water, closing, or finished: it reads no more requests.
            return;
        }
        if conn.buffered_input() > 0 {
            self.invoke(key, Call::Data(0));
        }
        self.read(key, true);
    }

    /// Put connection `key` on the end-of-turn flush list if it has output to write.
    pub(super) fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && conn.mark_dirty()
        {
            self.queues.dirty.push(conn.token());
        }
    }

    /// Flush the output queued during the turn, each connection once.
    pub(super) fn flush_dirty(&mut self) {
        let mut dirty = mem::take(&mut self.queues.dirty);
        for token in dirty.drain(..) {
            if let Some(key) = self.live_key(token) {
                self.conns[key].take_dirty();
                self.flush(key);
            }
        }
        if self.queues.dirty.is_empty() {
            self.queues.dirty = dirty;
        }
    }

    /// Free finished connections and tell the handler why each closed (`ending`
    /// may close others, which are freed in the same step).
    pub(super) fn reap_finished(&mut self) {
        let mut next = 0;
        while next < self.queues.reap.len() {
            let key = self.queues.reap[next];
            next += 1;
            if !self.conns.contains(key) {
                continue;
            }
            self.call_ending(key);
            let conn = self.conns.remove(key);
            let id = conn.id();
            let (reason, session) = conn.finish(&self.setup.live.budget);
            self.observed.stats.count_close(reason);
            self.setup.live.closed();
            if let Some(group) = self.accepting.counted.remove(&id) {
                self.setup.live.admission.release(group);
            }
            if let Some(session) = session {
                self.handler.close(session, id, reason);
            }
            // Dropping the stream closes the descriptor, which also removes it from epoll.
        }
        self.queues.reap.clear();
    }

    /// `Handler::ending` for dead connection `key`: its last chance to act on others.
    fn call_ending(&mut self, key: usize) {
        let handler = &*self.handler;
        let conn = &mut self.conns[key];
        let (id, peer) = (conn.id(), conn.peer());
        let Some((reason, session)) = conn.ending() else {
            return;
        };
        let mut actions = Actions::default();
        let mut ctx = Context::new(
            id,
            peer,
            self.now,
            &mut self.buffers.scratch_out,
            &mut actions,
            &mut self.queues.outbox,
        );
        handler.ending(session, &mut ctx, reason);
        // Its own output has nowhere to go.
        self.buffers.scratch_out.clear();
        self.outbox_route(Some(key));
    }
}
