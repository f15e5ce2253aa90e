//! A connection's side of the server-wide budget for buffered bytes: what it holds, what it
//! queued on others, and whom to blame when the budget must close someone.

use super::*;

impl<S> Connection<S> {
    /// Bytes this connection's buffers hold from the allocator, for the budget.
    #[inline]
    pub(super) fn holding(&self) -> usize {
        self.input.capacity() + self.output.capacity() + self.foreign.memory()
    }

    /// Record what it holds now in `budget` (an atomic operation only when it changed).
    #[inline]
    pub(crate) fn account(&mut self, budget: &Budget) {
        let holding = self.holding();
        budget.update(&mut self.accounted, holding);
    }

    /// Whether it may be read under the budget's `pressure`. What it queued on others
    /// counts as its own holding: a sender that fills its receivers' buffers stops being
    /// read as a client filling its own would. Only reading for the handler is held back:
    /// a closing connection reads to reach the peer's EOF.
    #[inline]
    pub(crate) fn may_read(&self, pressure: Pressure) -> bool {
        let holding = self
            .holding()
            .saturating_add(self.queued_on_others() as usize);
        !self.phase.wants_input() || budget::may_read(pressure, holding)
    }

    /// What its callbacks queued on other connections, not yet written.
    #[inline]
    pub(super) fn queued_on_others(&self) -> u64 {
        self.sender.get().map_or(0, |charge| charge.queued())
    }

    /// The charge its messages to others count against, made on the first (`worker`:
    /// this reactor's index).
    pub(crate) fn charge(&mut self, worker: usize) -> &Arc<Charge> {
        self.sender.charge(worker)
    }

    /// The charge its messages to others count against, if it sent any.
    pub(crate) fn sender_charge(&self) -> Option<&Arc<Charge>> {
        self.sender.get()
    }

    /// The bytes it is to blame for itself in the budget: what it is counted for, less
    /// what other connections queued on it (filed in `blame` under their senders).
    pub(crate) fn blame_own(&mut self, blame: &mut Blame, now: Instant, worker: usize) -> u64 {
        if self.foreign.is_empty() {
            return self.accounted as u64;
        }
        // Only bytes whose sender is gone depend on it: spare the syscall.
        let taking = self.foreign.has_orphans() && self.takes_output(now);
        blame.receiver(
            self.accounted,
            &self.foreign,
            self.output.capacity(),
            self.output.len() - self.sent,
            taking,
            worker,
        )
    }

    /// Log, at debug level, what it holds as it is closed for the budget.
    pub(crate) fn log_budget_close(&self) {
        debug!(
            "connection {} closed for the budget: input {} of {} bytes, output {} of {}, \
             queued on others {}",
            self.id,
            self.input.len(),
            self.input.capacity(),
            self.pending(),
            self.output.capacity(),
            self.queued_on_others(),
        );
    }

    /// Whether the peer takes the output other connections queued here (see
    /// [`Foreign::taken_lately`]); may ask the kernel (one `ioctl`).
    pub(super) fn takes_output(&mut self, now: Instant) -> bool {
        let (stream, written) = (&self.stream, self.written);
        self.foreign.taken_lately(now, || {
            let queued = stream.unacknowledged().ok()?;
            Some(written.saturating_sub(queued))
        })
    }

    /// Queue `bytes` that another connection's callback sent, counted against `charge`
    /// (its sender) if given.
    #[inline]
    pub(crate) fn queue_foreign(
        &mut self,
        bytes: &[u8],
        charge: Option<&Arc<Charge>>,
        now: Instant,
    ) {
        if let Some(charge) = charge {
            let position = self.written + (self.output.len() - self.sent) as u64;
            self.foreign.push(charge, position, bytes.len(), now);
        }
        self.output.extend_from_slice(bytes);
    }
}
