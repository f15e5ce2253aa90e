//! The threads model's accept thread: it waits in `poll` on its listeners and its wake
//! pipe, admits each client (a registry entry and a thread of its own) or refuses it, and
//! joins client threads as they end, summing their counters.
//!
//! What an accept error means and how a client is refused are `rules`. This file must not
//! read from or write to an admitted client: its own thread does.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::thread::{self, JoinHandle};

use super::connection::{Client, Finished};
use super::peer::Peer;
use super::wire::Wire;
use super::{CLIENT_STACK, WorkerShared};
use crate::io::stream::{BlockingListener, BlockingStream};
use crate::io::sys::{self, PollFd};
use crate::rules::{self, AcceptError};
use crate::{CloseReason, ConnId, Handler, PeerAddr, Stats};

/// The accept thread of one worker and the client threads it spawned.
pub(super) struct AcceptLoop<H> {
    /// What client threads share.
    pub(super) shared: Arc<WorkerShared<H>>,
    /// The listening sockets (nonblocking: `poll` says when to accept).
    pub(super) listeners: Vec<BlockingListener>,
    /// Readable when the worker is woken (stop, or a handover).
    pub(super) wake: io::PipeReader,
    /// Raised when a successor serves the listeners: stop accepting, keep serving.
    pub(super) handover: Arc<AtomicBool>,
    /// Client threads not yet joined, by connection id.
    pub(super) clients: HashMap<ConnId, JoinHandle<Finished>>,
    /// Ids of client threads (accepted or dialed) that have ended and can be joined
    /// without waiting.
    pub(super) done_rx: Receiver<ConnId>,
    /// Counters of this worker.
    pub(super) stats: Stats,
}

impl<H: Handler> AcceptLoop<H> {
    /// Accept until stopped, then close every client and return the counters.
    pub(super) fn run(&mut self) -> io::Result<Stats> {
        let result = self.accept_until_stopped();
        // Whatever ended the loop, close our listener descriptors. Never shut the sockets
        // down: another worker, or a successor process, may still accept on them, and a
        // shutdown would reset the clients waiting in their queue.
        self.listeners.clear();
        self.shared.live.stopped_accepting();
        if result.is_err() {
            self.shared.ending.raise();
            self.shared.registry.shut_reads(self.shared.index);
        }
        let clients: Vec<_> = self.clients.drain().collect();
        for (_, thread) in clients {
            self.join(thread);
        }
        // Dialed connections end with the clients that dialed them, or by the stop. One
        // may dial another before it ends (its thread is added before the dialer's ends):
        // go on until a round finds none left.
        loop {
            let dialed =
                std::mem::take(&mut *self.shared.dialed.lock().unwrap_or_else(|p| p.into_inner()));
            if dialed.is_empty() {
                break;
            }
            for (_, thread) in dialed {
                self.stats.connected += 1;
                self.join(thread);
            }
        }
        log::debug!("threads worker {} stopped", self.shared.index);
        result.map(|()| std::mem::take(&mut self.stats))
    }

    /// The accept loop proper: wait for a client or a wake-up, then accept from every
    /// listener until none has a client waiting.
    fn accept_until_stopped(&mut self) -> io::Result<()> {
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            if self.handover.load(Ordering::SeqCst) {
                log::info!(
                    "threads worker {}: listeners handed over; serving until clients close",
                    self.shared.index
                );
                return Ok(());
            }
            self.wait_for_clients()?;
            for index in 0..self.listeners.len() {
                if !self.accept_from(index)? {
                    return Ok(());
                }
            }
        }
    }

    /// Block until a listener is readable or the worker is woken; empty the wake pipe.
    fn wait_for_clients(&mut self) -> io::Result<()> {
        let mut fds: Vec<PollFd> = self
            .listeners
            .iter()
            .map(|listener| listener.as_raw_fd())
            .chain([self.wake.as_raw_fd()])
            .map(|fd| PollFd::new(fd, libc::POLLIN))
            .collect();
        match sys::poll(&mut fds, -1) {
            Ok(_) => {}
            // A signal: go round again.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(err) => return Err(err),
        }
        let mut sink = [0u8; 64];
        // The pipe is nonblocking: this ends at WouldBlock.
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        Ok(())
    }

    /// Accept from listener `index` until it has no client waiting; false once the server
    /// is stopping. Each arm says why it goes on or ends.
    fn accept_from(&mut self, index: usize) -> io::Result<bool> {
        loop {
            super::memory::slow_accepting(&self.shared.live);
            let accepted = self.listeners[index].accept();
            if self.shared.stop.load(Ordering::SeqCst) {
                // A connection accepted as the server stops is closed unserved.
                return Ok(false);
            }
            let err = match accepted {
                Ok((stream, peer)) => {
                    self.admit(stream, peer);
                    continue;
                }
                Err(err) => err,
            };
            match rules::classify_accept(&err) {
                AcceptError::Retry => {}
                AcceptError::Drained => return Ok(true),
                AcceptError::ClientGone => log::debug!("accept failed: {err}"),
                // Back off instead of spinning; clients closing will free descriptors.
                AcceptError::Exhausted => {
                    self.stats.fd_exhausted += 1;
                    let live = &self.shared.live;
                    live.add_published(self.shared.index, |stats| stats.fd_exhausted += 1);
                    log::warn!(
                        "accept: {err}; retrying in {:?}",
                        self.shared.config.accept_backoff
                    );
                    self.reap();
                    thread::sleep(self.shared.config.accept_backoff);
                    return Ok(true);
                }
                AcceptError::ListenerBroken => {
                    log::error!("accept failed: {err}");
                    return Err(err);
                }
            }
        }
    }

    /// Serve a new client on its own thread, or refuse it when the server is full.
    fn admit(&mut self, stream: BlockingStream, addr: PeerAddr) {
        self.reap();
        let live = &self.shared.live;
        if !live.try_open(self.shared.index, self.shared.config.max_connections) {
            self.refuse(stream, addr);
            return;
        }
        let registry = &self.shared.registry;
        let id = registry.next_id();
        log::trace!("accepted {id} from {addr}");
        let Some(wire) = self.wire_for(addr) else {
            live.closed();
            return;
        };
        let peer = Arc::new(Peer::new(stream, self.shared.index, wire));
        // Register before the client thread first checks the stop flag (it does before
        // every read): `wake` either finds this client in the registry and shuts its read
        // side, or raised the flag before the registration, and then the client thread
        // sees it. Either way no client sleeps through a stop.
        registry.insert(id, Arc::clone(&peer));
        self.stats.accepted += 1;
        let guard = Departure {
            shared: Arc::clone(&self.shared),
            id,
        };
        let client = Client::new(Arc::clone(&self.shared), id, addr, peer);
        let spawned = thread::Builder::new()
            .name(format!("tcp-client-{id}"))
            .stack_size(CLIENT_STACK)
            .spawn(move || {
                let _guard = guard;
                client.serve()
            });
        match spawned {
            Ok(thread) => {
                self.clients.insert(id, thread);
            }
            Err(err) => {
                // The closure (and with it the socket and the guard) was dropped: the
                // client is closed and unregistered.
                log::warn!("could not start a thread for {id} ({addr}): {err}");
                self.stats.count_close(CloseReason::Error(err.kind()));
            }
        }
    }

    /// The transport for a new client: TLS when the server has a TLS configuration.
    /// `None` if its session cannot be made (logged).
    fn wire_for(&self, addr: PeerAddr) -> Option<Wire> {
        #[cfg(feature = "tls")]
        {
            let config = &self.shared.config;
            let tls = self.shared.tls.as_ref();
            match Wire::for_client(
                tls,
                config.handshake_timeout,
                config.max_output,
                &self.shared.live,
            ) {
                Ok(wire) => Some(wire),
                Err(err) => {
                    log::warn!("{addr}: cannot start TLS: {err}; dropping");
                    None
                }
            }
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = addr;
            Some(Wire::Plain)
        }
    }

    /// Turn a client away, without ever blocking the accept thread.
    fn refuse(&mut self, stream: BlockingStream, addr: PeerAddr) {
        log::debug!(
            "refusing {addr}: {} connections open",
            self.shared.config.max_connections
        );
        self.shared.live.count_refused();
        self.stats.refused += 1;
        if stream.set_nonblocking(true).is_ok() {
            rules::refuse(&stream, self.shared.handler.busy_reply());
        }
    }

    /// Join client threads (accepted or dialed) that have ended, adding their counters.
    fn reap(&mut self) {
        while let Ok(id) = self.done_rx.try_recv() {
            if let Some(thread) = self.clients.remove(&id) {
                self.join(thread);
                continue;
            }
            let dialed = self
                .shared
                .dialed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            if let Some(thread) = dialed {
                self.stats.connected += 1;
                self.join(thread);
            }
        }
    }

    /// Join one client thread and add its counters.
    fn join(&mut self, thread: JoinHandle<Finished>) {
        match thread.join() {
            // Refused by `max_per_address` after it was accepted: it counts as refused.
            Ok(finished) if finished.refused => {
                self.stats.refused += 1;
                self.stats.accepted = self.stats.accepted.saturating_sub(1);
            }
            Ok(finished) => {
                self.stats.count_close(finished.reason);
                self.stats.bytes_in += finished.bytes_in;
                self.stats.bytes_out += finished.bytes_out;
            }
            Err(_) => {
                log::error!("a client thread panicked");
                self.stats
                    .count_close(CloseReason::Error(io::ErrorKind::Other));
            }
        }
    }
}

/// Runs when a client thread ends, however it ends (even by a handler panic): the
/// client leaves the registry and the gauges, and the accept thread learns it can join.
struct Departure<H> {
    /// Gauges and registry.
    shared: Arc<WorkerShared<H>>,
    /// The client.
    id: ConnId,
}

impl<H> Drop for Departure<H> {
    fn drop(&mut self) {
        self.shared.registry.remove(self.id);
        self.shared.live.closed();
        // The accept thread may be gone (it joins everyone before leaving, so only when
        // the thread could not be spawned): nothing to tell then.
        let _ = self.shared.done.send(self.id);
    }
}
