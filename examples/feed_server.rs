//! A server whose clients are fed by a background thread: the thread posts a line into the
//! running reactor every 500 ms through a `Poster`, and the handler sends it to every
//! client. The reactor runs on the main thread one turn at a time, as it would inside an
//! application's own main loop.
//!
//! `cargo run --example feed_server`, then `nc 127.0.0.1 8867` (several of them).

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use tcp_reactor::{CloseReason, ConnId, Context, Handler, Server};

/// Sends every posted line to every connected client.
#[derive(Default)]
pub struct Feed {
    /// Who is connected.
    clients: Mutex<BTreeSet<ConnId>>,
}

impl Handler for Feed {
    type Session = ();

    fn open(&self, ctx: &mut Context<'_>) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ctx.id());
    }

    fn data(&self, _: &mut (), _: &mut Context<'_>, input: &[u8]) -> usize {
        input.len() // clients only listen
    }

    fn close(&self, _: (), id: ConnId, _: CloseReason) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    fn posted(&self, ctx: &mut Context<'_>, message: Box<dyn Any + Send>) {
        let Ok(line) = message.downcast::<String>() else {
            return;
        };
        for &client in self
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            ctx.send_to(client, line.as_bytes());
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut event_loop =
        Server::new(Feed::default()).event_loop("127.0.0.1:8867".parse().expect("an address"))?;
    println!("feed server listening on {}", event_loop.local_addr()?);
    let poster = event_loop.poster();
    thread::spawn(move || {
        for tick in 0u64.. {
            thread::sleep(Duration::from_millis(500));
            if poster.post(format!("tick {tick}\n")).is_err() {
                return; // the loop is gone
            }
        }
    });
    // The application's own loop: here it only turns the reactor, waiting at most 100 ms
    // per turn so it could do other work in between.
    while !event_loop.turn(Some(Duration::from_millis(100)))? {}
    Ok(())
}
