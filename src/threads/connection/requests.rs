//! What a threads-model callback asks of connections by id (`handler::reach`), and the
//! messages it sends them, carried out on the asking thread.
//!
//! A connect gets a thread of its own (`connection::dial`). Shutting down, closing and
//! resetting act on the target's socket through its `Peer`, which wakes its thread.
//! Pausing and resuming need nothing here: a writer's blocking write already paces the
//! writer's own thread by its slowest receiver.

use std::net::Shutdown;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::collections::HashMap;

use super::Client;
use crate::handler::Request;
use crate::threads::WorkerShared;
use crate::threads::registry::Registry;
use crate::{ConnId, Handler};

/// Dial every connection `requests` ask for.
pub(in crate::threads) fn dial_all<H: Handler>(
    shared: &Arc<WorkerShared<H>>,
    requests: &[Request],
) {
    for &request in requests {
        if let Request::Connect { id, addr, by } = request {
            super::dial(shared, id, addr, by);
        }
    }
}

/// Carry out the requests other than connects.
pub(in crate::threads) fn carry_out(registry: &Registry, requests: &[Request]) {
    for &request in requests {
        let (id, how) = match request {
            Request::Connect { .. } | Request::PauseReading(_) | Request::ResumeReading(_) => {
                continue;
            }
            Request::ShutdownWrite(id) => (id, Shutdown::Write),
            Request::Close(id) | Request::Abort(id) => (id, Shutdown::Both),
            Request::Reset(id) => (id, Shutdown::Read),
        };
        let Some(peer) = registry.get(id) else {
            continue;
        };
        if let Request::Reset(_) = request {
            // Its thread wakes from the shut read side and drops the socket without a FIN.
            peer.reset.store(true, Ordering::SeqCst);
            let _ = socket2::SockRef::from(&peer.stream).set_linger(Some(Duration::ZERO));
            // A half-closed thread has read its EOF already: a shut read side would not
            // wake it. Reset the connection here; its thread wakes to the error. (The
            // flags are set and read in opposite orders on the two threads, so one of
            // them sees the other's.)
            if peer.half_closed.load(Ordering::SeqCst) {
                let _ = crate::io::sys::disconnect(peer.stream.as_fd());
                continue;
            }
        }
        // An error means the socket is already shut or broken: its thread will notice.
        let _ = peer.stream.shutdown(how);
    }
}

impl<H: Handler> Client<H> {
    /// Deliver the callback's messages to other clients; unknown ids are dropped.
    ///
    /// Messages for one recipient are joined and written at once (a chat line to many
    /// clients, or many lines to one, cost one write per recipient, not per message).
    pub(super) fn deliver_outbox(&mut self) {
        // Dialed first, so bytes sent to a new connection reach it; the other requests after
        // the bytes, so a shutdown follows what was sent before it.
        let requests = std::mem::take(&mut self.fx.outbox.requests);
        dial_all(&self.shared, &requests);
        let registry = &self.shared.registry;
        let patience = self.shared.config.linger;
        // Only requests (a proxy's connect, shutdown or reset): nothing to write.
        if self.fx.outbox.has_no_mail() {
            carry_out(registry, &requests);
            return;
        }
        // The common case (a proxy, a reply to one other connection): one recipient, whose
        // bytes are written straight from the arena, with no map and no copy.
        if let Some((to, bytes)) = self.fx.outbox.sole_recipient() {
            match registry.get(to) {
                Some(peer) => self.bytes_out += peer.deliver(to, bytes, patience),
                None => log::trace!("dropped {} bytes for {to}: gone", bytes.len()),
            }
            self.fx.outbox.drain(|_, _| {});
            carry_out(registry, &requests);
            return;
        }
        let mut mail: HashMap<ConnId, Vec<u8>> = HashMap::new();
        self.fx.outbox.drain(|to, bytes| {
            mail.entry(to).or_default().extend_from_slice(bytes);
        });
        for (to, bytes) in mail {
            match registry.get(to) {
                Some(peer) => self.bytes_out += peer.deliver(to, &bytes, patience),
                None => log::trace!("dropped {} bytes for {to}: gone", bytes.len()),
            }
        }
        carry_out(registry, &requests);
    }
}
