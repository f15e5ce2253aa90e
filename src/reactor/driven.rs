//! The reactor driven from outside: an [`EventLoop`] that runs one turn at a time on the
//! caller's thread (libuv's `UV_RUN_ONCE`, redis's `aeProcessEvents`), whose poll
//! descriptor can be nested in another event loop, and a [`Poster`] through which any
//! thread hands messages to the handler of a running loop.
//!
//! This module owns the posted-message queue and the step interface; the turn itself is
//! the loop's own (`Reactor::turn`). Posting touches no socket: it queues the message and
//! wakes the poll through the loop's `mio::Waker`.

use std::any::Any;
use std::fmt;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::{Events, Waker};

use super::mail::Mailboxes;
use super::socket::MioListener;
use super::{EVENTS_PER_POLL, Reactor};
use crate::handler::Actions;
use crate::worker::WorkerSetup;
use crate::{ConnId, Context, Handler, Stats};

/// Messages posted to one reactor from other threads, and the waker that announces them.
pub(crate) struct PostBox {
    /// Messages in the order they were posted.
    queue: Mutex<Vec<Box<dyn Any + Send>>>,
    /// Wakes the reactor's poll (also used to announce a stop).
    pub(crate) waker: Arc<Waker>,
}

impl fmt::Debug for PostBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostBox").finish_non_exhaustive()
    }
}

impl PostBox {
    /// An empty post box waking the poll through `waker`.
    pub(crate) fn new(waker: Arc<Waker>) -> Arc<Self> {
        Arc::new(PostBox {
            queue: Mutex::new(Vec::new()),
            waker,
        })
    }

    /// Queue `message`; wake the reactor if it was not already due to look.
    fn post(&self, message: Box<dyn Any + Send>) -> io::Result<()> {
        let first = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.push(message);
            queue.len() == 1
        };
        if first { self.waker.wake() } else { Ok(()) }
    }

    /// Every message posted so far, in order.
    fn take(&self) -> Vec<Box<dyn Any + Send>> {
        mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A thread-safe handle that posts messages into a running reactor: each is handed to
/// [`Handler::posted`] on the reactor's thread, with a [`Context`] through which the
/// handler reaches its connections. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Poster {
    /// The reactor's queue and waker.
    posts: Arc<PostBox>,
}

impl Poster {
    /// Post `message`; the reactor wakes and delivers it within its next turn. Fails only
    /// if the reactor's poll is gone (it has stopped); a message posted to a stopped
    /// reactor is dropped.
    pub fn post<M: Any + Send>(&self, message: M) -> io::Result<()> {
        self.posts.post(Box::new(message))
    }
}

/// A reactor run on the caller's thread, one turn at a time: for an application with its
/// own main loop. Built by [`Server::event_loop`](crate::Server::event_loop).
pub struct EventLoop<H: Handler> {
    /// The loop itself.
    reactor: Reactor<H>,
    /// Readiness events, reused across turns.
    events: Events,
    /// The last turn completed a stop.
    stopped: bool,
}

impl<H: Handler> fmt::Debug for EventLoop<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("connections", &self.reactor.conns.len())
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> EventLoop<H> {
    /// A loop serving `setup`'s listener, not yet turned.
    pub(crate) fn new(setup: WorkerSetup<H>) -> io::Result<Self> {
        let mailboxes = Arc::new(Mailboxes::new(1));
        Ok(EventLoop {
            reactor: Reactor::build(setup, mailboxes)?,
            events: Events::with_capacity(EVENTS_PER_POLL),
            stopped: false,
        })
    }

    /// Run one turn: wait for readiness at most `timeout` (`Some(Duration::ZERO)`: not at
    /// all; `None`: until an event or the loop's next deadline), serve what is ready,
    /// deliver posted messages, expire timers, and return. Returns true once the loop has
    /// stopped (see [`stop`](EventLoop::stop)); turning it again does nothing.
    pub fn turn(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        if !self.stopped {
            self.stopped = self.reactor.turn(&mut self.events, timeout)?;
            // The peak is kept server-wide (workers' peaks need not coincide), not in a
            // worker's counters; this loop is the whole server, so its peak is that one.
            self.reactor.observed.stats.peak_connections =
                self.reactor.setup.live.peak_connections();
            if let Some(err) = self.reactor.stopping.failure.take() {
                return Err(err);
            }
        }
        Ok(self.stopped)
    }

    /// Begin a graceful stop: later turns close every connection (bounded by
    /// `Config::linger`) until [`turn`](EventLoop::turn) returns true.
    pub fn stop(&self) {
        self.reactor.stopping.asked.store(true, Ordering::SeqCst);
    }

    /// The descriptor of the loop's poll (an epoll instance on Linux): readable when a
    /// turn has work. Register it in another event loop and call
    /// [`turn`](EventLoop::turn) with a zero timeout when it fires. Deadlines (idle,
    /// connect and handler timers) raise no readiness: turn at least as often as the
    /// shortest of them, or whenever the outer loop wakes.
    pub fn poll_fd(&self) -> RawFd {
        self.reactor.poll.as_raw_fd()
    }

    /// A handle through which other threads post messages to the handler.
    pub fn poster(&self) -> Poster {
        Poster {
            posts: Arc::clone(&self.reactor.setup.posts),
        }
    }

    /// The address the loop's listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.reactor.accepting.listeners.first() {
            Some(MioListener::Tcp(listener)) => listener.local_addr(),
            // `Server::event_loop` binds one TCP address, so this is a stopped loop.
            _ => Err(io::Error::other("the loop has stopped listening")),
        }
    }

    /// Connections open now, accepted and dialed.
    pub fn connections(&self) -> usize {
        self.reactor.conns.len()
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.reactor.observed.stats
    }
}

impl<H: Handler> Reactor<H> {
    /// Hand every posted message to the handler, with a context of no connection.
    pub(super) fn deliver_posts(&mut self) {
        let messages = self.setup.posts.take();
        self.observed.watching.mail(messages.len());
        for message in messages {
            let mut actions = Actions::default();
            let mut ctx = Context::new(
                ConnId(0),
                SocketAddr::from(([0, 0, 0, 0], 0)).into(),
                self.now,
                &mut self.buffers.scratch_out,
                &mut actions,
                &mut self.queues.outbox,
            );
            self.handler.posted(&mut ctx, message);
            // Output to "this connection" has nowhere to go.
            self.buffers.scratch_out.clear();
            self.outbox_route(None);
        }
    }
}
