//! Output for other connections: a callback's messages routed to connections of this
//! worker, or posted to the mailbox of the worker that owns them (chat across workers).
//!
//! Owns the mailboxes between reactor workers (queues and wake-ups) and the delivery of
//! messages into connections' output; the flush happens at the end of the turn. Nothing
//! here touches a socket.

use std::mem;
use std::sync::{Arc, Mutex, OnceLock};

use mio::Waker;

use super::Reactor;
use super::connection::Phase;
use crate::{ConnId, Handler};

/// Messages the mail queue keeps room for once delivered.
const KEEP_MAIL: usize = 256;

/// Messages from one worker's handler to another worker's connection, with the waker that
/// tells the receiving worker to look.
#[derive(Debug)]
struct Mailbox {
    /// `(destination, bytes)` in the order they were sent.
    queue: Mutex<Vec<(ConnId, Vec<u8>)>>,
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

    /// Queue `bytes` for connection `to` owned by `worker`. Returns true if the queue was
    /// empty, i.e. the worker needs waking.
    pub(crate) fn post(&self, worker: usize, to: ConnId, bytes: &[u8]) -> bool {
        let Some(slot) = self.slots.get(worker) else {
            return false;
        };
        let mut queue = slot
            .queue
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        queue.push((to, bytes.to_vec()));
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
    pub(crate) fn take(&self, worker: usize, into: &mut Vec<(ConnId, Vec<u8>)>) {
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
    /// new connection queue on it), then the bytes, then the other requests.
    pub(super) fn outbox_route(&mut self) {
        while !self.outbox.is_empty() {
            let mut requests = mem::take(&mut self.outbox.requests);
            self.dial_all(&requests);
            self.route_mail();
            self.carry_out(&requests);
            requests.clear();
            if self.outbox.requests.is_empty() {
                self.outbox.requests = requests;
            }
        }
    }

    /// Deliver the bytes of the last callback's outbox.
    fn route_mail(&mut self) {
        if self.outbox.has_no_mail() {
            return;
        }
        let mut mail = self.outbox.take_mail();
        let mut wake = Vec::new();
        mail.drain(|to, bytes| {
            let owner = self.owner(to);
            if owner == self.index {
                self.deliver(to, bytes);
            } else if self.mailboxes.post(owner, to, bytes) {
                wake.push(owner);
            }
        });
        self.outbox.restore_mail(mail);
        for worker in wake {
            self.mailboxes.wake(worker);
        }
    }

    /// The worker that owns connection `id` (ids are striped over workers).
    fn owner(&self, id: ConnId) -> usize {
        (id.0.saturating_sub(1) % self.workers.max(1) as u64) as usize
    }

    /// Queue `bytes` on local connection `to`, to be flushed at the end of the turn.
    /// Bytes for a connection that is gone or has sent its FIN are dropped.
    fn deliver(&mut self, to: ConnId, bytes: &[u8]) {
        let Some(&key) = self.ids.get(&to) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if matches!(conn.phase, Phase::Dead(_) | Phase::Lingering(_)) || conn.flow.write_shut {
            return;
        }
        conn.output.extend_from_slice(bytes);
        self.mark_dirty(key);
        self.account(key);
        // Mail changes output only: the input cap was checked when input last changed.
        self.enforce_limits(key, false);
    }

    /// Deliver messages other workers sent to our connections.
    pub(super) fn deliver_mail(&mut self) {
        if self.workers < 2 {
            return;
        }
        let mut inbox = mem::take(&mut self.inbox);
        self.mailboxes.take(self.index, &mut inbox);
        for (to, bytes) in inbox.drain(..) {
            self.deliver(to, &bytes);
        }
        // A burst of mail is over: do not keep its peak (the mailbox gets this vector
        // back at the next swap).
        inbox.shrink_to(KEEP_MAIL);
        self.inbox = inbox;
    }
}
