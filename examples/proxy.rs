//! A TCP proxy in a few lines: each client is paired with a connection to the upstream,
//! bytes go both ways unchanged, the slower side paces the faster, and an EOF or a reset
//! is carried across. (`tcp-reactor serve --protocol proxy` adds round-robin over several
//! upstreams.)
//!
//! `cargo run --example proxy -- 127.0.0.1:8866 127.0.0.1:9000` listens on the first
//! address and forwards to the second.

use std::net::SocketAddr;

use tcp_reactor::{CloseReason, ConnId, Context, Handler, Server};

/// Forwards every client to one upstream.
struct Relay {
    upstream: SocketAddr,
}

impl Handler for Relay {
    /// The other side of the pair.
    type Session = ConnId;

    fn open(&self, ctx: &mut Context<'_>) -> ConnId {
        // An upstream connection learns its client; a client dials its upstream.
        ctx.dialed_by()
            .unwrap_or_else(|| ctx.connect(self.upstream))
    }

    fn data(&self, other: &mut ConnId, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.send_to(*other, input);
        input.len()
    }

    fn read_closed(&self, other: &mut ConnId, ctx: &mut Context<'_>) -> bool {
        ctx.shutdown_write(*other); // after what is queued for it
        true // keep this side open for what the other side still sends
    }

    fn congested(&self, other: &mut ConnId, ctx: &mut Context<'_>) {
        ctx.pause_reading(*other);
    }

    fn drained(&self, other: &mut ConnId, ctx: &mut Context<'_>) {
        ctx.resume_reading(*other);
    }

    fn ending(&self, other: &mut ConnId, ctx: &mut Context<'_>, reason: CloseReason) {
        match reason {
            CloseReason::Eof => {}
            CloseReason::Reset => ctx.reset_conn(*other),
            _ => ctx.close_conn(*other),
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr = |default: &str| -> std::io::Result<SocketAddr> {
        let text = args.next().unwrap_or_else(|| default.to_string());
        text.parse()
            .map_err(|err| std::io::Error::other(format!("{text}: {err}")))
    };
    let listen = addr("127.0.0.1:8866")?;
    let upstream = addr("127.0.0.1:9000")?;
    println!("proxying {listen} to {upstream}");
    let stats = Server::new(Relay { upstream }).run(listen)?;
    println!("{stats}");
    Ok(())
}
