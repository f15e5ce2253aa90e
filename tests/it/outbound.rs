//! Outbound connections from a handler, under both models: the id comes back at once,
//! output sent to the connection before it is established is queued and arrives (first,
//! in the reactor),
//! `connected` is called once it is, and a refused connect reaches `close` as
//! `ConnectFailed`, with `dialed_by` naming the connection that dialed.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;
use std::sync::mpsc::{self, Sender};

use fixtures::client::connect;
use fixtures::server::loopback;
use fixtures::{PATIENCE, for_each_model};
use tcp_reactor::{CloseReason, ConnId, Context, Handler, Model, Server};

/// What the dialer saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// `open` of a dialed connection, with `dialed_by`.
    DialedOpen(ConnId),
    /// `connected`.
    Connected,
    /// `close` of a dialed connection.
    Closed(CloseReason),
}

/// Each client makes the handler dial `target` and send a greeting before the connect
/// can have completed; the dialed connection's events are reported on `seen`.
struct Dialer {
    target: SocketAddr,
    seen: Mutex<Sender<Seen>>,
}

impl Dialer {
    fn report(&self, seen: Seen) {
        let _ = self.seen.lock().unwrap().send(seen);
    }
}

impl Handler for Dialer {
    /// `Some(client)` for a dialed connection.
    type Session = Option<ConnId>;

    fn open(&self, ctx: &mut Context<'_>) -> Option<ConnId> {
        if let Some(client) = ctx.dialed_by() {
            self.report(Seen::DialedOpen(client));
            return Some(client);
        }
        let dialed = ctx.connect(self.target);
        ctx.send_to(dialed, b"sent while connecting;");
        None
    }

    fn data(&self, _: &mut Option<ConnId>, _: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }

    fn connected(&self, client: &mut Option<ConnId>, ctx: &mut Context<'_>) {
        self.report(Seen::Connected);
        ctx.write(b"connected");
        if let Some(client) = *client {
            ctx.send_to(client, b"up");
        }
    }

    fn close(&self, client: Option<ConnId>, _: ConnId, reason: CloseReason) {
        if client.is_some() {
            self.report(Seen::Closed(reason));
        }
    }
}

fn output_sent_while_connecting_arrives_first(model: Model) {
    let listener = TcpListener::bind(loopback()).expect("bind");
    let target = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    let handler = Dialer {
        target,
        seen: Mutex::new(tx),
    };
    let running = Server::new(handler)
        .model(model)
        .bind(loopback())
        .expect("start");
    let mut client = connect(running.local_addr());
    let (upstream, _) = listener.accept().expect("the handler dials");
    upstream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut got = vec![0; b"sent while connecting;connected".len()];
    (&upstream)
        .read_exact(&mut got)
        .expect("read what the dialed connection sent");
    if model == Model::Reactor {
        assert_eq!(got, b"sent while connecting;connected");
    } else {
        // Under threads the sender's thread and the connection's own thread write in
        // turns, in no set order between them: both arrive whole.
        let text = String::from_utf8(got).expect("text");
        assert!(
            text == "sent while connecting;connected" || text == "connectedsent while connecting;",
            "{text:?}"
        );
    }
    let mut up = [0; 2];
    client.read_exact(&mut up).expect("the client hears of it");
    assert_eq!(&up, b"up");
    let first = rx.recv_timeout(PATIENCE).expect("open");
    assert!(matches!(first, Seen::DialedOpen(_)), "{first:?}");
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Seen::Connected));
    drop(upstream);
    drop(client);
    drop(running);
}

fn a_refused_connect_is_reported_as_connect_failed(model: Model) {
    let refused = {
        let listener = TcpListener::bind(loopback()).expect("bind");
        listener.local_addr().expect("addr")
    };
    let (tx, rx) = mpsc::channel();
    let handler = Dialer {
        target: refused,
        seen: Mutex::new(tx),
    };
    let running = Server::new(handler)
        .model(model)
        .bind(loopback())
        .expect("start");
    let client = connect(running.local_addr());
    assert!(matches!(rx.recv_timeout(PATIENCE), Ok(Seen::DialedOpen(_))));
    assert_eq!(
        rx.recv_timeout(PATIENCE),
        Ok(Seen::Closed(CloseReason::ConnectFailed(
            ErrorKind::ConnectionRefused
        )))
    );
    // The client closes first, so the stop need not wait for it.
    drop(client);
    drop(running);
}

for_each_model!(
    output_sent_while_connecting_arrives_first,
    a_refused_connect_is_reported_as_connect_failed,
);
