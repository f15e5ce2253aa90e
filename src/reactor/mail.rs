//! Output for other connections: a callback's messages routed to connections of this
//! worker, or posted to the mailbox of the worker that owns them (chat across workers).
//!
//! Owns the mailboxes between reactor workers (queues and wake-ups) and the delivery of
//! messages into connections' output, each counted against its sender's budget
//! [`Charge`]; the flush happens at the end of the turn. Nothing here touches a socket.

use std::mem;
use std::sync::{Arc, Mutex, OnceLock};

use mio::Waker;

use super::Reactor;
use crate::budget::Charge;
use crate::{ConnId, Handler};

/// A message for a connection of another worker: destination, bytes, and the charge of
/// the connection that sent it, if one did.
pub(crate) type Mail = (ConnId, Vec<u8>, Option<Arc<Charge>>);

/// Messages the mail queue keeps room for once delivered.
const KEEP_MAIL: usize = 256;

/// Messages from one worker's handler to another worker's connection, with the waker that
/// tells the receiving worker to look.
#[derive(Debug)]
struct Mailbox {
    /// Messages in the order they were sent.
    queue: Mutex<Vec<Mail>>,
    /// Set once the worker's `Poll` exists.
    waker: OnceLock<Arc<Waker>>,
}

/// One mailbox per reactor worker of a server.
#[derive(Debug, Default)]
pub(crate) struct Mailboxes {
    /// Indexed by worker.
    slots: Vec<Mailbox>,
}

impl Mailboxes {
    /// Mailboxes for `workers` workers.
    pub(crate) fn new(workers: usize) -> Self {
        let slots = (0..workers)
            .map(|_| Mailbox {
                queue: Mutex::new(Vec::new()),
                waker: OnceLock::new(),
            })
            .collect();
        Mailboxes { slots }
    }

    /// Queue `bytes` for connection `to` owned by `worker`, sent by the owner of `charge`.
    /// Returns true if the queue was empty, i.e. the worker needs waking.
    pub(crate) fn post(
        &self,
        worker: usize,
        to: ConnId,
        bytes: &[u8],
        charge: Option<&Arc<Charge>>,
    ) -> bool {
        let Some(slot) = self.slots.get(worker) else {
            return false;
        };
        let mut queue = slot
            .queue
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        queue.push((to, bytes.to_vec(), charge.cloned()));
        queue.len() == 1
    }

    /// Give `worker` its waker, once its `Poll` exists.
    pub(crate) fn set_waker(&self, worker: usize, waker: Arc<Waker>) {
        if let Some(slot) = self.slots.get(worker) {
            let _ = slot.waker.set(waker);
        }
    }

    /// Wake `worker` so it reads its mailbox.
    pub(crate) fn wake(&self, worker: usize) {
        if let Some(waker) = self.slots.get(worker).and_then(|slot| slot.waker.get()) {
            // Failure means the worker's poll is gone: it is stopping anyway.
            let _ = waker.wake();
        }
    }

    /// Move every message for `worker` into `into`.
    pub(crate) fn take(&self, worker: usize, into: &mut Vec<Mail>) {
        if let Some(slot) = self.slots.get(worker) {
            let mut queue = slot
                .queue
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            mem::swap(&mut *queue, into);
        }
    }
}

impl<H: Handler> Reactor<H> {
    /// Deliver what the last callback sent to other connections, here or on other workers,
    /// and carry out what it asked of connections by id: dials first (so bytes sent to a
    /// new connection queue on it), then the bytes, then the other requests. `from`: the
    /// connection whose callback it was, whom the bytes count against in the budget (none
    /// for a posted message).
    pub(super) fn outbox_route(&mut self, from: Option<usize>) {
        while !self.queues.outbox.is_empty() {
            let mut requests = mem::take(&mut self.queues.outbox.requests);
            self.dial_all(&requests);
            self.route_mail(from);
            self.carry_out(&requests);
            requests.clear();
            if self.queues.outbox.requests.is_empty() {
                self.queues.outbox.requests = requests;
            }
        }
    }

    /// Deliver the bytes of the last callback's outbox, sent by connection `from`.
    fn route_mail(&mut self, from: Option<usize>) {
        if self.queues.outbox.has_no_mail() {
            return;
        }
        // One reference count per callback batch, not per message.
        let worker = self.setup.index;
        let charge = from
            .and_then(|key| self.conns.get_mut(key))
            .map(|conn| Arc::clone(conn.charge(worker)));
        let mut mail = self.queues.outbox.take_mail();
        let mut wake = Vec::new();
        let mut delivered = 0;
        mail.drain(|to, bytes| {
            let owner = self.owner(to);
            if owner == self.setup.index {
                delivered += self.deliver(to, bytes, charge.as_ref());
            } else if self.setup.mailboxes.post(owner, to, bytes, charge.as_ref()) {
                wake.push(owner);
            }
        });
        // Counted once for the batch; nothing is written (and credited) before this.
        if let Some(charge) = &charge {
            charge.add(delivered);
        }
        self.queues.outbox.restore_mail(mail);
        for worker in wake {
            self.setup.mailboxes.wake(worker);
        }
    }

    /// The worker that owns connection `id` (ids are striped over workers).
    fn owner(&self, id: ConnId) -> usize {
        (id.0.saturating_sub(1) % self.setup.workers.max(1) as u64) as usize
    }

    /// Queue `bytes` on local connection `to`, to be flushed at the end of the turn, and
    /// count them against `charge`'s sender in the budget; returns the bytes queued.
    /// Bytes for a connection that is gone or has sent its FIN are dropped.
    fn deliver(&mut self, to: ConnId, bytes: &[u8], charge: Option<&Arc<Charge>>) -> u64 {
        let Some(key) = self.conns.key_of(to) else {
            return 0;
        };
        let Some(conn) = self.conns.get_mut(key) else {
            return 0;
        };
        if !conn.accepts_output() {
            return 0;
        }
        conn.queue_foreign(bytes, charge, self.now);
        self.mark_dirty(key);
        self.account(key);
        // Mail changes output only: the input cap was checked when input last changed.
        self.enforce_limits(key, false);
        bytes.len() as u64
    }

    /// Deliver messages other workers sent to our connections.
    pub(super) fn deliver_mail(&mut self) {
        if self.setup.workers < 2 {
            return;
        }
        let mut inbox = mem::take(&mut self.queues.inbox);
        self.setup.mailboxes.take(self.setup.index, &mut inbox);
        self.observed.watching.mail(inbox.len());
        for (to, bytes, charge) in inbox.drain(..) {
            let delivered = self.deliver(to, &bytes, charge.as_ref());
            if let Some(charge) = charge {
                charge.add(delivered);
            }
        }
        // A burst of mail is over: do not keep its peak (the mailbox gets this vector
        // back at the next swap).
        inbox.shrink_to(KEEP_MAIL);
        self.queues.inbox = inbox;
    }
}
