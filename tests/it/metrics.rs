//! Live statistics and the Prometheus endpoint: after known traffic, `Running::stats()`
//! and a scrape of `/metrics` (parsed here) report the open connections, bytes and closes
//! by reason that the traffic made; `promtool check metrics` accepts the scrape.
//!
//! The endpoint itself, over real sockets: a client trickling its request or many idle
//! connections do not hold up anyone's scrape, a trickler is closed at its request
//! deadline, the connection cap refuses only the extra client, and it speaks HTTP/1.1
//! (keep-alive, bare-LF lines, 404, 405, 400, 431).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use fixtures::client::{
    Peer, connect, expect_eof, expect_reply, poll_closed, recv_exact, recv_to_end, set_timeouts,
};
use fixtures::process::{ServerProcess, stat};
use fixtures::server::{loopback, start};
use fixtures::{PATIENCE, eventually, for_each_model};
use tcp_reactor::metrics::{EndpointConfig, MetricsServer};
use tcp_reactor::protocols::Echo;
use tcp_reactor::{CloseReason, Model, Running, metrics};

for_each_model!(metrics_report_known_traffic);

/// One scrape of `GET /metrics` at `addr`: the status line and the body.
fn scrape(addr: SocketAddr) -> (String, String) {
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .expect("send the scrape");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the scrape");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    (head.to_string(), body.to_string())
}

/// The samples of an exposition: `name{labels}` to value.
fn samples(body: &str) -> HashMap<String, u64> {
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Sum of every sample of `name` (all label values).
fn sum(samples: &HashMap<String, u64>, name: &str) -> u64 {
    samples
        .iter()
        .filter(|(key, _)| key.as_str() == name || key.starts_with(&format!("{name}{{")))
        .map(|(_, value)| value)
        .sum()
}

/// Three echo clients each send 100 bytes; one leaves. The live stats and the scrape
/// say: 2 open, 3 accepted, 300 bytes each way, 1 closed by EOF.
fn metrics_report_known_traffic(model: Model) {
    let running = start(Echo, model);
    let endpoint = metrics::serve("127.0.0.1:0".parse().expect("addr"), running.live_stats())
        .expect("serve metrics");
    let payload = [b'm'; 100];
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(running.local_addr())).collect();
    for client in &mut clients {
        client.write_all(&payload).expect("send");
        expect_reply(client, &payload);
    }
    let leaving = clients.pop().expect("a client");
    leaving.shutdown(Shutdown::Write).expect("half-close");
    let mut rest = Vec::new();
    let _ = (&leaving).read_to_end(&mut rest);
    // Under the threads model a client's bytes count once it has closed: the bytes are
    // checked below, once every client has gone.
    eventually("the close is published", || {
        running.stats().closed_by(CloseReason::Eof) == 1
    });
    // A threads-model client publishes its close just before it leaves the gauges.
    eventually("two connections open", || running.connections() == 2);
    let stats = running.stats();
    assert_eq!(stats.accepted, 3);
    let (head, body) = scrape(endpoint.local_addr());
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("text/plain; version=0.0.4"),
        "content type: {head}"
    );
    let found = samples(&body);
    assert_eq!(found["tcp_reactor_connections_open"], 2, "{body}");
    assert_eq!(sum(&found, "tcp_reactor_accepted_total"), 3, "{body}");
    assert_eq!(
        found["tcp_reactor_closed_total{reason=\"eof\"}"], 1,
        "{body}"
    );
    assert_eq!(sum(&found, "tcp_reactor_closed_total"), 1, "{body}");
    // Idle clients may keep small buffers (up to 16 KiB each way) for their next request.
    assert!(
        found["tcp_reactor_buffered_bytes"] <= 2 * 32 * 1024,
        "{body}"
    );
    drop(clients);
    // A threads-model client publishes its close just before it leaves the gauges: wait for
    // both.
    eventually("every close is published", || {
        running.stats().closed_total() == 3 && running.connections() == 0
    });
    let (_, body) = scrape(endpoint.local_addr());
    let found = samples(&body);
    assert_eq!(
        sum(&found, "tcp_reactor_received_bytes_total"),
        300,
        "{body}"
    );
    assert_eq!(sum(&found, "tcp_reactor_sent_bytes_total"), 300, "{body}");
    assert_eq!(found["tcp_reactor_connections_open"], 0, "{body}");
    if model == Model::Reactor {
        assert!(sum(&found, "tcp_reactor_polls_total") > 0, "{body}");
        assert!(sum(&found, "tcp_reactor_events_total") > 0, "{body}");
    }
    promtool_accepts(&body);
    let (head, _) = {
        let mut stream = connect(endpoint.local_addr());
        stream
            .write_all(b"GET /nope HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .expect("send");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read");
        (reply, ())
    };
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    endpoint.stop();
    let total = running.stop().expect("stop");
    assert_eq!(total.bytes_in, 300);
}

/// `promtool check metrics` accepts the exposition; skipped, saying so, without promtool.
fn promtool_accepts(body: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("SKIPPED promtool check: promtool is not installed (Debian package prometheus)");
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(body.as_bytes()).expect("feed promtool");
    }
    let out = child.wait_with_output().expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check metrics rejected the scrape:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `serve --metrics ADDR --stats-interval SECS`: the binary serves the scrape on its own
/// listener and logs the summary line.
#[test]
fn serve_exposes_metrics_and_logs_a_summary() {
    // A free port for the endpoint: bound, read, released (the CLI takes an address).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let server = ServerProcess::spawn(
        &["--metrics", &metrics_addr, "--stats-interval", "0.2"],
        None,
    );
    let mut client = connect(server.addr);
    client.write_all(b"hello").expect("send");
    expect_reply(&mut client, b"hello");
    let addr: SocketAddr = metrics_addr.parse().expect("addr");
    eventually("the endpoint answers", || TcpStream::connect(addr).is_ok());
    eventually("the scrape counts the client", || {
        let found = samples(&scrape(addr).1);
        found.get("tcp_reactor_connections_open") == Some(&1)
            && sum(&found, "tcp_reactor_received_bytes_total") == 5
    });
    eventually("a summary line is logged", || {
        server.log_lines_with("connections 1 | accepted/s") > 0
    });
    drop(client);
    let stats = server.stop();
    assert_eq!(stat(&stats, "accepted"), 1, "{stats:?}");
}

/// `serve --help` shows the budget, the deadlines and the observers with their defaults.
#[test]
fn serve_help_shows_the_budget_deadlines_and_observers() {
    let out = Command::new(env!("CARGO_BIN_EXE_tcp-reactor"))
        .args(["serve", "--help"])
        .output()
        .expect("run serve --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--max-buffered <MAX_BUFFERED>",
        "[default: 268435456]",
        "--idle-timeout",
        "75 for http",
        "--header-timeout <HEADER_TIMEOUT>",
        "[default: 60]",
        "--stats-interval",
        "--metrics <ADDR>",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag:?}:\n{help}");
    }
}

/// How long a scrape may take in the endpoint tests before it counts as blocked: far more
/// than a loopback scrape needs, far less than the hostile clients below last.
const SCRAPE_PATIENCE: Duration = Duration::from_secs(10);

/// An echo server (its model does not matter: the endpoint is a server of its own) and
/// its metrics endpoint with `config`.
fn endpoint(config: &EndpointConfig) -> (Running, MetricsServer) {
    let running = start(Echo, Model::Reactor);
    let endpoint =
        metrics::serve_with(loopback(), running.live_stats(), config).expect("serve metrics");
    (running, endpoint)
}

/// Connect to the endpoint, with read and write timeouts of `patience`.
#[track_caller]
fn connect_within(addr: SocketAddr, patience: Duration) -> TcpStream {
    let stream = connect(addr);
    set_timeouts(&stream, patience);
    stream
}

/// Send `request` on `stream` and read one reply framed by its `Content-Length` (none
/// for `HEAD`): the head (status line and headers) and the body. The connection may stay
/// open.
#[track_caller]
fn exchange(stream: &mut TcpStream, request: &[u8]) -> (String, String) {
    stream.write_all(request).expect("send the request");
    read_reply(stream, request.starts_with(b"HEAD "))
}

/// Read one reply framed by its `Content-Length` (no body for a `HEAD` request): the head
/// and the body.
#[track_caller]
fn read_reply(stream: &mut TcpStream, head_request: bool) -> (String, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => panic!("closed after {:?}", String::from_utf8_lossy(&head)),
            Err(err) => panic!("no reply (got {:?}): {err}", String::from_utf8_lossy(&head)),
        }
    }
    let head = String::from_utf8(head).expect("a UTF-8 head");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    let length = if head_request { 0 } else { length };
    let body = recv_exact(stream, length);
    (head, String::from_utf8(body).expect("a UTF-8 body"))
}

/// One scrape on a connection of its own, which must succeed within [`SCRAPE_PATIENCE`].
#[track_caller]
fn scrape_within_patience(addr: SocketAddr) {
    let mut stream = connect_within(addr, SCRAPE_PATIENCE);
    let (head, body) = exchange(
        &mut stream,
        b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(body.contains("tcp_reactor_connections_open "), "{body}");
}

/// A client sending a request head that never ends, one byte every 50 ms, until stopped,
/// until a write fails, or for at most 30 s (then `gave_up` is raised).
struct Trickler {
    /// Its connection (the test reads from it).
    stream: TcpStream,
    /// Raised by the test to stop it.
    stop: Arc<AtomicBool>,
    /// Raised once it has sent all its bytes (30 s) without being closed.
    gave_up: Arc<AtomicBool>,
    /// The sending thread.
    thread: Option<thread::JoinHandle<()>>,
}

impl Trickler {
    /// Connect to `addr` and start trickling.
    fn start(addr: SocketAddr) -> Trickler {
        let stream = connect(addr);
        let mut writer = stream.try_clone().expect("clone the trickler's socket");
        let stop = Arc::new(AtomicBool::new(false));
        let gave_up = Arc::new(AtomicBool::new(false));
        let (flag, done) = (Arc::clone(&stop), Arc::clone(&gave_up));
        let head = b"GET /metrics HTTP/1.1\r\nHost: h\r\nX-Slow: ";
        // Its first byte is in before anyone else connects.
        writer
            .write_all(&head[..1])
            .expect("the trickler's first byte");
        let thread = thread::spawn(move || {
            let bytes = head[1..].iter().chain(std::iter::repeat(&b'a')).take(600);
            for &byte in bytes {
                thread::sleep(Duration::from_millis(50));
                if flag.load(Ordering::SeqCst) || writer.write_all(&[byte]).is_err() {
                    return;
                }
            }
            done.store(true, Ordering::SeqCst);
        });
        Trickler {
            stream,
            stop,
            gave_up,
            thread: Some(thread),
        }
    }
}

impl Drop for Trickler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A client trickling its request head, byte by byte, does not hold up the scrapes of
/// other clients: each is answered while the trickler is still connected and sending.
/// (Before: one scrape at a time, with a timeout per read, so 0 scrapes were answered.)
#[test]
fn scrapes_are_served_while_a_client_trickles_its_request() {
    let config = EndpointConfig::default().with_request_timeout(Duration::from_secs(60));
    let (running, endpoint) = endpoint(&config);
    let mut trickler = Trickler::start(endpoint.local_addr());
    for _ in 0..5 {
        scrape_within_patience(endpoint.local_addr());
    }
    trickler.stream.set_nonblocking(true).expect("nonblocking");
    assert_eq!(
        poll_closed(&mut trickler.stream),
        Peer::Open,
        "the scrapes were answered while the trickler was connected"
    );
    assert!(!trickler.gave_up.load(Ordering::SeqCst));
    drop(trickler);
    endpoint.stop();
    running.stop().expect("stop");
}

/// Twenty connections that never send a byte do not hold up a scrape, and stay open.
/// (Before: each held the endpoint for its 5 s read timeout, one after the other.)
#[test]
fn scrapes_are_served_while_twenty_connections_sit_idle() {
    let config = EndpointConfig::default().with_request_timeout(Duration::from_secs(60));
    let (running, endpoint) = endpoint(&config);
    let mut idle: Vec<TcpStream> = (0..20).map(|_| connect(endpoint.local_addr())).collect();
    for _ in 0..5 {
        scrape_within_patience(endpoint.local_addr());
    }
    for stream in &mut idle {
        stream.set_nonblocking(true).expect("nonblocking");
        assert_eq!(poll_closed(stream), Peer::Open);
    }
    endpoint.stop();
    running.stop().expect("stop");
}

/// A request trickled byte by byte is closed at its whole-request deadline although bytes
/// keep arriving (with `408` if the reply gets through); the server goes on serving.
#[test]
fn a_trickled_request_is_closed_at_its_deadline() {
    let config = EndpointConfig::default().with_request_timeout(Duration::from_millis(500));
    let (running, endpoint) = endpoint(&config);
    let mut trickler = Trickler::start(endpoint.local_addr());
    let mut reply = Vec::new();
    // A reset (the trickler's latest byte unread when the server closed) also ends it.
    let ended = trickler.stream.read_to_end(&mut reply);
    if let Err(err) = &ended {
        assert!(
            !matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "the trickler was not closed within {PATIENCE:?}"
        );
    }
    assert!(
        !trickler.gave_up.load(Ordering::SeqCst),
        "closed only once the trickler had sent everything ({ended:?})"
    );
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{reply}"
    );
    drop(trickler);
    scrape_within_patience(endpoint.local_addr());
    endpoint.stop();
    running.stop().expect("stop");
}

/// At the connection cap, one more client gets `503` and is closed; the connections
/// already open go on being served, and a freed slot serves again.
#[test]
fn the_connection_cap_refuses_the_extra_client_and_serves_the_rest() {
    let config = EndpointConfig::default()
        .with_request_timeout(Duration::from_secs(60))
        .with_max_connections(3);
    let (running, endpoint) = endpoint(&config);
    let addr = endpoint.local_addr();
    let keep_alive = b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n";
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
    for stream in &mut held {
        // An answer proves the endpoint holds the connection.
        let (head, _) = exchange(stream, keep_alive);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(!head.contains("Connection: close"), "{head}");
    }
    let mut extra = connect(addr);
    let _ = extra.write_all(keep_alive);
    let refused = String::from_utf8_lossy(&recv_to_end(&mut extra)).into_owned();
    assert!(
        refused.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{refused}"
    );
    for stream in &mut held {
        let (head, _) = exchange(stream, keep_alive);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    }
    drop(held.pop());
    // The endpoint sees the close on its next turn: until then a newcomer may be refused.
    eventually("a freed slot serves a new client", || {
        let mut stream = connect(addr);
        let (head, _) = exchange(&mut stream, keep_alive);
        head.starts_with("HTTP/1.1 200 OK\r\n")
    });
    endpoint.stop();
    running.stop().expect("stop");
}

/// Lines ending in a bare LF (which the http protocol accepts, as RFC 9112 lets a
/// recipient) make a request like any other. (Before: no reply at all.)
#[test]
fn a_request_with_bare_lf_line_ends_is_answered() {
    let (running, endpoint) = endpoint(&EndpointConfig::default());
    let mut stream = connect_within(endpoint.local_addr(), SCRAPE_PATIENCE);
    let (head, body) = exchange(&mut stream, b"GET /metrics HTTP/1.1\nHost: test\n\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(body.contains("tcp_reactor_connections_open "), "{body}");
    endpoint.stop();
    running.stop().expect("stop");
}

/// One keep-alive connection: `GET`, `HEAD`, an unknown path (404) and a wrong method (405
/// with `Allow`) are each answered and leave it open; `Connection: close` closes it after
/// the reply. Every reply is dated. HTTP/1.0 closes by default; a malformed request
/// (HTTP/1.1 without one `Host` too) gets 400 and an oversized head 431, each then closed.
#[test]
fn the_endpoint_speaks_http_1_1() {
    let (running, endpoint) = endpoint(&EndpointConfig::default());
    let addr = endpoint.local_addr();
    let mut stream = connect(addr);
    let (head, body) = exchange(&mut stream, b"GET /metrics?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    // Dated, as an origin server with a clock must (RFC 9110, section 6.6.1): an
    // IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`.
    let date = head
        .split("\r\n")
        .find_map(|line| line.strip_prefix("Date: "))
        .unwrap_or_else(|| panic!("no Date: {head}"));
    assert!(date.len() == 29 && date.ends_with(" GMT"), "{date}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(body.contains("tcp_reactor_connections_open "), "{body}");
    // No body follows a HEAD's head: the next reply on the connection starts cleanly.
    let (head, _) = exchange(&mut stream, b"HEAD /metrics HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(!head.contains("Content-Length: 0\r\n"), "{head}");
    let (head, _) = exchange(&mut stream, b"GET /nope HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
    let (head, _) = exchange(
        &mut stream,
        b"POST /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert!(
        head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nAllow: GET, HEAD\r\n"), "{head}");
    let (head, _) = exchange(
        &mut stream,
        b"GET /metrics HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
    expect_eof(&mut stream);

    let mut old = connect(addr);
    let (head, _) = exchange(&mut old, b"GET /metrics HTTP/1.0\r\n\r\n");
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
    expect_eof(&mut old);

    // HTTP/1.1 without Host, or with two, is refused (RFC 9112, section 3.2).
    for request in [
        &b"GET /metrics HTTP/1.1\r\n\r\n"[..],
        b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        let mut hostless = connect(addr);
        let (head, _) = exchange(&mut hostless, request);
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        expect_eof(&mut hostless);
    }

    let mut oversized = b"GET /metrics HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
    oversized.resize(9 * 1024, b'a');
    for (request, status) in [
        (
            &b"NOT HTTP AT ALL\r\n\r\n"[..],
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            &oversized[..],
            "HTTP/1.1 431 Request Header Fields Too Large\r\n",
        ),
    ] {
        let mut stream = connect(addr);
        let (head, _) = exchange(&mut stream, request);
        assert!(head.starts_with(status), "{head}");
        assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
        expect_eof(&mut stream);
    }
    endpoint.stop();
    running.stop().expect("stop");
}

/// Stopping the endpoint closes the connections it holds and its listener, promptly.
#[test]
fn stopping_the_endpoint_closes_its_connections() {
    let config = EndpointConfig::default().with_request_timeout(Duration::from_secs(60));
    let (running, endpoint) = endpoint(&config);
    let addr = endpoint.local_addr();
    let mut idle: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
    scrape_within_patience(addr);
    endpoint.stop();
    for stream in &mut idle {
        expect_eof(stream);
    }
    assert!(TcpStream::connect(addr).is_err(), "still listening");
    running.stop().expect("stop");
}

/// A client the endpoint accepted just before it began to stop, whose request is still on
/// its way, is answered (with `Connection: close`) rather than reset: during an upgrade the
/// old process can accept a scraper that connected a moment ago.
#[test]
fn a_request_sent_just_after_the_stop_on_a_fresh_connection_is_answered() {
    let config = EndpointConfig::default().with_request_timeout(Duration::from_secs(20));
    let (running, endpoint) = endpoint(&config);
    let addr = endpoint.local_addr();
    let mut fresh = connect_within(addr, SCRAPE_PATIENCE);
    // Accepted in order: once a later client is answered, `fresh` has been accepted.
    scrape_within_patience(addr);
    let stopper = thread::spawn(move || endpoint.stop());
    // The listener closes as the stop begins; from then on a connect is refused.
    let began = std::time::Instant::now();
    while let Ok(probe) = TcpStream::connect(addr) {
        drop(probe);
        assert!(began.elapsed() < SCRAPE_PATIENCE, "the stop never began");
        thread::sleep(Duration::from_millis(1));
    }
    fresh
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("send the request");
    let (head, body) = read_reply(&mut fresh, false);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert!(body.contains("tcp_reactor_connections_open "), "{body}");
    expect_eof(&mut fresh);
    drop(fresh);
    stopper.join().expect("the stop returns");
    running.stop().expect("stop");
}

/// Zero limits are refused when the endpoint starts.
#[test]
fn zero_limits_are_refused() {
    let running = start(Echo, Model::Reactor);
    for config in [
        EndpointConfig::default().with_request_timeout(Duration::ZERO),
        EndpointConfig::default().with_max_connections(0),
    ] {
        let err = metrics::serve_with(loopback(), running.live_stats(), &config)
            .expect_err("a zero limit");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }
    running.stop().expect("stop");
}

/// Stopping the endpoint is graceful: a request under way when it stops (half its head
/// in, the rest after the stop began) and requests already received on a keep-alive
/// connection are answered, the last with `Connection: close`; new clients are refused.
#[test]
fn stopping_the_endpoint_answers_the_requests_already_received() {
    let config = EndpointConfig::default().with_request_timeout(Duration::from_secs(20));
    let (running, endpoint) = endpoint(&config);
    let addr = endpoint.local_addr();
    let mut partial = connect_within(addr, SCRAPE_PATIENCE);
    partial
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: te")
        .expect("send half a head");
    let mut pipelined = connect_within(addr, SCRAPE_PATIENCE);
    // Answered before or during the stop; either way both replies arrive whole.
    pipelined
        .write_all(
            b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: b\r\n\r\n",
        )
        .expect("send two requests");
    // Whether or not the endpoint has accepted them yet, the stop takes them: it accepts
    // what is queued before it closes its listener.
    let stopper = thread::spawn(move || endpoint.stop());
    // The stop waits for the half-sent request: it has not finished.
    thread::sleep(Duration::from_millis(200));
    assert!(
        !stopper.is_finished(),
        "the stop waits for the request under way"
    );
    partial.write_all(b"st\r\n\r\n").expect("send the rest");
    let (head, body) = read_reply(&mut partial, false);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert!(body.contains("tcp_reactor_connections_open "), "{body}");
    expect_eof(&mut partial);
    for head_request in [false, true] {
        let (head, _) = read_reply(&mut pipelined, head_request);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    }
    expect_eof(&mut pipelined);
    stopper.join().expect("the stop returns");
    assert!(TcpStream::connect(addr).is_err(), "still listening");
    running.stop().expect("stop");
}
