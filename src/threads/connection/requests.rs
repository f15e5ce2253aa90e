//! What a threads-model callback asks of connections by id (`handler::reach`), carried out
//! on the asking thread.
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

use crate::Handler;
use crate::handler::Request;
use crate::threads::WorkerShared;
use crate::threads::registry::Registry;

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
