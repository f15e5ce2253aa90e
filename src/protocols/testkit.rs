//! A socket-free driver for protocol unit tests: feeds bytes to a [`Handler`] exactly as a
//! server model does, and collects what it writes.
//!
//! Test-only. It mimics the model's contract (all unconsumed input on every call, called
//! again at once while it consumes and input remains, nothing delivered after `close`); it
//! must not grow protocol knowledge of its own.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use crate::handler::{Actions, Outbox};
use crate::{ConnId, Context, Handler};

/// What one connection produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transcript {
    /// Every byte the handler wrote, in order.
    pub(crate) output: Vec<u8>,
    /// True once the handler asked to close (or abort).
    pub(crate) closed: bool,
    /// Input left unconsumed when the feed ended or the connection closed.
    pub(crate) leftover: usize,
}

/// Open one connection on `handler`, deliver `chunks` one read at a time, and return what
/// came out.
pub(crate) fn drive<H: Handler>(handler: &H, chunks: &[&[u8]]) -> Transcript {
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000));
    let now = Instant::now();
    let mut out = Vec::new();
    let mut actions = Actions::default();
    let mut outbox = Outbox::default();
    let mut session = {
        let mut ctx = Context::new(ConnId(1), peer, now, &mut out, &mut actions, &mut outbox);
        handler.open(&mut ctx)
    };
    let mut input: Vec<u8> = Vec::new();
    'feed: for chunk in chunks {
        if actions.close.is_some() {
            break;
        }
        input.extend_from_slice(chunk);
        while !input.is_empty() {
            let mut ctx = Context::new(ConnId(1), peer, now, &mut out, &mut actions, &mut outbox);
            let used = handler.data(&mut session, &mut ctx, &input);
            assert!(
                used <= input.len(),
                "handler consumed more than it was given"
            );
            input.drain(..used);
            if actions.close.is_some() {
                break 'feed;
            }
            if used == 0 {
                break;
            }
        }
    }
    assert!(outbox.is_empty(), "protocol wrote to another connection");
    Transcript {
        output: out,
        closed: actions.close.is_some(),
        leftover: input.len(),
    }
}

/// Open one connection on `handler` and make one `data` call with `input`: how many bytes
/// it consumed, and what it wrote.
pub(crate) fn one_call<H: Handler>(handler: &H, input: &[u8]) -> (usize, Vec<u8>) {
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000));
    let mut out = Vec::new();
    let mut actions = Actions::default();
    let mut outbox = Outbox::default();
    let mut ctx = Context::new(
        ConnId(1),
        peer,
        Instant::now(),
        &mut out,
        &mut actions,
        &mut outbox,
    );
    let mut session = handler.open(&mut ctx);
    let used = handler.data(&mut session, &mut ctx, input);
    (used, out)
}

/// Split `bytes` at the given cut points (any order, any value; clamped to the length).
pub(crate) fn split_at<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|&cut| cut % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::with_capacity(points.len() + 1);
    let mut start = 0;
    for point in points {
        chunks.push(&bytes[start..point]);
        start = point;
    }
    chunks.push(&bytes[start..]);
    chunks
}
