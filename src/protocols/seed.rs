//! Seed: the tutorial's server, one message in, `hahaha` out, then close.
//!
//! The Python server this project grew from accepts a client, receives up to 1024 bytes,
//! prints `接收到的数据:<data>` ("received data"), sends `hahaha` and closes. This handler
//! does the same for every client, under any model.

use crate::{Context, Handler};

/// The reply every client gets.
pub const SEED_REPLY: &[u8] = b"hahaha";

/// Logs each client's first message, replies [`SEED_REPLY`] and closes once it is sent.
///
/// The message is whatever one read delivered (as with the tutorial's `recv(1024)`),
/// logged at `info` level as lossy UTF-8, prefixed with the peer's address:
/// `[127.0.0.1:5555] 接收到的数据:hello`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seed;

impl Handler for Seed {
    type Session = ();

    fn open(&self, _ctx: &mut Context<'_>) {}

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        log::info!(
            "[{}] 接收到的数据:{}",
            ctx.peer_addr(),
            String::from_utf8_lossy(input)
        );
        ctx.write(SEED_REPLY);
        // Close after the reply is flushed; no more input reaches this handler.
        ctx.close();
        input.len()
    }
}
