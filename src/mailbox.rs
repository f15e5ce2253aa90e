//! Mailboxes between reactor workers: how a handler on one worker sends bytes to a
//! connection owned by another (chat across workers).
//!
//! Owns only the queues and the wake-ups; the receiving reactor delivers the bytes to its
//! connection on its next turn. Nothing here touches a socket.

use std::mem;
use std::sync::{Arc, Mutex, OnceLock};

use mio::Waker;

use crate::ConnId;

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

impl Mailboxes {
    /// Give `worker` its waker, once its `Poll` exists.
    pub(crate) fn set_waker(&self, worker: usize, waker: Arc<Waker>) {
        if let Some(slot) = self.slots.get(worker) {
            let _ = slot.waker.set(waker);
        }
    }
}
