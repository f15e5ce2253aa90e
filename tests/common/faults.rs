//! Fixtures of the fault, limit and bad-input tests: servers under every model, blocking clients
//! with time bounds, test handlers ([`handlers`]) and a server subprocess ([`process`]).
//!
//! Every helper that can block has a deadline, so a broken server fails a test instead of
//! hanging it. Helpers that assert are `#[track_caller]`, so a failure points at the test.

pub mod handlers;
pub mod process;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use tcp_reactor::{Config, Handler, Model, Running, Server, Stats};

/// Every model a behavioural test runs against: the same assertions hold for both.
pub const MODELS: &[Model] = &[Model::Reactor, Model::Threads];

/// How long any single client operation may block before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// IPv4 loopback, port 0: the kernel picks a free port.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Default limits with a short linger, so that stopping a server with stuck clients is quick.
pub fn config() -> Config {
    Config::default().with_linger(Duration::from_millis(500))
}

/// Start `handler` under `model` with `config` on a free loopback port.
#[track_caller]
pub fn serve<H: Handler>(handler: H, config: Config, model: Model) -> Running {
    match Server::new(handler)
        .config(config)
        .model(model)
        .bind(loopback())
    {
        Ok(running) => running,
        Err(err) => panic!("cannot start a {model:?} server: {err}"),
    }
}

/// Stop `running`, check that every accepted connection was closed and counted, and return
/// the final stats.
#[track_caller]
pub fn stop_checked(running: Running) -> Stats {
    let stats = match running.stop() {
        Ok(stats) => stats,
        Err(err) => panic!("server failed: {err}"),
    };
    assert_eq!(
        stats.accepted,
        stats.closed_total(),
        "every accepted connection is closed exactly once: {stats}"
    );
    stats
}

/// Connect to `addr` with read and write timeouts of [`IO_TIMEOUT`].
#[track_caller]
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
        Ok(stream) => stream,
        Err(err) => panic!("cannot connect to {addr}: {err}"),
    };
    set_timeouts(&stream, IO_TIMEOUT);
    stream
}

/// Set both socket timeouts of `stream`.
#[track_caller]
pub fn set_timeouts(stream: &TcpStream, timeout: Duration) {
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .expect("set socket timeouts");
}

/// Send `payload` and check that exactly the same bytes come back.
#[track_caller]
pub fn echo_roundtrip(stream: &mut TcpStream, payload: &[u8]) {
    stream.write_all(payload).expect("write to echo server");
    let mut back = vec![0; payload.len()];
    stream
        .read_exact(&mut back)
        .expect("read the echo back within the timeout");
    assert!(back == payload, "echo returned different bytes");
}

/// Read until the server closes its side; fail if it does not within [`IO_TIMEOUT`].
#[track_caller]
pub fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    match stream.read_to_end(&mut all) {
        Ok(_) => all,
        Err(err) => panic!("no EOF from the server ({err}) after {} bytes", all.len()),
    }
}

/// Write `payload`, half-close, and return everything the server sends until it closes.
#[track_caller]
pub fn send_and_half_close(stream: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
    // A writer thread, so that a large payload cannot deadlock against a large reply.
    let mut writer = stream.try_clone().expect("clone the client socket");
    let payload = payload.to_vec();
    let sending = thread::spawn(move || {
        writer.write_all(&payload)?;
        writer.shutdown(Shutdown::Write)
    });
    let reply = read_to_eof(stream);
    sending
        .join()
        .expect("writer thread")
        .expect("write the payload and half-close");
    reply
}

/// How a client socket ended, as seen by one nonblocking check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Still open: a read would block.
    Open,
    /// The server closed it (EOF) or reset it.
    Closed,
}

/// Look at `stream` without blocking: discard whatever it has to read and report whether
/// the server has closed it. `stream` must be nonblocking.
pub fn poll_closed(stream: &mut TcpStream) -> Peer {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Peer::Closed,
            Ok(_) => continue,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Peer::Open,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Peer::Closed,
        }
    }
}

/// Poll `condition` every 5 ms until it holds or `timeout` passes; true if it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Wait until `running` has exactly `n` connections open, or fail.
#[track_caller]
pub fn wait_connections(running: &Running, n: u64) {
    assert!(
        wait_until(IO_TIMEOUT, || running.connections() == n),
        "expected {n} open connections, the server has {}",
        running.connections()
    );
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Connect with a small fixed receive buffer (`SO_RCVBUF`, set before connecting, which
/// also turns off receive autotuning), so the kernel cannot absorb much of what the
/// server sends: a client that does not read then pushes the burden onto the server.
#[track_caller]
pub fn connect_small_rcvbuf(addr: SocketAddr, bytes: usize) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("socket");
    socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    socket
        .connect_timeout(&addr.into(), IO_TIMEOUT)
        .unwrap_or_else(|err| panic!("cannot connect to {addr}: {err}"));
    let stream: TcpStream = socket.into();
    set_timeouts(&stream, IO_TIMEOUT);
    stream
}
