//! One load thread: its own `mio::Poll` and a `Vec` of client connections, driven through
//! three phases — connect (with the ramp), wait for every thread, exchange messages.
//!
//! This module owns the schedule and the stop conditions; it must not check bytes (that is
//! `client`) nor print anything.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::connection::{Client, Expected, State};
use super::socket::Endpoint;
use super::tally::Tally;

/// Longest single wait in `poll`, so deadlines and the progress counter stay fresh.
const TICK: Duration = Duration::from_millis(50);

/// Size of the read buffer shared by every connection of one thread.
const READ_CHUNK: usize = 64 * 1024;

/// What every load thread must do; the same for all of them.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The echo server.
    pub(crate) endpoint: Endpoint,
    /// Total connections, over all threads.
    pub(crate) connections: usize,
    /// Load threads.
    pub(crate) threads: usize,
    /// Bytes per message.
    pub(crate) size: usize,
    /// Messages in flight per connection.
    pub(crate) pipeline: usize,
    /// Total messages over all connections, if the run is bounded by count.
    pub(crate) messages: Option<u64>,
    /// How long to send once every connection is up, if the run is bounded by time.
    pub(crate) duration: Option<Duration>,
    /// Connections are opened evenly over this long.
    pub(crate) ramp: Duration,
    /// How long after the ramp a connect may still take before it counts as failed.
    pub(crate) connect_timeout: Duration,
    /// Nothing runs past `start + hard_timeout`.
    pub(crate) hard_timeout: Duration,
    /// Speak TLS to this server name, trusting these roots.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<TlsTarget>,
}

/// What a TLS load connects to.
#[cfg(feature = "tls")]
#[derive(Debug, Clone)]
pub(crate) struct TlsTarget {
    /// Roots and settings of every client session.
    pub(crate) config: std::sync::Arc<rustls::ClientConfig>,
    /// The name the server's certificate must carry.
    pub(crate) name: rustls::pki_types::ServerName<'static>,
}

impl Plan {
    /// Messages connection `id` must send when the run is bounded by count: the total split
    /// evenly, the first connections taking one more when it does not divide.
    fn quota(&self, id: u64) -> Option<u64> {
        let total = self.messages?;
        let n = self.connections as u64;
        Some(total / n + u64::from(id < total % n))
    }

    /// When the connect phase (connect and warm-up echo) ends, whatever is still pending.
    fn connect_deadline(&self, start: Instant) -> Instant {
        start + (self.ramp + self.connect_timeout).min(self.hard_timeout)
    }

    /// When connection `id` should start connecting.
    fn due(&self, start: Instant, id: u64) -> Instant {
        start + self.ramp.mul_f64(id as f64 / self.connections as f64)
    }
}

/// State shared by the load threads of one run.
#[derive(Debug)]
pub(crate) struct Shared<'a> {
    /// Raised to end the run early (SIGINT): every thread stops within one tick.
    pub(crate) interrupt: &'a AtomicBool,
    /// Threads that finished their connect phase.
    pub(crate) ready: AtomicUsize,
    /// When the last thread finished connecting: messages start flowing for everyone.
    pub(crate) go: OnceLock<Instant>,
    /// Messages completed so far, over all threads (for the progress bar).
    pub(crate) completed: AtomicU64,
    /// Connections established so far, over all threads (for the progress bar).
    pub(crate) connected: AtomicU64,
}

/// Run load thread `index` to the end and return what it saw.
pub(crate) fn run(
    plan: &Plan,
    index: usize,
    start: Instant,
    shared: &Shared<'_>,
) -> io::Result<Tally> {
    let mut worker = Worker {
        poll: Poll::new()?,
        events: Events::with_capacity(1024),
        clients: Vec::new(),
        tokens: Vec::with_capacity(1024),
        buf: vec![0u8; READ_CHUNK],
        expect: Expected::default(),
        tally: Tally::new(),
        plan,
        shared,
        start,
        open: 0,
    };
    worker.connect_all(index)?;
    worker.wait_for_others()?;
    worker.exchange()?;
    Ok(worker.tally)
}

/// The state of one load thread.
struct Worker<'a> {
    /// This thread's own poll: threads share nothing on the hot path.
    poll: Poll,
    /// Readiness events of one turn.
    events: Events,
    /// This thread's connections; the token of a connection is its index here.
    clients: Vec<Client>,
    /// The last poll's events: each connection's token, and whether its event asks for a
    /// read to the end (the peer closed its side, or the socket has an error).
    tokens: Vec<(usize, bool)>,
    /// The read buffer shared by this thread's connections.
    buf: Vec<u8>,
    /// The expected content of the message being verified.
    expect: Expected,
    /// Counters and latencies.
    tally: Tally,
    /// What to do.
    plan: &'a Plan,
    /// The run's shared state.
    shared: &'a Shared<'a>,
    /// When the run started.
    start: Instant,
    /// Connections still open.
    open: usize,
}

impl Worker<'_> {
    /// Phase 1: open this thread's share of the connections on the ramp's schedule; each
    /// echoes one warm-up message, so that every connection is known to be served (not just
    /// waiting in the server's listen queue) before measuring starts.
    fn connect_all(&mut self, index: usize) -> io::Result<()> {
        let plan = self.plan;
        // Interleave ids over threads so the ramp is spread evenly between them.
        let mut ids = (index..plan.connections)
            .step_by(plan.threads)
            .map(|i| i as u64)
            .peekable();
        let deadline = plan.connect_deadline(self.start);
        let mut pending = 0usize;
        loop {
            if self.interrupted() {
                self.abandon();
                return Ok(());
            }
            let now = Instant::now();
            while let Some(&id) = ids.peek().filter(|&&id| plan.due(self.start, id) <= now) {
                ids.next();
                pending += usize::from(self.open_one(id)?);
            }
            if ids.peek().is_none() && pending == 0 {
                break;
            }
            if now >= deadline {
                self.give_up_connecting();
                break;
            }
            let next_due = ids.peek().map_or(deadline, |&id| plan.due(self.start, id));
            let wait = next_due
                .min(deadline)
                .saturating_duration_since(now)
                .min(TICK);
            self.poll_once(wait)?;
            self.ready_tokens();
            for i in 0..self.tokens.len() {
                let (token, drain) = self.tokens[i];
                pending -= usize::from(self.on_connect_event(token, drain));
            }
        }
        self.recount();
        Ok(())
    }

    /// Issue one nonblocking connect. Returns whether it is now in progress.
    fn open_one(&mut self, id: u64) -> io::Result<bool> {
        let token = Token(self.clients.len());
        let mut stream = match self.plan.endpoint.connect() {
            Ok(stream) => stream,
            Err(e) => {
                // Failing at once (no ports left, no descriptors) is this connection's failure.
                self.tally.connect_failed(id, &e.to_string());
                return Ok(false);
            }
        };
        self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let client = Client::connecting(stream, id, self.plan.quota(id));
        #[cfg(feature = "tls")]
        let client = match &self.plan.tls {
            Some(target) => {
                let session =
                    crate::io::tls::TlsSession::client(&target.config, target.name.clone())?;
                client.over(crate::io::transport::Transport::Tls(Box::new(session)))
            }
            None => client,
        };
        self.clients.push(client);
        Ok(true)
    }

    /// A readiness event during the connect phase. Returns whether it resolved the
    /// connection: warm-up echo received, or failure. `drain`: read until EOF or
    /// `WouldBlock`.
    fn on_connect_event(&mut self, token: usize, drain: bool) -> bool {
        let size = self.plan.size;
        let Some(client) = self.clients.get_mut(token) else {
            return false;
        };
        let was_pending = client.is_pending();
        match client.state {
            State::Connecting => match client.finish_connect() {
                Ok(true) => {
                    self.tally.connected += 1;
                    self.shared.connected.fetch_add(1, Ordering::Relaxed);
                    client.start_warmup(size, &mut self.tally);
                }
                // Spurious wake-up: the handshake is still going on.
                Ok(false) => {}
                Err(e) => {
                    let id = client.id();
                    client.close();
                    self.tally.connect_failed(id, &e.to_string());
                }
            },
            State::Open => {
                client.receive(
                    &mut self.buf,
                    &mut self.expect,
                    size,
                    &mut self.tally,
                    drain,
                );
            }
            State::Done => {}
        }
        was_pending && !client.is_pending()
    }

    /// The connect deadline passed: whatever has not connected yet has failed.
    fn give_up_connecting(&mut self) {
        for client in &mut self.clients {
            if client.state == State::Connecting {
                client.close();
                self.tally.connect_failed(client.id(), "timed out");
            } else if client.is_pending() {
                client.time_out(&mut self.tally);
            }
        }
    }

    /// Phase 2: wait until every thread has finished connecting, so that the measured
    /// window has all connections at work.
    fn wait_for_others(&mut self) -> io::Result<()> {
        let shared = self.shared;
        if shared.ready.fetch_add(1, Ordering::SeqCst) + 1 == self.plan.threads {
            let _ = shared.go.set(Instant::now());
        }
        // Every thread leaves its connect phase by the same deadline (give or take one poll
        // tick), so this ends; the margin only guards against a thread that died.
        let give_up = self.plan.connect_deadline(self.start) + Duration::from_secs(5);
        while shared.go.get().is_none() {
            if self.interrupted() {
                return Ok(());
            }
            if Instant::now() >= give_up {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "load threads never all got ready",
                ));
            }
            // Events here are ignored on purpose: we write eagerly later, and an echo
            // server sends nothing before we do.
            self.poll_once(Duration::from_millis(1))?;
        }
        Ok(())
    }

    /// Phase 3: keep `pipeline` messages in flight on every connection until the quota is
    /// spent or the duration is over, then collect the echoes still in flight.
    fn exchange(&mut self) -> io::Result<()> {
        let plan = self.plan;
        let go = self.shared.go.get().copied().unwrap_or_else(Instant::now);
        let send_until = plan.duration.map(|d| go + d);
        self.tally.window_end = send_until;
        let hard_deadline = self.start + plan.hard_timeout;
        for token in 0..self.clients.len() {
            let was_open = self.clients[token].state == State::Open;
            self.serve(token, was_open);
        }
        let mut stopping = false;
        let mut reported = 0;
        while self.open > 0 {
            if self.interrupted() {
                self.abandon();
                break;
            }
            let now = Instant::now();
            if !stopping && send_until.is_some_and(|t| now >= t) {
                stopping = true;
                self.stop_sending();
            }
            if now >= hard_deadline {
                self.time_out_all();
                break;
            }
            let next = send_until.filter(|_| !stopping).unwrap_or(hard_deadline);
            self.poll_once(
                next.min(hard_deadline)
                    .saturating_duration_since(now)
                    .min(TICK),
            )?;
            self.ready_tokens();
            for i in 0..self.tokens.len() {
                let (token, drain) = self.tokens[i];
                let Some(client) = self.clients.get_mut(token) else {
                    continue;
                };
                let was_open = client.state == State::Open;
                let (buf, expect) = (&mut self.buf, &mut self.expect);
                client.receive(buf, expect, plan.size, &mut self.tally, drain);
                self.serve(token, was_open);
            }
            let done = self.tally.completed;
            self.shared
                .completed
                .fetch_add(done - reported, Ordering::Relaxed);
            reported = done;
        }
        Ok(())
    }

    /// After a connection was read (or at the start): top it up with new messages and
    /// write, or close it when it has nothing left to do. `was_open` tells whether it was
    /// counted in `open` before its read, which may have closed it.
    fn serve(&mut self, token: usize, was_open: bool) {
        let plan = self.plan;
        let Some(client) = self.clients.get_mut(token) else {
            return;
        };
        if client.state == State::Open {
            client.top_up(plan.pipeline, plan.size, &mut self.tally);
            if client.state == State::Open && client.in_flight() == 0 && client.quota_spent() {
                // Every message of this connection has been echoed: we are done with it.
                client.close();
            }
        }
        if was_open && client.state != State::Open {
            self.open -= 1;
        }
    }

    /// Count the open connections again (after a sweep over all of them).
    fn recount(&mut self) {
        self.open = self
            .clients
            .iter()
            .filter(|c| c.state == State::Open)
            .count();
    }

    /// The duration is over: no new messages; close connections with nothing in flight.
    fn stop_sending(&mut self) {
        for client in &mut self.clients {
            client.stop_sending();
            if client.state == State::Open && client.in_flight() == 0 {
                client.close();
            }
        }
        self.recount();
    }

    /// The hard deadline passed: every echo still awaited counts as timed out.
    fn time_out_all(&mut self) {
        for client in &mut self.clients {
            if client.state == State::Open {
                if client.in_flight() > 0 {
                    client.time_out(&mut self.tally);
                } else {
                    client.close();
                }
            }
        }
        self.open = 0;
    }

    /// True once the run has been interrupted (SIGINT).
    fn interrupted(&self) -> bool {
        self.shared.interrupt.load(Ordering::Relaxed)
    }

    /// The run was interrupted: drop every connection. Messages in flight are not failures
    /// (nobody waited for them), so nothing is counted.
    fn abandon(&mut self) {
        for client in &mut self.clients {
            client.close();
        }
        self.open = 0;
    }

    /// Wait for readiness events (at most `timeout`), retrying when a signal interrupts.
    fn poll_once(&mut self, timeout: Duration) -> io::Result<()> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => Ok(()),
            // A signal arrived: the events list is empty, the next turn polls again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.events.clear();
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Copy the tokens of the last poll's events (each an index into `clients`) to
    /// `tokens`, so that connections can be changed while going through them. A FIN that
    /// arrives with the last bytes raises no edge of its own: the event's read-closed (or
    /// error) flag is the only sign of it, so it is kept with the token.
    fn ready_tokens(&mut self) {
        self.tokens.clear();
        self.tokens.extend(self.events.iter().map(|event| {
            let drain = event.is_read_closed() || event.is_error();
            (event.token().0, drain)
        }));
    }
}
