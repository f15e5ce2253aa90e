//! Soak: 10,000 concurrent connections on one reactor thread, each exchanging a few
//! messages, every byte checked, and every slot freed at the end.
//!
//! The server runs as a subprocess (the built binary) and the 10,000 client sockets live
//! here, driven by one `mio::Poll`: the descriptor limit is per process, and 20,000
//! descriptors in one process would exceed it.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fixtures::process::{ServerProcess, raise_fd_limit, stat};
use fixtures::wait_until;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// Concurrent connections.
const CONNS: usize = 10_000;
/// Messages each connection exchanges, one at a time, while all are open.
const MESSAGES: usize = 3;
/// Connections still completing their handshake at once (the listen backlog is 1024).
const CONNECTING_AT_ONCE: usize = 500;
/// The whole exchange must finish within this, or the test fails with its progress.
const DEADLINE: Duration = Duration::from_secs(60);

/// Message `k` of connection `i`: unique, of varying length, binary filler included.
fn message(i: usize, k: usize) -> Vec<u8> {
    let mut m = format!("{i:05}/{k}:").into_bytes();
    let len = (i * 7 + k * 13) % 200;
    m.extend((0..len).map(|j| ((i + j * 31 + k) % 256) as u8));
    m.push(b'\n');
    m
}

/// Where one client is in its life.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Phase {
    /// Handshake in progress.
    Connecting,
    /// Connected; waiting for every other client to connect before the exchange.
    Connected,
    /// Exchanging message `k`.
    Exchanging,
    /// All messages echoed and checked.
    Done,
}

/// One of the 10,000 clients.
#[derive(Debug)]
struct Client {
    stream: TcpStream,
    phase: Phase,
    /// Index of the message in flight.
    k: usize,
    /// Bytes of the message in flight already written.
    written: usize,
    /// The message in flight.
    message: Vec<u8>,
    /// Its echo so far.
    echo: Vec<u8>,
}

/// Counts of clients per phase, for progress and failure messages.
#[derive(Debug, Default)]
struct Progress {
    connected: usize,
    done: usize,
    bytes: u64,
}

impl Client {
    /// Handle a readiness event for client `i`.
    fn on_event(&mut self, i: usize, progress: &mut Progress) {
        if self.phase == Phase::Connecting {
            if let Ok(Some(err)) | Err(err) = self.stream.take_error() {
                panic!("client {i} failed to connect: {err}");
            }
            match self.stream.peer_addr() {
                Ok(_) => {
                    self.phase = Phase::Connected;
                    progress.connected += 1;
                }
                // Still in progress: a later event will say.
                Err(err) if err.kind() == io::ErrorKind::NotConnected => return,
                Err(err) => panic!("client {i} failed to connect: {err}"),
            }
        }
        if self.phase == Phase::Exchanging {
            self.write_pending(i);
            self.read_echo(i, progress);
        }
    }

    /// Start message `k`.
    fn start(&mut self, i: usize, k: usize) {
        self.phase = Phase::Exchanging;
        self.k = k;
        self.message = message(i, k);
        self.written = 0;
        self.echo.clear();
        self.write_pending(i);
    }

    /// Write what the kernel takes of the message in flight.
    fn write_pending(&mut self, i: usize) {
        while self.written < self.message.len() {
            match self.stream.write(&self.message[self.written..]) {
                Ok(n) => self.written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => panic!("client {i}: write failed: {err}"),
            }
        }
    }

    /// Read until WouldBlock (edge-triggered); check and advance when the echo is whole.
    fn read_echo(&mut self, i: usize, progress: &mut Progress) {
        let mut buf = [0u8; 512];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => panic!("client {i}: server closed during message {}", self.k),
                Ok(n) => self.echo.extend_from_slice(&buf[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => panic!("client {i}: read failed: {err}"),
            }
        }
        if self.echo.len() < self.message.len() {
            return;
        }
        assert!(
            self.echo == self.message,
            "client {i}: echo of message {} differs",
            self.k
        );
        progress.bytes += self.message.len() as u64;
        if self.k + 1 < MESSAGES {
            self.start(i, self.k + 1);
            // The echo of a tiny message may already be here with no new edge to come
            // before we look: reading again until WouldBlock covers it.
            self.read_echo(i, progress);
        } else {
            self.phase = Phase::Done;
            progress.done += 1;
        }
    }
}

/// Open connections until `CONNS` exist, keeping `CONNECTING_AT_ONCE` in progress, and
/// poll until all are connected.
fn connect_all(poll: &mut Poll, addr: SocketAddr, start: Instant) -> (Vec<Client>, Progress) {
    let mut clients: Vec<Client> = Vec::with_capacity(CONNS);
    let mut progress = Progress::default();
    let mut events = Events::with_capacity(1024);
    while progress.connected < CONNS {
        assert!(
            start.elapsed() < DEADLINE,
            "connecting stalled: {progress:?}"
        );
        while clients.len() < CONNS && clients.len() - progress.connected < CONNECTING_AT_ONCE {
            let i = clients.len();
            let mut stream = TcpStream::connect(addr).expect("start a connect");
            poll.registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .expect("register");
            clients.push(Client {
                stream,
                phase: Phase::Connecting,
                k: 0,
                written: 0,
                message: Vec::new(),
                echo: Vec::new(),
            });
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .expect("poll");
        for event in &events {
            let i = event.token().0;
            clients[i].on_event(i, &mut progress);
        }
    }
    (clients, progress)
}

/// Run every client's exchange to the end.
fn exchange_all(poll: &mut Poll, clients: &mut [Client], progress: &mut Progress, start: Instant) {
    for (i, client) in clients.iter_mut().enumerate() {
        client.start(i, 0);
        client.read_echo(i, progress);
    }
    let mut events = Events::with_capacity(1024);
    while progress.done < CONNS {
        assert!(start.elapsed() < DEADLINE, "exchange stalled: {progress:?}");
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .expect("poll");
        for event in &events {
            let i = event.token().0;
            clients[i].on_event(i, progress);
        }
    }
}

#[test]
fn ten_thousand_concurrent_connections_on_one_reactor_thread_exchange_every_byte() {
    let limit = raise_fd_limit();
    assert!(
        limit as usize > CONNS + 100,
        "this test needs {CONNS} client sockets; the descriptor limit is {limit}"
    );
    let server = ServerProcess::spawn(&["--max-connections", "12000", "--linger", "1"], None);
    let base_sockets = server.open_sockets();
    let before = server.status();
    let start = Instant::now();
    let mut poll = Poll::new().expect("poll");
    let (mut clients, mut progress) = connect_all(&mut poll, server.addr, start);
    let connected_in = start.elapsed();
    exchange_all(&mut poll, &mut clients, &mut progress, start);
    let exchanged_in = start.elapsed();
    let open = server.open_sockets() - base_sockets;
    let during = server.status();
    assert_eq!(open, CONNS, "the server holds every connection at once");
    drop(clients);
    // Every slot is freed: the server is back to its listening socket alone.
    let emptied = wait_until(Duration::from_secs(20), || {
        server.open_sockets() == base_sockets
    });
    assert!(
        emptied,
        "{} connections still open on the server",
        server.open_sockets() - base_sockets
    );
    let emptied_in = start.elapsed();
    let stats = server.stop();
    let total = progress.bytes;
    eprintln!(
        "soak: {CONNS} concurrent connections x {MESSAGES} messages ({} KiB each way): \
         all connected after {connected_in:?}, all exchanged after {exchanged_in:?}, \
         server empty after {emptied_in:?}; server VmRSS {} -> {} KiB, VmHWM {} KiB \
         ({} bytes per connection); polls {}, events {}",
        total / 1024,
        before.rss_kib,
        during.rss_kib,
        during.hwm_kib,
        (during.rss_kib.saturating_sub(before.rss_kib) * 1024) / CONNS as u64,
        stat(&stats, "polls"),
        stat(&stats, "events"),
    );
    assert_eq!(stat(&stats, "accepted"), CONNS as u64);
    assert_eq!(stat(&stats, "peak connections"), CONNS as u64);
    assert_eq!(stat(&stats, "closed"), CONNS as u64);
    assert_eq!(stat(&stats, "eof"), CONNS as u64);
    assert_eq!(stat(&stats, "refused"), 0);
    assert_eq!(stat(&stats, "bytes in"), total);
    assert_eq!(stat(&stats, "bytes out"), total);
}
