//! Fixtures shared by the integration tests: servers on 127.0.0.1:0 under a chosen model,
//! clients with timeouts, and assertion helpers that report the caller's line.
//!
//! Every test is written once and run against both models with [`for_each_model!`].

#![allow(dead_code)] // Each test file uses a different part of the fixtures.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use tcp_reactor::{Config, Handler, Model, Running, Server};

pub mod faults;

/// Longest any single step of a test may wait before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Generates, for each named test function `fn name(model: Model)`, a `#[test]` per model:
/// `reactor::name` and `threads::name` (so `cargo test threads::` runs one model).
#[macro_export]
macro_rules! for_each_model {
    ($($name:ident),* $(,)?) => {
        mod reactor {
            $(
                #[test]
                fn $name() {
                    super::$name(tcp_reactor::Model::Reactor);
                }
            )*
        }
        mod threads {
            $(
                #[test]
                fn $name() {
                    super::$name(tcp_reactor::Model::Threads);
                }
            )*
        }
    };
}

/// Log to the test's output when `RUST_LOG` asks for it.
pub fn init_logs() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// Start `handler` under `model` with default limits on a free loopback port.
#[track_caller]
pub fn start<H: Handler>(handler: H, model: Model) -> Running {
    start_with(handler, model, Config::default())
}

/// Start `handler` under `model` with `config` on a free loopback port.
#[track_caller]
pub fn start_with<H: Handler>(handler: H, model: Model, config: Config) -> Running {
    start_server(Server::new(handler), model, config)
}

/// Start a prepared server (e.g. from `Server::from_arc`) on a free loopback port.
#[track_caller]
pub fn start_server<H: Handler>(server: Server<H>, model: Model, config: Config) -> Running {
    init_logs();
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("a valid address");
    match server.model(model).config(config).bind(addr) {
        Ok(running) => running,
        Err(err) => panic!("could not start a {model:?} server: {err}"),
    }
}

/// Connect to `addr` with read and write timeouts of [`PATIENCE`].
#[track_caller]
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = match TcpStream::connect_timeout(&addr, PATIENCE) {
        Ok(stream) => stream,
        Err(err) => panic!("could not connect to {addr}: {err}"),
    };
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("set a read timeout");
    stream
        .set_write_timeout(Some(PATIENCE))
        .expect("set a write timeout");
    stream
}

/// Write all of `bytes`.
#[track_caller]
pub fn send(stream: &mut TcpStream, bytes: &[u8]) {
    if let Err(err) = stream.write_all(bytes) {
        panic!("could not send {} bytes: {err}", bytes.len());
    }
}

/// Read exactly `len` bytes.
#[track_caller]
pub fn recv_exact(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    if let Err(err) = stream.read_exact(&mut buf) {
        panic!("could not read {len} bytes: {err}");
    }
    buf
}

/// Read until the server closes the connection (EOF); a reset or timeout fails.
#[track_caller]
pub fn recv_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Err(err) = stream.read_to_end(&mut buf) {
        panic!(
            "connection did not end cleanly after {} bytes: {err}",
            buf.len()
        );
    }
    buf
}

/// Read one `\n`-terminated line, byte by byte (tests only).
#[track_caller]
pub fn recv_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => panic!(
                "connection closed after {:?}",
                String::from_utf8_lossy(&line)
            ),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(err) => panic!("no line (got {:?}): {err}", String::from_utf8_lossy(&line)),
        }
    }
    String::from_utf8(line).expect("a UTF-8 line")
}

/// Read exactly as many bytes as `want` holds and check they are `want`.
#[track_caller]
pub fn expect_reply(stream: &mut TcpStream, want: &[u8]) {
    let got = recv_exact(stream, want.len());
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
}

/// Check the server closes the connection cleanly with nothing more to say.
#[track_caller]
pub fn expect_eof(stream: &mut TcpStream) {
    let rest = recv_to_end(stream);
    assert!(
        rest.is_empty(),
        "bytes after the last reply: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Assert that nothing arrives on `stream` within `wait` (the connection stays open).
#[track_caller]
pub fn assert_silent(stream: &mut TcpStream, wait: Duration) {
    stream
        .set_read_timeout(Some(wait))
        .expect("set a read timeout");
    let mut byte = [0u8; 64];
    match stream.read(&mut byte) {
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        Ok(0) => panic!("expected silence, the connection was closed"),
        Ok(n) => panic!(
            "expected silence, got {:?}",
            String::from_utf8_lossy(&byte[..n])
        ),
        Err(err) => panic!("expected silence, got an error: {err}"),
    }
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("set a read timeout");
}

/// Poll `condition` until it holds; fail after [`PATIENCE`] with `what`.
#[track_caller]
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        if Instant::now() >= deadline {
            panic!("timed out waiting until {what}");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Wait until the server has exactly `n` connections open.
#[track_caller]
pub fn wait_for_connections(running: &Running, n: u64) {
    let mut seen = running.connections();
    eventually(
        &format!("{n} connections are open (last seen {seen})"),
        || {
            seen = running.connections();
            seen == n
        },
    );
}

/// Close the write side, telling the server this client has finished sending.
#[track_caller]
pub fn finish_sending(stream: &TcpStream) {
    stream
        .shutdown(Shutdown::Write)
        .expect("shut down the write side");
}
