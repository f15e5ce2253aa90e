//! A threads-model connection that a handler dialed (`Context::connect`), served by a
//! thread of its own from `open` to `close`, as an accepted client is; the half-close
//! both kinds of client thread support (`Handler::read_closed`), and the end they share
//! (`ending`, `close`, and the thread's report to the budget and the live statistics).
//!
//! The connect starts nonblocking on the dialing thread, so the connection is in the
//! registry before its id is used; its own thread then waits for it to be established,
//! until the deadline `Config::connect_timeout` set at the dial. Senders wait at its gate
//! meanwhile; a connect that fails is aborted before the gate opens, so they fail at once
//! rather than wait on the kernel's own retries (about two minutes of SYNs).

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use super::{Client, Finished, write_slice};
use crate::handler::{Actions, IdMint, Outbox};
use crate::io::stream::BlockingStream;
use crate::io::sys::{self, PollFd};
use crate::rules::{Connect, Ending};
use crate::threads::peer::Peer;
use crate::threads::{CLIENT_STACK, WorkerShared};
use crate::{CloseReason, ConnId, Context, Handler, PeerAddr};

/// Start connecting to `addr` as connection `id`, dialed by `by`, and give it a thread.
/// A connect that fails at once is reported to the handler on this thread.
pub(in crate::threads) fn dial<H: Handler>(
    shared: &Arc<WorkerShared<H>>,
    id: ConnId,
    addr: SocketAddr,
    by: ConnId,
) {
    if shared.stop.load(Ordering::SeqCst) {
        let err = io::Error::other("the server is stopping");
        return fail_unborn(&*shared.handler, id, addr, by, &err);
    }
    if !shared
        .live
        .try_open(shared.index, shared.config.max_connections)
    {
        let err = io::Error::other("the connection limit is reached");
        return fail_unborn(&*shared.handler, id, addr, by, &err);
    }
    let deadline = Instant::now() + shared.config.connect_timeout;
    let stream = match start_connect(addr, write_slice(&shared.config)) {
        Ok(stream) => stream,
        Err(err) => {
            shared.live.closed();
            return fail_unborn(&*shared.handler, id, addr, by, &err);
        }
    };
    let peer = Arc::new(Peer::connecting(
        BlockingStream::Tcp(stream),
        shared.index,
        deadline,
    ));
    shared.registry.insert(id, Arc::clone(&peer));
    let client = Client::new(Arc::clone(shared), id, addr.into(), Arc::clone(&peer));
    let guard = Leaving {
        shared: Arc::clone(shared),
        id,
    };
    // Spawned with the lock held, so the handle is in the map before the thread can end
    // and send its id to the accept thread, which then takes the handle from the map.
    let mut dialed = shared.dialed.lock().unwrap_or_else(|p| p.into_inner());
    let spawned = thread::Builder::new()
        .name(format!("tcp-dialed-{id}"))
        .stack_size(CLIENT_STACK)
        .spawn(move || {
            let _guard = guard;
            client.serve_dialed(by)
        });
    match spawned {
        Ok(thread) => {
            dialed.insert(id, thread);
        }
        Err(err) => {
            drop(dialed);
            log::warn!("could not start a thread for dialed {id} ({addr}): {err}");
            // No thread will finish this connect: abort it, and let senders fail at once.
            let _ = peer.stream.shutdown(Shutdown::Both);
            peer.gate.open();
        }
    }
}

/// A nonblocking connect to `addr`, then a blocking socket. Its options are set before
/// the connect: a write to a socket still connecting waits for the connect, and must be
/// bounded by the send timeout (`write_timeout`) like every other write.
fn start_connect(addr: SocketAddr, write_timeout: Duration) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    socket.set_write_timeout(Some(write_timeout))?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(err) => return Err(err),
    }
    socket.set_nonblocking(false)?;
    Ok(socket.into())
}

/// A dial that failed before it had a socket: `open`, then `ending` and `close`.
pub(in crate::threads) fn fail_unborn<H: Handler>(
    handler: &H,
    id: ConnId,
    addr: SocketAddr,
    by: ConnId,
    err: &io::Error,
) {
    let reason = CloseReason::ConnectFailed(err.kind());
    log::debug!("{by}: connect to {addr}: {err}");
    let (mut out, mut actions, mut outbox) = (Vec::new(), Actions::default(), Outbox::default());
    outbox.opener = Some(by);
    let now = Instant::now();
    let addr = PeerAddr::from(addr);
    let mut session = handler.open(&mut Context::new(
        id,
        addr,
        now,
        &mut out,
        &mut actions,
        &mut outbox,
    ));
    let mut ctx = Context::new(id, addr, now, &mut out, &mut actions, &mut outbox);
    handler.ending(&mut session, &mut ctx, reason);
    handler.close(session, id, reason);
}

/// Leaves the registry and the gauges when a dialed connection's thread ends, and tells
/// the accept thread it can be joined.
struct Leaving<H> {
    /// Gauges and registry.
    shared: Arc<WorkerShared<H>>,
    /// The connection.
    id: ConnId,
}

impl<H> Drop for Leaving<H> {
    fn drop(&mut self) {
        self.shared.registry.remove(self.id);
        self.shared.live.closed();
        // The accept thread may be gone (it joins every thread before leaving, so only
        // when this thread could not be spawned): nothing to tell then.
        let _ = self.shared.done.send(self.id);
    }
}

impl<H: Handler> Client<H> {
    /// A fresh outbox whose dialed connections are numbered like every client.
    pub(super) fn outbox(shared: &WorkerShared<H>) -> Outbox {
        Outbox::minting(IdMint::shared(shared.registry.id_source()))
    }

    /// Serve a dialed connection: `open` at once, then `connected` once established (or
    /// `close` with `ConnectFailed`), then as any client.
    fn serve_dialed(mut self, by: ConnId) -> Finished {
        self.fx.outbox.opener = Some(by);
        let (mut session, actions) = self.open();
        self.fx.outbox.opener = None;
        let outcome = self.await_connect();
        let failed = match &outcome {
            Connect::Failed(err) => {
                log::debug!("connect to {} for {by}: {err}", self.addr);
                Some(self.closed_reason(CloseReason::ConnectFailed(err.kind())))
            }
            // Our own shutdown (the stop, or a sender that gave up) aborts a connect the
            // way a reset would: the connection was never established.
            Connect::EstablishedThenReset => match self.closed_reason(CloseReason::Reset) {
                CloseReason::Reset => None,
                reason => Some(reason),
            },
            _ => None,
        };
        if failed.is_some() {
            // Abort the kernel's attempt (a connect to a host that drops SYNs goes on for
            // minutes): a sender waiting at the gate then fails at once, and the
            // descriptor is freed with the last reference.
            let _ = self.peer.stream.shutdown(Shutdown::Both);
        }
        self.peer.gate.open();
        let reason = match failed {
            Some(reason) => {
                self.fx.out.clear();
                // What `open` asked of others still happens (it may have written to them).
                self.deliver_outbox();
                reason
            }
            None => {
                let ending = match self.after_callback(actions, false) {
                    Some(ending) => ending,
                    None => self.connected(&mut session, outcome),
                };
                self.end(ending)
            }
        };
        self.finish(session, reason)
    }

    /// `Handler::connected`, then the read loop (or the reset, if the peer reset it
    /// already).
    fn connected(&mut self, session: &mut H::Session, established: Connect) -> Ending {
        let mut actions = Actions::default();
        let handler = Arc::clone(&self.shared.handler);
        let now = Instant::now();
        handler.connected(
            session,
            &mut self.fx.context(self.id, self.addr, now, &mut actions),
        );
        match self.after_callback(actions, false) {
            Some(ending) => ending,
            None if matches!(established, Connect::EstablishedThenReset) => {
                self.peer.reset.store(true, Ordering::Relaxed);
                Ending::Abrupt(CloseReason::Reset)
            }
            None => self.run(session),
        }
    }

    /// Wait until the connect completes, or its deadline passes (the stop, which shuts
    /// the socket, ends the wait too).
    fn await_connect(&self) -> Connect {
        let deadline = self
            .peer
            .connect_deadline
            .unwrap_or_else(|| Instant::now() + self.shared.config.connect_timeout);
        let stream = &self.peer.stream;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Connect::Failed(io::ErrorKind::TimedOut.into());
            }
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            match sys::poll_one(stream.as_raw_fd(), libc::POLLOUT, ms) {
                Ok(0) => continue,
                Err(err) => {
                    if err.kind() != io::ErrorKind::Interrupted {
                        return Connect::Failed(err);
                    }
                }
                // Writable or hung up: established, unless an error is pending. (The
                // peer may have answered and closed already; the reads will show it.)
                _ => {
                    return match stream.take_error() {
                        Ok(None) => Connect::Established,
                        Ok(Some(err)) | Err(err) => Connect::from_error(err),
                    };
                }
            }
        }
    }

    /// The peer sent EOF: ask the handler whether to stay open for output
    /// (`read_closed`); if so wait until our sending side is shut too.
    pub(super) fn on_read_closed(&mut self, session: &mut H::Session) -> Ending {
        let mut actions = Actions::default();
        let handler = Arc::clone(&self.shared.handler);
        let now = Instant::now();
        let keep = handler.read_closed(
            session,
            &mut self.fx.context(self.id, self.addr, now, &mut actions),
        );
        if let Some(ending) = self.after_callback(actions, false) {
            return ending;
        }
        if !keep {
            return Ending::Graceful(CloseReason::Eof);
        }
        self.wait_write_shut()
    }

    /// Half-closed: wait until our sending side is shut as well (`POLLHUP`: both
    /// directions done), a reset (the peer's, or one a handler asked for), the end of the
    /// worker's clients (a stop), or the idle timeout. One `poll` waits for all of them:
    /// nothing wakes the thread until one happens.
    fn wait_write_shut(&mut self) -> Ending {
        let fd = self.peer.stream.as_raw_fd();
        // Set before the reset flag is read: a handler's reset either is seen below or
        // is carried out on the socket, which wakes the poll (see `requests`).
        self.peer.half_closed.store(true, Ordering::SeqCst);
        loop {
            if self.peer.reset.load(Ordering::SeqCst) {
                return Ending::Abrupt(CloseReason::Reset);
            }
            if self.shared.stop.load(Ordering::Relaxed) {
                return Ending::Graceful(CloseReason::Shutdown);
            }
            let timeout = match self.shared.config.idle_timeout {
                Some(idle) => {
                    let left =
                        (self.last_progress + idle).saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ending::Graceful(CloseReason::IdleTimeout);
                    }
                    // Rounded up, so the poll does not end just before the deadline.
                    left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
                }
                None => -1,
            };
            // No events asked of the socket: `POLLERR` and `POLLHUP` are always reported.
            let mut fds = [
                PollFd::new(fd, 0),
                PollFd::new(self.shared.ending.fd(), libc::POLLIN),
            ];
            // A failed poll (a signal) reports nothing: the loop looks again.
            if sys::poll(&mut fds, timeout).is_err() {
                continue;
            }
            let revents = fds[0].revents();
            if self.peer.reset.load(Ordering::SeqCst) || revents & libc::POLLERR != 0 {
                return Ending::Abrupt(CloseReason::Reset);
            }
            if revents & libc::POLLHUP != 0 {
                return Ending::Graceful(CloseReason::Eof);
            }
            if fds[1].revents() != 0 {
                return Ending::Graceful(CloseReason::Shutdown);
            }
        }
    }

    /// `Handler::ending` (whose requests are carried out), then `close`; the thread's report.
    pub(super) fn finish(&mut self, mut session: H::Session, reason: CloseReason) -> Finished {
        let mut actions = Actions::default();
        let handler = Arc::clone(&self.shared.handler);
        let now = Instant::now();
        handler.ending(
            &mut session,
            &mut self.fx.context(self.id, self.addr, now, &mut actions),
            reason,
        );
        self.fx.out.clear();
        if !self.fx.outbox.is_empty() {
            self.deliver_outbox();
        }
        handler.close(session, self.id, reason);
        self.report(reason)
    }

    /// The thread's report once its connection ended: its bytes leave the budget, and its
    /// close and traffic join the worker's live statistics.
    pub(super) fn report(&mut self, reason: CloseReason) -> Finished {
        self.shared.live.budget.update(&mut self.accounted, 0);
        let (bytes_in, bytes_out) = (self.bytes_in, self.bytes_out);
        self.shared.live.add_published(self.shared.index, |stats| {
            stats.count_close(reason);
            stats.bytes_in += bytes_in;
            stats.bytes_out += bytes_out;
        });
        Finished {
            reason,
            bytes_in,
            bytes_out,
            refused: false,
        }
    }
}
