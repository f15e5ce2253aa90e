//! A handler wrapper that checks the one promise the server models do not: `data` never
//! claims more bytes than it was given (`rules::feed` clamps such a claim, which would
//! hide it).

use std::any::Any;

use tcp_reactor::{CloseReason, ConnId, Context, Handler};

/// `H`, with every `data` call's return checked against its input.
#[derive(Debug, Default)]
pub struct Checked<H>(pub H);

impl<H: Handler> Handler for Checked<H> {
    type Session = H::Session;

    fn open(&self, ctx: &mut Context<'_>) -> H::Session {
        self.0.open(ctx)
    }

    fn data(&self, session: &mut H::Session, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let consumed = self.0.data(session, ctx, input);
        assert!(
            consumed <= input.len(),
            "data consumed {consumed} of {} bytes",
            input.len()
        );
        consumed
    }

    fn timer(&self, session: &mut H::Session, ctx: &mut Context<'_>) {
        self.0.timer(session, ctx);
    }

    fn close(&self, session: H::Session, id: ConnId, reason: CloseReason) {
        self.0.close(session, id, reason);
    }

    fn busy_reply(&self) -> &[u8] {
        self.0.busy_reply()
    }

    fn connected(&self, session: &mut H::Session, ctx: &mut Context<'_>) {
        self.0.connected(session, ctx);
    }

    fn read_closed(&self, session: &mut H::Session, ctx: &mut Context<'_>) -> bool {
        self.0.read_closed(session, ctx)
    }

    fn congested(&self, session: &mut H::Session, ctx: &mut Context<'_>) {
        self.0.congested(session, ctx);
    }

    fn drained(&self, session: &mut H::Session, ctx: &mut Context<'_>) {
        self.0.drained(session, ctx);
    }

    fn ending(&self, session: &mut H::Session, ctx: &mut Context<'_>, reason: CloseReason) {
        self.0.ending(session, ctx, reason);
    }

    fn posted(&self, ctx: &mut Context<'_>, message: Box<dyn Any + Send>) {
        self.0.posted(ctx, message);
    }
}
