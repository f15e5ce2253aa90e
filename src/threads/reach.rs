//! What a threads-model callback asks of connections by id (`handler::reach`).
//!
//! The threads model does not dial out yet: a connect is reported to the handler as failed
//! (`open`, then `ending` and `close` with `ConnectFailed(Unsupported)`), so a handler
//! waiting for it is not left hanging. Pausing and resuming are not needed here (a blocking
//! write paces the writer's own thread); the other requests are not carried out either.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use crate::handler::{Actions, Outbox, Request};
use crate::{CloseReason, Context, Handler};

/// Answer every connect in `outbox`'s requests as failed, and drop the other requests.
pub(super) fn refuse_requests<H: Handler>(handler: &H, outbox: &mut Outbox, now: Instant) {
    let requests = std::mem::take(&mut outbox.requests);
    for request in requests {
        let Request::Connect { id, addr, by } = request else {
            continue;
        };
        let reason = CloseReason::ConnectFailed(io::ErrorKind::Unsupported);
        log::debug!("{by}: connect to {addr} is not supported by the threads model");
        let mut out = Vec::new();
        let mut actions = Actions::default();
        outbox.opener = Some(by);
        let mut session = handler.open(&mut context(id, addr, now, &mut out, &mut actions, outbox));
        outbox.opener = None;
        let mut ctx = context(id, addr, now, &mut out, &mut actions, outbox);
        handler.ending(&mut session, &mut ctx, reason);
        handler.close(session, id, reason);
        outbox.requests.clear();
    }
}

/// A context for a connection that never had a socket.
fn context<'a>(
    id: crate::ConnId,
    addr: SocketAddr,
    now: Instant,
    out: &'a mut Vec<u8>,
    actions: &'a mut Actions,
    outbox: &'a mut Outbox,
) -> Context<'a> {
    Context::new(id, addr, now, out, actions, outbox)
}
