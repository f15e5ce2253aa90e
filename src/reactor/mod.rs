//! The event loop: one thread, one `mio::Poll`, a slab of connections.
//!
//! This module owns the order of work in a turn, `Reactor::turn`: one named step per line.
//! What each step does, and why in that order, is told once, in README.md's "How the loop
//! works"; docs/architecture.md has the stop procedure and the design behind the parts.
//! The files below own one job each. The rules shared with the threads model (feeding the
//! handler, limits, a callback's requests, accept errors, refusals) are `rules`'s; the
//! bytes are the handler's. This module must not import the server that starts it.
//!
//! # Files
//!
//! `Reactor` is a few named parts, each a type with its own file; the steps of a turn are
//! `impl Reactor` blocks, one file per job.
//!
//! The parts:
//! - `connections` — the slab, the id map and the generation: the one place tokens are
//!   made and read;
//! - `accepting` — the listeners, the accept budget's leftover, the descriptor back-off;
//! - `queues` — the turn's lists (serve again, flush, notify, free), mail, the outbox;
//! - `stopping` — the stop and handover flags, the stop's deadline, a listener failure;
//! - `buffers` — the read, scratch and spare output buffers no connection owns;
//! - `timer` (`Timers`), `memory` (`Memory`) — the deadline heap and the budget's state;
//! - `types` — the small shared types (`Call`, `Notice`, `TimerKind`, fixed tokens) and the
//!   worker's `Setup`.
//!
//! The steps:
//! - `accept` — taking clients from the listener, admitting or refusing them;
//! - `proxied` — clients from trusted balancers until their PROXY header is in;
//! - `io_path` — reading, the handler callbacks, writing their output (`send_output` is
//!   the one place that acts on the turn's [`WritePolicy`](crate::WritePolicy)), the limits;
//! - `lifecycle` — a connection's phases: settle, close, revisit, reap;
//! - `mail` — output for other connections, here or on other workers;
//! - `memory` — the server-wide budget: accounting, paused reads, closes, publishing stats;
//! - `timer` — what happens when a deadline passes;
//! - `watch` — recording turns for the live page while someone watches, and step mode's
//!   gate (`Watching`, a part, lives there too);
//! - `outbound` — connections a handler dials, and its requests about connections by id
//!   (pause, resume, shut down, close, reset), with the flow notices it is sent;
//! - `driven` — the public [`EventLoop`]: one turn at a time on the caller's thread, and
//!   the [`Poster`] that sends messages into a running loop.
//!
//! And the connection itself: `connection` — one connection's socket, buffers and
//! [`Phase`] (its bytes go through `io::transport`: the socket, or TLS over it); `socket`
//! — the TCP-or-Unix listener and stream types the reactor registers (`MioListener`,
//! `MioStream`).

use std::io;
use std::mem;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, trace};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::handler::{IdMint, Outbox};
use crate::worker::{Prepared, WorkerSetup};
use crate::{CloseReason, ConnId, Handler, Stats};

mod accept;
mod accepting;
mod buffers;
mod connection;
mod connections;
mod driven;
mod io_path;
mod lifecycle;
mod mail;
mod memory;
mod outbound;
mod proxied;
mod queues;
mod socket;
mod stopping;
mod timer;
mod types;
mod watch;

use accepting::Accepting;
use buffers::Buffers;
use connection::Phase;
use connections::Connections;
use driven::PostBox;
pub use driven::{EventLoop, Poster};
use mail::Mailboxes;
use memory::Memory;
use queues::Queues;
use socket::MioListener;
use stopping::Stopping;
use timer::Timers;
use types::{Setup, WAKER};
use watch::Observed;

/// Readiness events taken per `poll`.
const EVENTS_PER_POLL: usize = 1024;

/// What a readiness event's token stands for, in the words of the log.
#[derive(Debug, Clone, Copy)]
enum TokenName {
    /// Listener `i` of this worker.
    Listener(usize),
    /// The waker (a stop, mail or a posted message).
    Waker,
    /// A connection, by its id (`connection 1`, as in accept and close lines).
    Connection(ConnId),
    /// A connection token whose slot was freed (or reused) earlier in the same batch.
    Stale(usize),
}

impl std::fmt::Display for TokenName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenName::Listener(index) => write!(f, "listener {index}"),
            TokenName::Waker => f.write_str("waker"),
            TokenName::Connection(id) => write!(f, "connection {id}"),
            // mio's own trace lines print tokens in decimal.
            TokenName::Stale(token) => write!(f, "stale token {token} (connection gone)"),
        }
    }
}

/// Build the reactor workers of one server: a `Poll`, a waker and a listener registration
/// each, and the mailboxes through which they reach each other's connections.
pub(crate) fn prepare<H: Handler>(setups: Vec<WorkerSetup<H>>) -> io::Result<Vec<Prepared>> {
    let mailboxes = Arc::new(Mailboxes::new(setups.len()));
    setups
        .into_iter()
        .map(|setup| prepare_one(setup, Arc::clone(&mailboxes)))
        .collect()
}

/// Build one reactor worker.
fn prepare_one<H: Handler>(
    setup: WorkerSetup<H>,
    mailboxes: Arc<Mailboxes>,
) -> io::Result<Prepared> {
    let reactor = Reactor::build(setup, mailboxes)?;
    let waker = Arc::clone(&reactor.setup.posts.waker);
    Ok(Prepared {
        run: Box::new(move || reactor.run()),
        wake: Box::new(move || {
            // Failure means the poll is already gone: the worker has stopped.
            let _ = waker.wake();
        }),
    })
}

impl<H: Handler> Reactor<H> {
    /// A reactor for one worker: its `Poll`, waker, listener registration and mailbox.
    fn build(setup: WorkerSetup<H>, mailboxes: Arc<Mailboxes>) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listeners = Vec::with_capacity(setup.listeners.len());
        for (index, listening) in setup.listeners.into_iter().enumerate() {
            let mut listener = MioListener::from_std(listening)?;
            let token = Accepting::token_for(index);
            poll.registry()
                .register(&mut listener, token, Interest::READABLE)?;
            listeners.push(listener);
        }
        mailboxes.set_waker(setup.index, Arc::clone(&waker));
        let wake = Arc::clone(&waker);
        setup.live.watch.set_waker(
            setup.index,
            Box::new(move || {
                // Failure means the poll is already gone: the worker has stopped.
                let _ = wake.wake();
            }),
        );
        let reactor = Reactor {
            poll,
            handler: setup.handler,
            conns: Connections::default(),
            accepting: Accepting {
                listeners,
                #[cfg(feature = "tls")]
                tls: setup.tls,
                ready: false,
                paused: false,
                fd_episode: false,
                headers: Default::default(),
                counted: Default::default(),
            },
            queues: Queues::new(Outbox::minting(IdMint::new(setup.index, setup.workers))),
            stopping: Stopping::new(setup.stop, setup.handover),
            timers: Timers::default(),
            memory: Memory::default(),
            buffers: Buffers::new(setup.config.read_chunk),
            observed: Observed::default(),
            now: Instant::now(),
            setup: Setup {
                index: setup.index,
                workers: setup.workers,
                config: setup.config,
                live: setup.live,
                mailboxes,
                posts: PostBox::new(waker),
            },
        };
        Ok(reactor)
    }
}

/// A single-threaded event loop serving this worker's listeners and connections, in the
/// named parts below.
struct Reactor<H: Handler> {
    /// The readiness queue (epoll on Linux).
    poll: Poll,
    /// Shared by every connection; each connection's state is its session.
    handler: Arc<H>,
    /// This worker's place, limits and shared handles.
    setup: Setup,
    /// The live connections: the one place tokens are made and read.
    conns: Connections<H::Session>,
    /// Listeners, the accept budget's leftover and the descriptor back-off.
    accepting: Accepting,
    /// The turn's lists: serve again, flush, notify, free; mail; the callback's outbox.
    queues: Queues,
    /// The stop and handover flags, the stop's deadline, a listener failure.
    stopping: Stopping,
    /// Idle, linger, handler, handshake, connect and back-off deadlines.
    timers: Timers,
    /// This worker's side of the server-wide budget for buffered bytes.
    memory: Memory,
    /// The read, scratch and spare output buffers no one connection owns.
    buffers: Buffers,
    /// What this worker reports: its counters, and the turns the live page reads.
    observed: Observed,
    /// When the current turn started.
    now: Instant,
}

impl<H: Handler> Reactor<H> {
    /// Run until stopped; return the stats.
    fn run(mut self) -> io::Result<Stats> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        debug!("worker {} serving", self.setup.index);
        while !self.turn(&mut events, None)? {}
        debug!("worker {} stopped", self.setup.index);
        self.finish()
    }

    /// One turn of the loop, sleeping in `poll` no longer than `limit` (when given) or the
    /// next deadline. Returns true once the worker has stopped.
    fn turn(&mut self, events: &mut Events, limit: Option<Duration>) -> io::Result<bool> {
        let limit = self.watch_begin(limit);
        self.poll_events(events, limit)?;
        // The log macros format nothing unless the level is enabled: no cost otherwise.
        trace!(
            "turn {}: poll returned {} event(s)",
            self.observed.stats.polls,
            events.iter().count()
        );
        self.handle_events(events);
        self.revisit_ready();
        self.deliver_mail();
        self.deliver_posts();
        self.flush_dirty();
        // The batch is over: output of later callbacks (flow notices, timers) goes out at once.
        self.queues.defer = false;
        self.notify_flow();
        self.check_budget();
        self.expire_timers();
        self.reap_finished();
        self.publish_stats();
        self.watch_end(events);
        let stopped = self.check_stop();
        trace!(
            "turn {} ended: {} connection(s) open",
            self.observed.stats.polls,
            self.conns.len()
        );
        Ok(stopped)
    }

    /// The worker's result once stopped: its stats, or why the listener failed.
    fn finish(&mut self) -> io::Result<Stats> {
        match self.stopping.failure.take() {
            Some(err) => Err(err),
            None => Ok(mem::take(&mut self.observed.stats)),
        }
    }

    /// Wait for readiness, no longer than the next deadline (or `limit`), and not
    /// at all when work is already waiting.
    fn poll_events(&mut self, events: &mut Events, limit: Option<Duration>) -> io::Result<()> {
        let now = Instant::now();
        // Reads parked on the budget are retried at least this often, as the budget eases.
        let limit = match (self.memory.has_waiting(), limit) {
            (true, Some(limit)) => Some(limit.min(memory::BUDGET_RECHECK)),
            (true, None) => Some(memory::BUDGET_RECHECK),
            (false, limit) => limit,
        };
        let timeout = if !self.queues.ready.is_empty() || self.accepting.ready {
            Some(Duration::ZERO)
        } else {
            match (self.timers.timeout(now), limit) {
                (Some(due), Some(limit)) => Some(due.min(limit)),
                (due, limit) => due.or(limit),
            }
        };
        match self.poll.poll(events, timeout) {
            Ok(()) => {}
            // A signal arrived while waiting: nothing happened, go round again.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => events.clear(),
            // The poll itself failed: the reactor cannot go on.
            Err(err) => return Err(err),
        }
        self.observed.stats.polls += 1;
        self.now = Instant::now();
        Ok(())
    }

    /// Act on each readiness event.
    fn handle_events(&mut self, events: &Events) {
        self.queues.defer = self.setup.config.write_policy.defers(events.iter().count());
        for event in events {
            self.observed.stats.events += 1;
            let token = event.token();
            trace!(
                "event on {}: readable={} writable={} read_closed={} error={}",
                self.token_name(token),
                event.is_readable(),
                event.is_writable(),
                event.is_read_closed(),
                event.is_error()
            );
            if self.observed.watching.detail {
                self.observed.watching.event(self.token_name(token), event);
            }
            match token {
                token if self.is_listener(token) => self.accept(),
                // Mail and the stop flag are checked every turn.
                WAKER => {}
                token if self.accepting.headers.owns(token) => self.read_header(token),
                token => {
                    let Some(key) = self.live_key(token) else {
                        // The connection closed earlier in this batch (or its slot now
                        // holds another): the event is stale.
                        continue;
                    };
                    if self.conns[key].phase() == Phase::Connecting {
                        self.finish_connect(key);
                        continue;
                    }
                    // Data that arrived before the peer's FIN raises no further edge, so
                    // then (and on error) read until the kernel says WouldBlock or EOF.
                    let drain = event.is_read_closed() || event.is_error();
                    if event.is_readable() || drain {
                        self.read(key, drain);
                    }
                    if event.is_read_closed() {
                        self.peer_finished(key);
                    }
                    if event.is_writable() {
                        if self.queues.defer {
                            // Output deferred this turn is written with the rest.
                            self.mark_dirty(key);
                        } else {
                            self.flush(key);
                        }
                    }
                }
            }
        }
    }

    /// What `token` names, as the rest of the log names it (for trace lines only).
    fn token_name(&self, token: Token) -> TokenName {
        match token {
            WAKER => TokenName::Waker,
            token if self.is_listener(token) => {
                TokenName::Listener(self.accepting.listener_index(token).unwrap_or_default())
            }
            token => match self.live_key(token) {
                Some(key) => TokenName::Connection(self.conns[key].id()),
                None => TokenName::Stale(token.0),
            },
        }
    }

    /// True if `token` is one of the listeners'.
    fn is_listener(&self, token: Token) -> bool {
        self.accepting.listener_index(token).is_some()
    }

    /// The slab key for `token` if it still names a live connection.
    fn live_key(&self, token: Token) -> Option<usize> {
        self.conns.live_key(token)
    }

    /// Begin a graceful stop when asked (or when the listener broke); report true
    /// when it is complete.
    fn check_stop(&mut self) -> bool {
        if self.stopping.is_handed_over() && !self.accepting.listeners.is_empty() {
            self.close_listeners();
            info!(
                "worker {}: listeners handed over; serving {} connections until they close",
                self.setup.index,
                self.conns.len()
            );
        }
        if !self.stopping.has_begun() && self.stopping.is_asked() {
            self.begin_stop();
        }
        let Some(deadline) = self.stopping.deadline else {
            return false;
        };
        if self.conns.is_empty() {
            return true;
        }
        if self.now >= deadline {
            let keys = self.conns.keys();
            for key in keys {
                self.kill(key, CloseReason::Shutdown);
            }
            self.reap_finished();
            return true;
        }
        false
    }

    /// A graceful stop: stop accepting; answer the input that has already arrived; then
    /// close every connection the lingering way (flush, shut down writes, discard input
    /// until the peer's EOF). The whole stop is bounded by `linger`: `check_stop` drops
    /// whatever is left at that deadline.
    fn begin_stop(&mut self) {
        info!(
            "worker {} stopping: {} connections to close",
            self.setup.index,
            self.conns.len()
        );
        if let Some(err) = &self.stopping.failure {
            error!("worker {}: the listener failed: {err}", self.setup.index);
        }
        self.close_listeners();
        self.drop_all_pending();
        self.stopping.deadline = Some(self.now + self.setup.config.linger);
        let keys = self.conns.keys();
        for key in keys {
            self.answer_arrived(key);
            self.begin_close(key, CloseReason::Shutdown);
            self.settle(key);
        }
        self.reap_finished();
    }

    /// Stop accepting: deregister and close this worker's listener descriptors. The
    /// sockets themselves live on while another worker or process holds them, so their
    /// queues are not reset by this.
    fn close_listeners(&mut self) {
        if self.accepting.close(self.poll.registry()) {
            self.setup.live.stopped_accepting();
        }
    }
}
