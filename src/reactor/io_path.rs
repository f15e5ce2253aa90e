//! The reactor's I/O path: reading a connection within its budget, making handler
//! callbacks, sending what they wrote, and holding the connection to its limits.
//!
//! Feeding the handler, the limits and the meaning of a callback's requests are `rules`,
//! shared with the threads model. This file decides when to read and write; what a
//! connection does next (resume, close, linger) is left to `lifecycle`.

use log::{debug, trace, warn};

use super::Reactor;
use super::connection::{FlushOutcome, Phase};
use super::types::TimerKind;
use super::types::{Call, Notice};
use crate::handler::Actions;
use crate::rules::{self, Ending, Limit, ReadOutcome, Stop};
use crate::{CloseReason, Context, Handler};

/// The shared output buffer is trimmed back to this capacity after a large burst.
const KEEP_SCRATCH: usize = 1024 * 1024;
/// Deferred output is written at once when a connection has more than this queued (or more
/// than its high-water mark): batching saves nothing on writes this large, and the pause
/// at high water must still mean "the kernel refused it", whatever the policy.
const DEFER_LIMIT: usize = 64 * 1024;

impl<H: Handler> Reactor<H> {
    /// Read from connection `key` and feed the handler, within the read budget.
    ///
    /// With `drain` false, a short read ends the visit: on Linux, bytes arriving after it
    /// raise a new edge, so reading again would only return `WouldBlock` (a wasted syscall
    /// per message). With `drain` true (the peer has closed, or a revisit) read until
    /// `WouldBlock`, EOF or the budget.
    pub(super) fn read(&mut self, key: usize, drain: bool) {
        let mut budget = self.setup.config.read_budget.max(1);
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if !conn.wants_read() {
                return;
            }
            if budget == 0 {
                self.queue_ready(key);
                return;
            }
            if !self.budget_allows_read(key) {
                return;
            }
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let want = budget.min(self.buffers.read.len());
            self.observed.stats.reads += 1;
            match conn.read_into(&mut self.buffers.read[..want]) {
                ReadOutcome::Data(n) => {
                    self.observed.stats.bytes_in += n as u64;
                    budget -= n;
                    trace!("read {n} bytes from connection {}", conn.id());
                    self.observed
                        .watching
                        .io(conn.id(), "read", n, &self.buffers.read[..n]);
                    // A closing connection reads only to reach the peer's EOF.
                    if conn.phase().wants_input() && self.invoke(key, Call::Data(n)) {
                        // Output passed high water with input left: the rest waits for a
                        // revisit, and reading more now would only pile it up.
                        return;
                    }
                    if n < want && !drain {
                        return;
                    }
                }
                ReadOutcome::Eof => {
                    trace!("read 0 bytes: connection {} sent EOF", conn.id());
                    self.on_eof(key);
                    return;
                }
                ReadOutcome::WouldBlock => {
                    // The TLS handshake completed: output queued during it can go now.
                    if conn.take_flush_due() {
                        self.flush(key);
                    }
                    return;
                }
                ReadOutcome::Failed(err) => {
                    debug!("read from connection {}: {err}", conn.id());
                    self.kill(key, CloseReason::from_io(&err));
                    return;
                }
            }
        }
    }

    /// Make one handler callback for connection `key`, then act on what it asked for.
    ///
    /// Returns true when feeding stopped at the high-water mark with input left over. That
    /// input is offered again by a revisit (queued here, unless reads are paused: then the
    /// drain below low water queues it), so other connections are served in between.
    pub(super) fn invoke(&mut self, key: usize, call: Call) -> bool {
        let handler = &*self.handler;
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        // Written at once with nothing pending, output goes to the shared buffer and
        // straight to the socket. Otherwise it queues behind what is pending, or stays in
        // the connection's own buffer until the end of the turn: no copy either way.
        let use_scratch = !self.queues.defer && conn.pending() == 0;
        let (id, peer) = (conn.id(), conn.peer());
        let scratch = use_scratch.then_some(&mut self.buffers.scratch_out);
        let callee = conn.callee(scratch, &mut self.buffers.spare);
        let mark = callee.mark;
        // The requests live exactly as long as this callback.
        let mut actions = Actions::default();
        let mut ctx = Context::new(
            id,
            peer,
            self.now,
            callee.out,
            &mut actions,
            &mut self.queues.outbox,
        )
        .already_sent(callee.already_sent);
        let mut held = false;
        let mut consumed = false;
        match (call, callee.session.as_mut()) {
            (Call::Open, _) => *callee.session = Some(handler.open(&mut ctx)),
            (Call::Data(fresh), Some(session)) => {
                let fresh = &self.buffers.read[..fresh];
                let high_water = self.setup.config.high_water;
                let fed = rules::feed(handler, session, callee.input, fresh, &mut ctx, high_water);
                consumed = fed.consumed > 0;
                held = fed.stop == Stop::HighWater;
            }
            (Call::Timer, Some(session)) => handler.timer(session, &mut ctx),
            (Call::Connected, Some(session)) => handler.connected(session, &mut ctx),
            (Call::ReadClosed, Some(session)) => {
                self.queues.half_open_asked = handler.read_closed(session, &mut ctx);
            }
            (Call::Congested, Some(session)) => handler.congested(session, &mut ctx),
            (Call::Drained, Some(session)) => handler.drained(session, &mut ctx),
            (_, None) => {}
        }
        if consumed {
            conn.progressed(self.now);
        }
        // Only a callback that may have consumed input is held to the input cap: the flow
        // and connect callbacks leave the input as it was (it may be waiting at high water).
        let input_unchanged = matches!(
            call,
            Call::Connected | Call::ReadClosed | Call::Congested | Call::Drained
        );
        self.after_callback(key, use_scratch, mark, actions, held || input_unchanged);
        if held
            && self
                .conns
                .get(key)
                .is_some_and(|conn| conn.phase().wants_input())
        {
            self.queue_ready(key);
        }
        held
    }

    /// Carry out a callback's requests, send what it wrote (or leave it for the end of the
    /// turn), enforce the limits, and route its messages to other connections. `mark`: the
    /// length of the connection's own buffer before the callback. `held`: feeding stopped
    /// at high water, so the input left waits for output, not for more bytes.
    // Called once per callback, from `invoke` only: inlined, as it was when both were one.
    #[inline(always)]
    fn after_callback(
        &mut self,
        key: usize,
        used_scratch: bool,
        mark: usize,
        actions: Actions,
        held: bool,
    ) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let applied = conn.apply(actions);
        if let Some(at) = applied.arm {
            self.timers.arm(at, conn.token(), TimerKind::Handler);
        }
        let alive = match applied.close {
            Some(Ending::Abrupt(reason)) => {
                // `abort` discards this callback's output: nothing of it may reach the peer.
                self.buffers.scratch_out.clear();
                if self.queues.defer {
                    // Earlier callbacks' output would already be on the wire under the
                    // eager policy: give it its one write, as that policy would have.
                    conn.abort_output(mark, &mut self.observed.stats, self.now);
                }
                self.kill(key, reason);
                false
            }
            _ => self.send_output(key, used_scratch),
        };
        if alive {
            if let Some(ending) = applied.close {
                self.end(key, ending);
            }
            self.enforce_limits(key, !held);
        }
        self.outbox_route(Some(key));
        if alive {
            self.settle(key);
        }
    }

    /// Send what a callback wrote: from the shared buffer at once, or by flushing the
    /// connection's queue, or (deferring) by putting the connection on the end-of-turn
    /// flush list. Returns false if the connection failed (and is now dead).
    // Called once per callback, from `after_callback` only.
    #[inline(always)]
    fn send_output(&mut self, key: usize, used_scratch: bool) -> bool {
        let conn = &mut self.conns[key];
        if conn.phase() == Phase::Connecting {
            // Not established yet: output waits in the queue for `connected`.
            conn.queue_scratch(&mut self.buffers.scratch_out);
            return true;
        }
        let pending = conn.pending();
        // The one decision point of the write policy: leave the output for the end of the
        // turn, unless there is too much of it to gain from waiting. `flush_dirty` writes
        // it, and counts it as progress then.
        if self.queues.defer && pending <= self.setup.config.high_water.min(DEFER_LIMIT) {
            self.mark_dirty(key);
            return true;
        }
        let before = self.observed.stats.bytes_out;
        let mut outcome = FlushOutcome::Done;
        if used_scratch && !self.buffers.scratch_out.is_empty() {
            outcome = conn.send(&self.buffers.scratch_out, &mut self.observed.stats);
            let written = (self.observed.stats.bytes_out - before) as usize;
            self.observed
                .watching
                .io(conn.id(), "write", written, &self.buffers.scratch_out);
            trace!(
                "wrote {} of {} bytes to connection {}",
                self.observed.stats.bytes_out - before,
                self.buffers.scratch_out.len(),
                conn.id()
            );
            self.buffers.scratch_out.clear();
            if self.buffers.scratch_out.capacity() > KEEP_SCRATCH {
                self.buffers.scratch_out.shrink_to(KEEP_SCRATCH);
            }
        } else if pending > 0 {
            let first = self.observed.watching.pending(conn);
            outcome = conn.flush(&mut self.observed.stats, self.now);
            let written = (self.observed.stats.bytes_out - before) as usize;
            self.observed
                .watching
                .io(conn.id(), "write", written, &first);
        }
        if self.observed.stats.bytes_out > before {
            // Output written is progress, for the idle timeout.
            conn.progressed(self.now);
        }
        if let FlushOutcome::Failed(err) = outcome {
            debug!("write to connection {}: {err}", conn.id());
            self.kill(key, CloseReason::from_io(&err));
            return false;
        }
        true
    }

    /// Apply the output cap and high-water mark to connection `key`, and the input cap
    /// when `check_input` (its input just stopped for want of bytes, not for output).
    #[inline]
    pub(super) fn enforce_limits(&mut self, key: usize, check_input: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase().is_dead() {
            return;
        }
        match rules::check_limits(conn.pending(), conn.buffered_input(), &self.setup.config) {
            Limit::OutputCap => {
                warn!(
                    "connection {} ({}): {} bytes of unsent output exceed the cap of {}; closing",
                    conn.id(),
                    conn.peer(),
                    conn.pending(),
                    self.setup.config.max_output
                );
                self.kill(key, CloseReason::OutputLimit);
            }
            // A closing connection reads no more: its input is not held against it.
            Limit::InputCap if check_input && conn.phase().close_requested().is_none() => {
                warn!(
                    "connection {} ({}): {} bytes of unconsumed input reach the cap of {}; closing",
                    conn.id(),
                    conn.peer(),
                    conn.buffered_input(),
                    self.setup.config.max_input
                );
                self.begin_close(key, CloseReason::InputLimit);
            }
            Limit::AboveHighWater if !conn.is_congested() => {
                if conn.pause_above_high_water() {
                    trace!(
                        "connection {}: output above high water; pausing reads",
                        conn.id()
                    );
                }
                self.notice(key, Notice::Congested);
            }
            Limit::AboveHighWater => {
                conn.pause_above_high_water();
            }
            Limit::InputCap | Limit::Within => {}
        }
    }

    /// Write pending output of connection `key`; then see whether it can close or resume.
    pub(super) fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase().is_dead() || conn.phase() == Phase::Connecting || conn.pending() == 0 {
            return;
        }
        let before = self.observed.stats.bytes_out;
        let first = self.observed.watching.pending(conn);
        let outcome = conn.flush(&mut self.observed.stats, self.now);
        let written = (self.observed.stats.bytes_out - before) as usize;
        self.observed
            .watching
            .io(conn.id(), "write", written, &first);
        if let FlushOutcome::Failed(err) = outcome {
            debug!("write to connection {}: {err}", conn.id());
            self.kill(key, CloseReason::from_io(&err));
            return;
        }
        if self.observed.stats.bytes_out > before {
            conn.progressed(self.now);
            trace!(
                "wrote {} bytes to connection {}",
                self.observed.stats.bytes_out - before,
                conn.id()
            );
        }
        self.settle(key);
    }
}
