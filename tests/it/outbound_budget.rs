//! Connections a handler dials, seen by the budget and the live statistics under both
//! models: once dialed connections have buffered bytes and closed, the buffered-bytes gauge
//! is back to zero, and their closes (`eof`, `connect_failed`) are counted in the live
//! snapshot and its Prometheus text, as accepted connections' are.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use fixtures::client::connect;
use fixtures::server::loopback;
use fixtures::{PATIENCE, for_each_model};
use tcp_reactor::metrics::{Snapshot, render};
use tcp_reactor::{CloseReason, ConnId, Context, Handler, Model, Running, Server};

/// Each client makes the handler dial `target`; the dialed connection greets its peer
/// once established and keeps (unconsumed) what it is sent in its input buffer.
struct Dialer {
    target: SocketAddr,
}

impl Handler for Dialer {
    /// `Some(client)` for a dialed connection.
    type Session = Option<ConnId>;

    fn open(&self, ctx: &mut Context<'_>) -> Option<ConnId> {
        if let Some(client) = ctx.dialed_by() {
            return Some(client);
        }
        ctx.connect(self.target);
        None
    }

    fn data(&self, dialed: &mut Option<ConnId>, _: &mut Context<'_>, input: &[u8]) -> usize {
        // A dialed connection holds its input, as a partial frame would be held.
        if dialed.is_some() { 0 } else { input.len() }
    }

    fn connected(&self, _: &mut Option<ConnId>, ctx: &mut Context<'_>) {
        ctx.write(b"connected");
    }
}

/// Start the dialer against `target` under `model`.
fn start(model: Model, target: SocketAddr) -> Running {
    Server::new(Dialer { target })
        .model(model)
        .bind(loopback())
        .expect("start")
}

/// Wait until `done` holds for the live snapshot; return the last snapshot.
fn wait_for(running: &Running, done: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let snapshot = running.live_stats().snapshot();
        if done(&snapshot) || Instant::now() > deadline {
            return snapshot;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A dialed connection that buffered input and closed leaves nothing in the budget, and
/// both closes are counted live.
fn a_dialed_connection_leaves_the_budget_when_it_closes(model: Model) {
    let listener = TcpListener::bind(loopback()).expect("bind");
    let running = start(model, listener.local_addr().expect("addr"));
    let client = connect(running.local_addr());
    let (mut upstream, _) = listener.accept().expect("the handler dials");
    upstream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut greeting = [0; 9];
    upstream.read_exact(&mut greeting).expect("greeting");
    assert_eq!(&greeting, b"connected");
    upstream.write_all(&[b'x'; 4096]).expect("write");
    let holding = wait_for(&running, |s| s.buffered_bytes >= 4096);
    assert!(
        holding.buffered_bytes >= 4096,
        "the dialed connection's input is not in the budget: {} bytes",
        holding.buffered_bytes
    );
    drop(upstream);
    drop(client);
    let done = |s: &Snapshot| {
        s.connections == 0 && s.buffered_bytes == 0 && s.total.closed_by(CloseReason::Eof) >= 2
    };
    let after = wait_for(&running, done);
    assert_eq!(after.connections, 0, "connections still open");
    assert_eq!(after.buffered_bytes, 0, "bytes left in the budget");
    assert!(
        after.total.closed_by(CloseReason::Eof) >= 2,
        "closes not counted live: {:?}",
        after.total.closed
    );
    running.stop().expect("stop");
}

/// A refused dial is counted as `connect_failed` in the live snapshot and in the
/// Prometheus text.
fn a_refused_dial_is_counted_live(model: Model) {
    let refused = TcpListener::bind(loopback()).expect("bind");
    let target = refused.local_addr().expect("addr");
    drop(refused);
    let running = start(model, target);
    let _client = connect(running.local_addr());
    let failed = |s: &Snapshot| {
        s.total.closed_by(CloseReason::ConnectFailed(
            std::io::ErrorKind::ConnectionRefused,
        )) >= 1
    };
    let snapshot = wait_for(&running, failed);
    let text = render(&snapshot);
    assert!(
        text.contains("tcp_reactor_closed_total{reason=\"connect_failed\"} 1\n"),
        "{text}"
    );
    running.stop().expect("stop");
}

for_each_model!(
    a_dialed_connection_leaves_the_budget_when_it_closes,
    a_refused_dial_is_counted_live,
);
