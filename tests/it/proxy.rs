//! The TCP proxy (`protocols::Proxy`) over real sockets: bytes forwarded unchanged for many
//! pairs, half-close and reset carried across in each direction (a reset also to a client
//! that has half-closed), a half-closed pair ended by a stop or the idle timeout while its
//! upstream stays silent, an upstream that refuses,
//! one that accepts and never answers, one that cannot even be connected to in time, and a
//! thousand pairs at once, each freed at the end (both slots).
//!
//! Every test runs under both models (`reactor::…` and `threads::…`). Upstreams are our echo
//! server or small blocking test servers on 127.0.0.1. The memory
//! bound under a firehose is in `proxy_memory.rs`; the step API and the posting handle in
//! `event_loop.rs`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use fixtures::client::{connect, pseudo_random_bytes, recv_to_end};
use fixtures::process::{ServerProcess, model_arg, raise_fd_limit, stat};
use fixtures::server::loopback;
use fixtures::{PATIENCE, for_each_model, wait_until};
use tcp_reactor::protocols::{Echo, Proxy};
use tcp_reactor::{CloseReason, Config, Model, Running, Server};

/// Start our echo server as the upstream.
fn echo_upstream() -> Running {
    Server::new(Echo)
        .bind(loopback())
        .expect("start the echo upstream")
}

/// Start the proxy under `model` to `upstreams` with `config`.
fn proxy(model: Model, upstreams: Vec<SocketAddr>, config: Config) -> Running {
    Server::new(Proxy::new(upstreams, Duration::from_secs(30)))
        .config(config)
        .model(model)
        .bind(loopback())
        .expect("start the proxy")
}

/// A port on which nothing listens (bound, then closed).
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind(loopback()).expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

/// A one-connection upstream running `serve` on the connection it accepts; the join handle
/// returns what `serve` returns.
fn upstream_once<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (SocketAddr, thread::JoinHandle<T>) {
    let listener = TcpListener::bind(loopback()).expect("bind the upstream");
    let addr = listener.local_addr().expect("addr");
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("the proxy connects");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        serve(stream)
    });
    (addr, handle)
}

fn bytes_are_forwarded_unchanged_for_many_pairs(model: Model) {
    let upstream = echo_upstream();
    let running = proxy(model, vec![upstream.local_addr()], Config::default());
    let addr = running.local_addr();
    let pairs: Vec<_> = (0..32u64)
        .map(|seed| {
            thread::spawn(move || {
                let payload = pseudo_random_bytes(seed, 200_000 + seed as usize * 1000);
                let mut client = connect(addr);
                let mut writer = client.try_clone().expect("clone");
                let sent = payload.clone();
                let sending = thread::spawn(move || {
                    writer.write_all(&sent).expect("send through the proxy");
                    writer.shutdown(Shutdown::Write).expect("half-close");
                });
                let back = recv_to_end(&mut client);
                sending.join().expect("writer");
                assert!(back == payload, "pair {seed}: the bytes came back changed");
            })
        })
        .collect();
    for pair in pairs {
        pair.join().expect("a pair failed");
    }
    // Both sides of every pair close once both directions are done; then stop.
    assert!(wait_until(PATIENCE, || running.connections() == 0));
    let stats = running.stop().expect("stop the proxy");
    assert_eq!(stats.accepted, 32);
    assert_eq!(stats.connected, 32);
    assert_eq!(stats.closed_by(CloseReason::Eof), 64, "{stats}");
}

fn a_clients_eof_reaches_the_upstream_and_the_reply_still_comes_back(model: Model) {
    // The upstream answers only after the client's EOF: with the half-close carried
    // across, the answer reaches the client, then the client reads EOF.
    let (up, upstream) = upstream_once(|mut stream| {
        let mut all = Vec::new();
        stream
            .read_to_end(&mut all)
            .expect("read to the client's EOF");
        stream
            .write_all(format!("got {} bytes", all.len()).as_bytes())
            .expect("reply after EOF");
    });
    let running = proxy(model, vec![up], Config::default());
    let mut client = connect(running.local_addr());
    client.write_all(&[7; 5000]).expect("send");
    client.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(recv_to_end(&mut client), b"got 5000 bytes");
    upstream.join().expect("upstream");
    assert!(wait_until(PATIENCE, || running.connections() == 0));
}

fn an_upstreams_eof_reaches_the_client_which_can_still_send(model: Model) {
    let (up, upstream) = upstream_once(|mut stream| {
        stream.write_all(b"banner").expect("send the banner");
        stream.shutdown(Shutdown::Write).expect("half-close");
        let mut all = Vec::new();
        stream
            .read_to_end(&mut all)
            .expect("read to the client's EOF");
        all
    });
    let running = proxy(model, vec![up], Config::default());
    let mut client = connect(running.local_addr());
    let mut banner = [0; 6];
    client.read_exact(&mut banner).expect("the banner");
    assert_eq!(&banner, b"banner");
    let mut rest = [0; 1];
    assert_eq!(
        client.read(&mut rest).expect("EOF"),
        0,
        "the upstream's EOF"
    );
    client.write_all(b"still talking").expect("send after EOF");
    client.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(upstream.join().expect("upstream"), b"still talking");
    assert_eq!(recv_to_end(&mut client), b"");
    assert!(wait_until(PATIENCE, || running.connections() == 0));
}

/// Reset `stream`: `SO_LINGER` 0, then close.
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(stream);
}

fn a_clients_reset_reaches_the_upstream_as_a_reset(model: Model) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (up, upstream) = upstream_once(move |mut stream| {
        let mut hello = [0; 5];
        stream.read_exact(&mut hello).expect("the client's bytes");
        ready_tx.send(()).expect("tell the client");
        let mut buf = [0; 16];
        stream.read(&mut buf).map_err(|err| err.kind())
    });
    let running = proxy(model, vec![up], Config::default());
    let mut client = connect(running.local_addr());
    client.write_all(b"hello").expect("send");
    ready_rx
        .recv_timeout(PATIENCE)
        .expect("the upstream got the bytes");
    reset(client);
    assert_eq!(
        upstream.join().expect("upstream"),
        Err(ErrorKind::ConnectionReset)
    );
    drop(running);
}

fn an_upstreams_reset_reaches_the_client_as_a_reset(model: Model) {
    let (up, upstream) = upstream_once(|mut stream| {
        let mut hello = [0; 5];
        stream.read_exact(&mut hello).expect("the client's bytes");
        reset(stream);
    });
    let running = proxy(model, vec![up], Config::default());
    let mut client = connect(running.local_addr());
    client.write_all(b"hello").expect("send");
    upstream.join().expect("upstream");
    let mut buf = [0; 16];
    let got = client.read(&mut buf).map_err(|err| err.kind());
    assert_eq!(got, Err(ErrorKind::ConnectionReset));
}

/// A one-connection upstream that reads the client's bytes up to the EOF the proxy carries
/// across, reports them on `eof_tx`, then does what `then` says with the connection.
fn upstream_after_eof(
    eof_tx: mpsc::Sender<Vec<u8>>,
    then: impl FnOnce(TcpStream) + Send + 'static,
) -> (SocketAddr, thread::JoinHandle<()>) {
    upstream_once(move |mut stream| {
        let mut all = Vec::new();
        stream
            .read_to_end(&mut all)
            .expect("read to the client's EOF");
        eof_tx.send(all).expect("tell the test");
        then(stream);
    })
}

/// Keep `stream` open and silent until the test says so (or `PATIENCE` passes).
fn stay_silent(stream: TcpStream, until: mpsc::Receiver<()>) {
    let _ = until.recv_timeout(PATIENCE);
    drop(stream);
}

fn an_upstreams_reset_reaches_a_half_closed_client_as_a_reset(model: Model) {
    let (eof_tx, eof_rx) = mpsc::channel();
    let (up, upstream) = upstream_after_eof(eof_tx, reset);
    let running = proxy(model, vec![up], Config::default());
    let mut client = connect(running.local_addr());
    client.write_all(b"hello").expect("send");
    client.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(eof_rx.recv_timeout(PATIENCE).expect("the EOF"), b"hello");
    let started = Instant::now();
    upstream.join().expect("upstream");
    let mut buf = [0; 16];
    let got = client.read(&mut buf).map_err(|err| err.kind());
    assert_eq!(got, Err(ErrorKind::ConnectionReset), "not an EOF, not data");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the reset came at once, not after {:?}",
        started.elapsed()
    );
    assert!(wait_until(PATIENCE, || running.connections() == 0));
}

fn a_stop_closes_a_half_closed_pair_whose_upstream_stays_silent(model: Model) {
    let (eof_tx, eof_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let (up, upstream) = upstream_after_eof(eof_tx, move |stream| stay_silent(stream, done_rx));
    // The stop may wait for the silent upstream's EOF up to the linger timeout (the
    // reactor drains a connection it closes): a short one keeps the test short.
    let config = Config::default().with_linger(Duration::from_millis(300));
    let running = proxy(model, vec![up], config);
    let mut client = connect(running.local_addr());
    client.write_all(b"hello").expect("send");
    client.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(eof_rx.recv_timeout(PATIENCE).expect("the EOF"), b"hello");
    // No idle timeout and a silent upstream: only the stop can end this pair.
    let (stopped_tx, stopped_rx) = mpsc::channel();
    let started = Instant::now();
    thread::spawn(move || {
        let _ = stopped_tx.send(running.stop());
    });
    let stats = stopped_rx
        .recv_timeout(PATIENCE)
        .expect("the stop returns")
        .expect("stop the proxy");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped within the linger timeout, not after {:?}",
        started.elapsed()
    );
    assert_eq!(recv_to_end(&mut client), b"", "the client reads EOF");
    assert!(stats.closed_by(CloseReason::Shutdown) >= 1, "{stats}");
    done_tx.send(()).expect("release the upstream");
    upstream.join().expect("upstream");
}

fn a_half_closed_pair_whose_upstream_stays_silent_is_closed_by_the_idle_timeout(model: Model) {
    let (eof_tx, eof_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let (up, upstream) = upstream_after_eof(eof_tx, move |stream| stay_silent(stream, done_rx));
    let config = Config::default().with_idle_timeout(Some(Duration::from_millis(300)));
    let running = proxy(model, vec![up], config);
    let mut client = connect(running.local_addr());
    client.write_all(b"hello").expect("send");
    client.shutdown(Shutdown::Write).expect("half-close");
    let started = Instant::now();
    assert_eq!(eof_rx.recv_timeout(PATIENCE).expect("the EOF"), b"hello");
    assert_eq!(recv_to_end(&mut client), b"", "the client reads EOF");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed by the idle timeout, not after {:?}",
        started.elapsed()
    );
    assert!(wait_until(PATIENCE, || running.connections() == 0));
    done_tx.send(()).expect("release the upstream");
    upstream.join().expect("upstream");
    let stats = running.stop().expect("stop");
    assert!(stats.closed_by(CloseReason::IdleTimeout) >= 1, "{stats}");
}

fn a_refusing_upstream_closes_the_client_at_once_and_is_skipped_after(model: Model) {
    let upstream = echo_upstream();
    let refusing = closed_port();
    let running = proxy(
        model,
        vec![refusing, upstream.local_addr()],
        Config::default(),
    );
    let addr = running.local_addr();
    // The first client is sent to the refusing upstream: closed at once, nothing echoed.
    let mut first = connect(addr);
    let started = Instant::now();
    let _ = first.write_all(b"ping");
    let mut buf = [0; 4];
    let got = first.read(&mut buf);
    assert!(
        matches!(got, Ok(0) | Err(_)),
        "the client is closed, not served: {got:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "closed at once");
    // Every later client goes to the upstream that works, within the retry interval.
    for _ in 0..4 {
        let mut client = connect(addr);
        client.write_all(b"ping").expect("send");
        client.read_exact(&mut buf).expect("echo through the proxy");
        assert_eq!(&buf, b"ping");
    }
    let stats = running.stop().expect("stop");
    assert_eq!(
        stats.closed_by(CloseReason::ConnectFailed(ErrorKind::ConnectionRefused)),
        1,
        "{stats}"
    );
}

fn a_silent_upstream_is_closed_by_the_idle_timeout(model: Model) {
    let (up, upstream) = upstream_once(|mut stream| {
        // Accept and never answer; wait for the proxy to give up.
        let mut buf = [0; 64];
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
    });
    let config = Config::default().with_idle_timeout(Some(Duration::from_millis(300)));
    let running = proxy(model, vec![up], config);
    let mut client = connect(running.local_addr());
    client.write_all(b"anyone there?").expect("send");
    let started = Instant::now();
    assert_eq!(recv_to_end(&mut client), b"");
    assert!(started.elapsed() < Duration::from_secs(5));
    upstream.join().expect("upstream");
    let stats = running.stop().expect("stop");
    assert!(stats.closed_by(CloseReason::IdleTimeout) >= 1, "{stats}");
}

/// A blackholed upstream on loopback: a listener whose accept queue is full, so the kernel
/// drops new SYNs and a connect to it hangs until the connector gives up.
struct Blackhole {
    /// Its address.
    addr: SocketAddr,
    /// The listener, never accepted from.
    _listener: socket2::Socket,
    /// The connects that fill its queue.
    _fillers: Vec<socket2::Socket>,
}

fn blackhole() -> Blackhole {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&loopback().into()).expect("bind");
    socket.listen(0).expect("listen");
    let addr: SocketAddr = socket
        .local_addr()
        .ok()
        .and_then(|addr| addr.as_socket())
        .expect("addr");
    let fillers: Vec<_> = (0..4)
        .filter_map(|_| {
            let filler =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            filler.set_nonblocking(true).ok()?;
            let _ = filler.connect(&addr.into());
            Some(filler)
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    Blackhole {
        addr,
        _listener: socket,
        _fillers: fillers,
    }
}

fn an_upstream_that_cannot_be_connected_to_in_time_fails_the_connect(model: Model) {
    let full = blackhole();
    let config = Config::default().with_connect_timeout(Duration::from_millis(300));
    let running = proxy(model, vec![full.addr], config);
    let mut client = connect(running.local_addr());
    let started = Instant::now();
    let mut buf = [0; 4];
    let got = client.read(&mut buf);
    assert!(matches!(got, Ok(0) | Err(_)), "closed: {got:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed after the timeout ({waited:?})"
    );
    let stats = running.stop().expect("stop");
    assert_eq!(
        stats.closed_by(CloseReason::ConnectFailed(ErrorKind::TimedOut)),
        1,
        "{stats}"
    );
}

/// A client that sends as soon as it is connected, while the proxy's connect to a
/// blackholed upstream is under way, with `--connect-timeout` and `--linger` as given:
/// the client is closed cleanly at the connect timeout, everything of the pair is freed
/// at once (slots, threads, descriptors), the upstream is skipped from then on, and
/// SIGTERM stops the proxy promptly.
fn blackholed_upstream_with(model: Model, connect_timeout: &str, linger: &str) {
    let dead = blackhole();
    let echo = echo_upstream();
    let proxy = ServerProcess::spawn(
        &[
            "--protocol",
            "proxy",
            "--model",
            model_arg(model),
            "--upstream",
            &dead.addr.to_string(),
            "--upstream",
            &echo.local_addr().to_string(),
            "--upstream-retry",
            "60",
            "--connect-timeout",
            connect_timeout,
            "--linger",
            linger,
        ],
        None,
    );
    // The process starts its signal thread after it announces its address.
    let mut threads = proxy.status().threads;
    let settled = wait_until(PATIENCE, || {
        thread::sleep(Duration::from_millis(200));
        let before = std::mem::replace(&mut threads, proxy.status().threads);
        before == threads
    });
    assert!(settled, "the proxy's threads settle after its start");
    let sockets = proxy.open_sockets();
    // The first client is sent to the blackholed upstream (round-robin starts there).
    let mut client = connect(proxy.addr);
    let started = Instant::now();
    client.write_all(b"hello").expect("send at once");
    let mut buf = [0; 8];
    let got = client.read(&mut buf).map_err(|err| err.kind());
    let waited = started.elapsed();
    assert_eq!(
        got,
        Ok(0),
        "the client is closed cleanly, not served or reset"
    );
    let timeout: f64 = connect_timeout.parse().expect("seconds");
    assert!(
        waited >= Duration::from_secs_f64(timeout * 0.9),
        "closed at the connect timeout, not before ({waited:?})"
    );
    drop(client);
    assert!(
        wait_until(PATIENCE, || proxy.open_sockets() == sockets
            && proxy.status().threads == threads),
        "the pair's sockets and threads are freed: {} sockets (was {sockets}), {} threads \
         (was {threads})",
        proxy.open_sockets(),
        proxy.status().threads
    );
    // The upstream that failed is skipped: every later client reaches the echo server.
    for _ in 0..3 {
        let mut client = connect(proxy.addr);
        client.write_all(b"ping").expect("send");
        let mut back = [0; 4];
        client
            .read_exact(&mut back)
            .expect("echo through the proxy");
        assert_eq!(&back, b"ping");
    }
    let stats = proxy.stop();
    assert_eq!(stat(&stats, "connect_failed"), 1, "{stats:?}");
    assert_eq!(stat(&stats, "reset"), 0, "{stats:?}");
}

fn a_client_that_sends_during_a_blackholed_connect_is_closed_and_freed_at_the_connect_timeout(
    model: Model,
) {
    // A write that waited for the connect would otherwise wait for the kernel's own
    // retries (about two minutes) once the connect timed out.
    blackholed_upstream_with(model, "0.3", "2");
}

fn a_blackholed_upstream_is_skipped_even_with_a_linger_shorter_than_the_connect_timeout(
    model: Model,
) {
    // A sender must wait for the connect to end, not give up on it after `linger`.
    blackholed_upstream_with(model, "0.6", "0.2");
}

fn a_thousand_pairs_at_once_are_all_forwarded_and_all_freed(model: Model) {
    const PAIRS: usize = 1000;
    let model_name = match model {
        Model::Threads => "threads",
        _ => "reactor",
    };
    raise_fd_limit();
    let echo = ServerProcess::spawn(&["--max-connections", "5000"], Some(8192));
    let upstream = echo.addr.to_string();
    let proxy = ServerProcess::spawn(
        &[
            "--protocol",
            "proxy",
            "--model",
            model_name,
            "--upstream",
            &upstream,
            "--max-connections",
            "5000",
        ],
        Some(8192),
    );
    // The listener (and, under threads, the handle that wakes its accept): the baseline.
    let baseline = proxy.open_sockets();
    let mut clients: Vec<TcpStream> = (0..PAIRS).map(|_| connect(proxy.addr)).collect();
    for (n, client) in clients.iter_mut().enumerate() {
        client
            .write_all(format!("{n:08}").as_bytes())
            .expect("send");
    }
    for (n, client) in clients.iter_mut().enumerate() {
        let mut back = [0; 8];
        client
            .read_exact(&mut back)
            .expect("echo through the proxy");
        assert_eq!(back, *format!("{n:08}").as_bytes());
    }
    // Every pair open at once: a client and an upstream socket each, plus the listener.
    assert!(
        proxy.open_sockets() > 2 * PAIRS,
        "{} sockets",
        proxy.open_sockets()
    );
    for client in &clients {
        client.shutdown(Shutdown::Write).expect("half-close");
    }
    for client in &mut clients {
        assert_eq!(recv_to_end(client), b"");
    }
    drop(clients);
    assert!(
        wait_until(Duration::from_secs(10), || proxy.open_sockets() == baseline),
        "every pair's sockets are closed: {} left",
        proxy.open_sockets()
    );
    let stats = proxy.stop();
    assert_eq!(stat(&stats, "accepted"), PAIRS as u64);
    assert_eq!(
        stat(&stats, "closed"),
        2 * PAIRS as u64,
        "both slots of every pair"
    );
    assert_eq!(stat(&stats, "eof"), 2 * PAIRS as u64);
    drop(echo);
}

/// The `tcp-reactor serve --protocol proxy` process logs why it closed a client whose
/// upstream refused: one warning naming the upstream and the error, and one line (at
/// debug) for each client turned away while that upstream is skipped.
fn a_refusing_upstream_is_logged_with_its_address_and_the_error(model: Model) {
    let refusing = closed_port();
    let upstream = refusing.to_string();
    let model = fixtures::process::model_arg(model);
    let proxy = ServerProcess::spawn(
        &[
            "--protocol",
            "proxy",
            "--model",
            model,
            "--upstream",
            &upstream,
        ],
        None,
    );
    let mut client = connect(proxy.addr);
    let mut buf = [0; 4];
    let got = client.read(&mut buf);
    assert!(matches!(got, Ok(0) | Err(_)), "closed, not served: {got:?}");
    let needle = format!("cannot reach upstream {upstream} for client connection");
    assert!(
        wait_until(PATIENCE, || proxy.log_lines_with(&needle) == 1),
        "no log line with {needle:?}"
    );
    assert_eq!(proxy.log_lines_with("WARN"), 1);
    assert_eq!(
        proxy.log_lines_with("connect failed (connection refused)"),
        1
    );
    let stats = proxy.stop();
    assert_eq!(stat(&stats, "connect_failed"), 1, "{stats:?}");
}

for_each_model!(
    a_refusing_upstream_is_logged_with_its_address_and_the_error,
    bytes_are_forwarded_unchanged_for_many_pairs,
    a_clients_eof_reaches_the_upstream_and_the_reply_still_comes_back,
    an_upstreams_eof_reaches_the_client_which_can_still_send,
    a_clients_reset_reaches_the_upstream_as_a_reset,
    an_upstreams_reset_reaches_the_client_as_a_reset,
    an_upstreams_reset_reaches_a_half_closed_client_as_a_reset,
    a_stop_closes_a_half_closed_pair_whose_upstream_stays_silent,
    a_half_closed_pair_whose_upstream_stays_silent_is_closed_by_the_idle_timeout,
    a_refusing_upstream_closes_the_client_at_once_and_is_skipped_after,
    a_silent_upstream_is_closed_by_the_idle_timeout,
    an_upstream_that_cannot_be_connected_to_in_time_fails_the_connect,
    a_client_that_sends_during_a_blackholed_connect_is_closed_and_freed_at_the_connect_timeout,
    a_blackholed_upstream_is_skipped_even_with_a_linger_shorter_than_the_connect_timeout,
    a_thousand_pairs_at_once_are_all_forwarded_and_all_freed,
);
