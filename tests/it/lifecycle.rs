//! A connection's life from the server's side, over real sockets on 127.0.0.1, under every
//! model: a callback's requests stay with its own connection even when the peer resets
//! mid-reply, the peak of open connections is the server-wide one, a graceful stop
//! answers what arrived and closes with EOF, never with a reset, and ends a connection its
//! handler keeps half open.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use fixtures::client::{assert_silent, connect, expect_reply, send};
use fixtures::process::{ServerProcess, model_arg, stat};
use fixtures::server::{start, start_server, wait_connections};
use fixtures::{eventually, for_each_model};
use tcp_reactor::protocols::{Echo, Http};
use tcp_reactor::{CloseReason, Config, Context, Handler, Model, Server};

/// Rounds of "a client resets mid-reply, then an innocent client arrives".
const RESET_ROUNDS: usize = 30;
/// How long the resetting client's leftovers get to reach the server before the next
/// client connects.
const SETTLE: Duration = Duration::from_millis(20);

const GET_1_0: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
const GET_1_1: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, world!\n";

/// Send `request`, then close with SO_LINGER 0: the kernel resets the connection at once,
/// so the server's write of the reply fails.
fn send_and_reset(addr: SocketAddr, request: &[u8]) {
    let mut stream = connect(addr);
    send(&mut stream, request);
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("set SO_LINGER 0");
    drop(stream);
}

/// Read exactly `want.len()` bytes; `Err` says what came instead (EOF, error, other bytes).
fn read_reply(stream: &mut TcpStream, want: &[u8]) -> Result<(), String> {
    let mut got = vec![0; want.len()];
    match stream.read_exact(&mut got) {
        Ok(()) if got == want => Ok(()),
        Ok(()) => Err(format!("wrong reply {:?}", String::from_utf8_lossy(&got))),
        Err(err) => Err(format!("no reply: {err}")),
    }
}

/// Read the HTTP reply `want`, which carries a `Date` line the comparison leaves out.
fn read_http_reply(stream: &mut TcpStream, want: &[u8]) -> Result<(), String> {
    let mut got = vec![0; want.len() + fixtures::client::HTTP_DATE_LINE];
    match stream.read_exact(&mut got) {
        Ok(()) if fixtures::client::without_http_dates(&got) == want => Ok(()),
        Ok(()) => Err(format!("wrong reply {:?}", String::from_utf8_lossy(&got))),
        Err(err) => Err(format!("no reply: {err}")),
    }
}

fn close_request_of_a_reset_client_stays_with_it(model: Model) {
    let server = start(Http::default(), model);
    let addr = server.local_addr();
    let mut failures = Vec::new();
    for round in 0..RESET_ROUNDS {
        // HTTP/1.0: the reply ends in `close()`, whose write fails on the reset socket.
        send_and_reset(addr, GET_1_0);
        std::thread::sleep(SETTLE);
        let mut innocent = connect(addr);
        send(&mut innocent, GET_1_1);
        if let Err(what) = read_http_reply(&mut innocent, OK) {
            failures.push(format!("round {round}: {what}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {RESET_ROUNDS} keep-alive clients were not served: {failures:?}",
        failures.len()
    );
}

/// Replies `ok\n` to every chunk of input and asks for a timer; the timer writes `timer\n`.
struct TimerAfterReply;

impl Handler for TimerAfterReply {
    type Session = ();

    fn open(&self, _ctx: &mut Context<'_>) {}

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(b"ok\n");
        ctx.set_timer(Duration::from_millis(1));
        input.len()
    }

    fn timer(&self, _session: &mut (), ctx: &mut Context<'_>) {
        ctx.write(b"timer\n");
    }
}

fn timer_request_of_a_reset_client_stays_with_it(model: Model) {
    let server = start(TimerAfterReply, model);
    let addr = server.local_addr();
    let mut failures = Vec::new();
    for round in 0..RESET_ROUNDS {
        send_and_reset(addr, b"hello\n");
        std::thread::sleep(SETTLE);
        // A client that sends nothing must hear nothing: it never asked for a timer.
        let mut innocent = connect(addr);
        assert_silent(&mut innocent, Duration::from_millis(50));
        // Still served normally.
        send(&mut innocent, b"x");
        if let Err(what) = read_reply(&mut innocent, b"ok\ntimer\n") {
            failures.push(format!("round {round}: {what}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {RESET_ROUNDS} clients were not served: {failures:?}",
        failures.len()
    );
}

/// The server-wide connection limit of the peak test.
const LIMIT: usize = 20;
/// Waves of `LIMIT` clients: each wave is spread over the workers differently, so a sum
/// of per-worker peaks exceeds the true peak.
const WAVES: usize = 5;

fn peak_connections_is_server_wide(model: Model) {
    let config = Config::default().with_max_connections(LIMIT);
    let server = start_server(Server::new(Echo).workers(2), model, config);
    let addr = server.local_addr();
    for _ in 0..WAVES {
        let mut wave: Vec<TcpStream> = (0..LIMIT).map(|_| connect(addr)).collect();
        // An answer proves each client is served, not refused.
        for stream in &mut wave {
            send(stream, b"ping");
            expect_reply(stream, b"ping");
        }
        wait_connections(&server, LIMIT as u64);
        drop(wave);
        wait_connections(&server, 0);
    }
    let stats = server.stop().expect("the server stops cleanly");
    assert_eq!(stats.refused, 0, "no client was refused: {stats}");
    assert_eq!(
        stats.peak_connections, LIMIT as u64,
        "the peak is the most connections open at once: {LIMIT}"
    );
}

/// Echo clients in steady ping-pong when the server stops.
const PING_PONG_CLIENTS: usize = 200;
/// Round trips every client completes before the stop.
const WARM_ROUNDS: u64 = 5;

/// How one ping-pong client's conversation ended.
#[derive(Debug, Default)]
struct PingPongEnd {
    /// Replies received whole and equal to their request.
    answered: u64,
    /// Requests that had been completely sent before the stop began and got no reply.
    unanswered_before_stop: u64,
    /// A reply that differed from its request, or was cut short.
    broken_reply: Option<String>,
    /// How the conversation ended: `None` for a clean EOF, otherwise the error.
    error: Option<io::ErrorKind>,
}

/// Ping-pong until EOF: send a numbered line, read its echo, repeat; on EOF, close.
fn ping_pong_until_eof(
    addr: SocketAddr,
    client: usize,
    stopping: &AtomicBool,
    warmed: &AtomicU64,
) -> PingPongEnd {
    let mut end = PingPongEnd::default();
    let mut stream = connect(addr);
    for seq in 0.. {
        let request = format!("{client:05}-{seq:010}\n");
        if let Err(err) = stream.write_all(request.as_bytes()) {
            end.error = Some(err.kind());
            break;
        }
        // Read after the write returned: `false` proves the request was sent (and, on
        // loopback, queued at the server) before the stop began.
        let sent_before_stop = !stopping.load(Ordering::SeqCst);
        let mut reply = vec![0; request.len()];
        let mut got = 0;
        while got < reply.len() {
            match stream.read(&mut reply[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    end.error = Some(err.kind());
                    break;
                }
            }
        }
        if got == reply.len() && reply == request.as_bytes() {
            end.answered += 1;
            if end.answered == WARM_ROUNDS {
                warmed.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        if got > 0 {
            end.broken_reply = Some(String::from_utf8_lossy(&reply[..got]).into_owned());
        } else if end.error.is_none() && sent_before_stop {
            end.unanswered_before_stop += 1;
        }
        break;
    }
    end
}

/// Run `PING_PONG_CLIENTS` ping-pong clients against the server at `addr`, stop it with
/// `stop` once all are in steady ping-pong, and check every client got a whole reply to
/// each request sent before the stop, then EOF, never a reset. `stop` returns how many
/// connections the server counted as closed by the stop.
fn ping_pong_through_stop(addr: SocketAddr, stop: impl FnOnce() -> u64) {
    let stopping = Arc::new(AtomicBool::new(false));
    let warmed = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..PING_PONG_CLIENTS)
        .map(|client| {
            let (stopping, warmed) = (Arc::clone(&stopping), Arc::clone(&warmed));
            thread::spawn(move || ping_pong_until_eof(addr, client, &stopping, &warmed))
        })
        .collect();
    eventually("every client is in steady ping-pong", || {
        warmed.load(Ordering::Relaxed) == PING_PONG_CLIENTS as u64
    });
    stopping.store(true, Ordering::SeqCst);
    let closed_by_stop = stop();
    let ends: Vec<PingPongEnd> = clients
        .into_iter()
        .map(|client| client.join().expect("a client thread"))
        .collect();
    let resets: Vec<_> = ends.iter().filter_map(|end| end.error).collect();
    let broken: Vec<_> = ends
        .iter()
        .filter_map(|end| end.broken_reply.as_ref())
        .collect();
    let unanswered: u64 = ends.iter().map(|end| end.unanswered_before_stop).sum();
    assert!(
        resets.is_empty(),
        "{} of {PING_PONG_CLIENTS} clients ended with an error instead of EOF: {resets:?}",
        resets.len()
    );
    assert!(broken.is_empty(), "replies cut or wrong: {broken:?}");
    assert_eq!(
        unanswered, 0,
        "requests sent before the stop went unanswered"
    );
    assert_eq!(
        closed_by_stop, PING_PONG_CLIENTS as u64,
        "every client is counted as closed by the stop"
    );
}

fn graceful_stop_answers_and_closes_without_reset(model: Model) {
    let server = start(Echo, model);
    ping_pong_through_stop(server.local_addr(), || {
        let stats = server.stop().expect("the server stops cleanly");
        stats.closed_by(CloseReason::Shutdown)
    });
}

fn sigterm_answers_and_closes_without_reset(model: Model) {
    let server = ServerProcess::spawn(&["--protocol", "echo", "--model", model_arg(model)], None);
    ping_pong_through_stop(server.addr, || stat(&server.stop(), "shutdown"));
}

/// Keeps every connection half open after the client's EOF, and never shuts it.
struct KeepsHalfOpen;

impl Handler for KeepsHalfOpen {
    type Session = ();
    fn open(&self, _ctx: &mut Context<'_>) {}
    fn data(&self, _session: &mut (), _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }
    fn read_closed(&self, _session: &mut (), _ctx: &mut Context<'_>) -> bool {
        true
    }
}

fn a_stop_ends_a_connection_its_handler_keeps_half_open(model: Model) {
    let running = start(KeepsHalfOpen, model);
    let mut client = connect(running.local_addr());
    send(&mut client, b"hello");
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    // The server has read the EOF and keeps the connection (no idle timeout).
    thread::sleep(Duration::from_millis(100));
    wait_connections(&running, 1);
    let (stopped_tx, stopped_rx) = std::sync::mpsc::channel();
    let started = std::time::Instant::now();
    thread::spawn(move || {
        let _ = stopped_tx.send(running.stop());
    });
    let stats = stopped_rx
        .recv_timeout(fixtures::PATIENCE)
        .expect("the stop returns")
        .expect("stop");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopped at once, not after {:?}",
        started.elapsed()
    );
    assert_eq!(stats.closed_by(CloseReason::Shutdown), 1, "{stats}");
    client
        .set_read_timeout(Some(fixtures::PATIENCE))
        .expect("timeout");
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("EOF, not a reset");
    assert!(rest.is_empty());
}

for_each_model!(
    graceful_stop_answers_and_closes_without_reset,
    a_stop_ends_a_connection_its_handler_keeps_half_open,
    sigterm_answers_and_closes_without_reset,
    peak_connections_is_server_wide,
    close_request_of_a_reset_client_stays_with_it,
    timer_request_of_a_reset_client_stays_with_it,
);
