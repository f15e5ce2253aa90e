//! Raw-socket fixtures for protocol tests: start a server on 127.0.0.1 port 0, connect,
//! send bytes, and read exact replies with a deadline so no test can hang.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use tcp_reactor::{Handler, Model, Running, Server};

/// How long any single read may wait before the test fails.
pub const READ_DEADLINE: Duration = Duration::from_secs(10);

/// Start `handler` under `model` with `workers` workers on a free loopback port.
#[track_caller]
pub fn start<H: Handler>(handler: H, model: Model, workers: usize) -> Running {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    match Server::new(handler)
        .model(model)
        .workers(workers)
        .bind(addr)
    {
        Ok(running) => running,
        Err(err) => panic!("cannot start a {model:?} server: {err}"),
    }
}

/// Connect to `server` with a read deadline.
#[track_caller]
pub fn connect(server: &Running) -> TcpStream {
    let stream = TcpStream::connect(server.local_addr()).expect("connect to the test server");
    stream
        .set_read_timeout(Some(READ_DEADLINE))
        .expect("set a read deadline");
    stream.set_nodelay(true).expect("set TCP_NODELAY");
    stream
}

/// Send all of `bytes`.
#[track_caller]
pub fn send(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).expect("send to the test server");
}

/// Read exactly `len` bytes.
#[track_caller]
pub fn read_exact(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut reply = vec![0; len];
    if let Err(err) = stream.read_exact(&mut reply) {
        panic!("reading {len} bytes: {err}");
    }
    reply
}

/// Read exactly as many bytes as `want` holds and check they are `want`.
#[track_caller]
pub fn expect(stream: &mut TcpStream, want: &[u8]) {
    let got = read_exact(stream, want.len());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(want),
        "unexpected reply"
    );
}

/// Read until the server closes, and check nothing more than EOF arrives.
#[track_caller]
pub fn expect_eof(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(
            rest.is_empty(),
            "bytes after the last reply: {:?}",
            String::from_utf8_lossy(&rest)
        ),
        Err(err) if err.kind() == ErrorKind::WouldBlock || err.kind() == ErrorKind::TimedOut => {
            panic!("the server did not close the connection")
        }
        Err(err) => panic!("expected a clean close, got {err}"),
    }
}
