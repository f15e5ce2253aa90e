//! The handler contract as a protocol sees it: one `open` and one `close` per connection,
//! no input after a close request, no timer after close. Under both models.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use fixtures::client::{connect, recv_to_end, send};
use fixtures::server::{start_server, wait_connections};
use fixtures::{eventually, for_each_model};
use socket2::SockRef;
use tcp_reactor::{CloseReason, Config, ConnId, Context, Handler, Model, Server};

for_each_model!(
    no_input_reaches_the_handler_after_it_asks_to_close,
    close_is_called_exactly_once_per_opened_connection,
    a_timer_never_fires_after_close,
);

/// What a [`Recorder`] saw, per connection.
#[derive(Debug, Default)]
struct Log {
    /// Callbacks per connection, in order: "open", "data:<input>", "timer", "close:<reason>".
    events: HashMap<ConnId, Vec<String>>,
}

/// Records every callback. Replies `bye` to the first line and closes; with `timer`, sets
/// a 100 ms timer at open.
#[derive(Debug, Default)]
struct Recorder {
    /// Callbacks seen.
    log: Mutex<Log>,
    /// Set a timer at open.
    timer: bool,
}

impl Recorder {
    /// Note one callback of `id`.
    fn note(&self, id: ConnId, event: String) {
        let mut log = self.log.lock().expect("the log");
        log.events.entry(id).or_default().push(event);
    }

    /// Every connection's events.
    fn events(&self) -> HashMap<ConnId, Vec<String>> {
        self.log.lock().expect("the log").events.clone()
    }
}

impl Handler for Recorder {
    type Session = ();

    fn open(&self, ctx: &mut Context<'_>) {
        self.note(ctx.id(), "open".into());
        if self.timer {
            ctx.set_timer(Duration::from_millis(100));
        }
    }

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            return 0;
        };
        let line = String::from_utf8_lossy(&input[..end]).into_owned();
        self.note(ctx.id(), format!("data:{line}"));
        ctx.write(b"bye\n");
        ctx.close();
        end + 1
    }

    fn timer(&self, _session: &mut (), ctx: &mut Context<'_>) {
        self.note(ctx.id(), "timer".into());
    }

    fn close(&self, _session: (), id: ConnId, reason: CloseReason) {
        self.note(id, format!("close:{reason}"));
    }
}

fn no_input_reaches_the_handler_after_it_asks_to_close(model: Model) {
    let recorder = Arc::new(Recorder::default());
    let server = Server::from_arc(Arc::clone(&recorder));
    let running = start_server(server, model, Config::default());
    let mut client = connect(running.local_addr());
    // Three lines in one write: the handler closes after the first.
    send(&mut client, b"one\ntwo\nthree\n");
    assert_eq!(recv_to_end(&mut client), b"bye\n");
    drop(client);
    wait_connections(&running, 0);
    drop(running);
    let events = recorder.events();
    let seen: Vec<_> = events.values().collect();
    assert_eq!(seen, [&["open", "data:one", "close:handler"]]);
}

fn close_is_called_exactly_once_per_opened_connection(model: Model) {
    let recorder = Arc::new(Recorder::default());
    let server = Server::from_arc(Arc::clone(&recorder));
    let running = start_server(server, model, Config::default());
    let addr = running.local_addr();
    // Ten clients finish their line, ten leave silently, ten reset, ten stay until stop.
    let mut stayers = Vec::new();
    for i in 0..40 {
        let mut client = connect(addr);
        match i % 4 {
            0 => {
                send(&mut client, b"hello\n");
                assert_eq!(recv_to_end(&mut client), b"bye\n");
            }
            1 => {}
            2 => {
                send(&mut client, b"half a line");
                SockRef::from(&client)
                    .set_linger(Some(Duration::ZERO))
                    .expect("set SO_LINGER 0");
            }
            _ => stayers.push(client),
        }
    }
    eventually("40 connections were opened", || {
        recorder.events().len() == 40
    });
    wait_connections(&running, 10);
    let stats = running.stop().expect("the server stopped cleanly");
    drop(stayers);
    let events = recorder.events();
    assert_eq!(events.len(), 40);
    for (id, seen) in &events {
        assert_eq!(
            seen.first().map(String::as_str),
            Some("open"),
            "{id}: {seen:?}"
        );
        let closes = seen.iter().filter(|e| e.starts_with("close:")).count();
        assert_eq!(closes, 1, "{id}: {seen:?}");
        assert!(
            seen.last().is_some_and(|e| e.starts_with("close:")),
            "{id}: {seen:?}"
        );
    }
    let count = |reason: &str| {
        let event = format!("close:{reason}");
        events
            .values()
            .filter(|seen| seen.last() == Some(&event))
            .count()
    };
    assert_eq!(count("handler"), 10, "{events:?}");
    assert_eq!(count("eof"), 10, "{events:?}");
    assert_eq!(count("reset"), 10, "{events:?}");
    assert_eq!(count("shutdown"), 10, "{events:?}");
    assert_eq!(stats.closed_total(), 40, "{stats}");
}

fn a_timer_never_fires_after_close(model: Model) {
    let recorder = Arc::new(Recorder {
        timer: true,
        ..Recorder::default()
    });
    let server = Server::from_arc(Arc::clone(&recorder));
    let running = start_server(server, model, Config::default());
    let mut client = connect(running.local_addr());
    send(&mut client, b"quick\n");
    assert_eq!(recv_to_end(&mut client), b"bye\n");
    drop(client);
    wait_connections(&running, 0);
    // Well past the 100 ms timer, which was still pending at close (unless this machine
    // took that long to deliver one line: then it fired before the close, which is fine).
    thread::sleep(Duration::from_millis(300));
    drop(running);
    let events = recorder.events();
    let seen: Vec<_> = events.values().collect();
    assert_eq!(seen.len(), 1, "{events:?}");
    let before_close: Vec<_> = seen[0].iter().filter(|e| *e != "timer").collect();
    assert_eq!(before_close, ["open", "data:quick", "close:handler"]);
    assert_eq!(
        seen[0].last().map(String::as_str),
        Some("close:handler"),
        "nothing after close"
    );
}
