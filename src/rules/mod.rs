//! The rules every server model follows, written once: how a handler is fed, which limits
//! close or pause a connection, what a callback's requests mean, how a read or an accept
//! error is classified, and how a client is refused.
//!
//! Both models call these functions with their own state. This module must not own a
//! socket, a thread or a timer, and must not touch `mio`: everything here is a decision
//! over plain values (or over any `Read`/`Write`), so unit tests reach it without a
//! network.

use std::io::{self, Read, Write};
use std::time::Instant;

pub(crate) mod per_address;

use crate::handler::{Actions, CloseRequest, TimerRequest};
use crate::{CloseReason, Config, Context, Handler};

/// An input buffer above this capacity is released once empty, so a client that once
/// sent a large partial frame does not keep the memory while idle.
pub(crate) const KEEP_INPUT: usize = 16 * 1024;

/// Reads of a refused client's input before closing it, at most (each up to 1 KiB): enough
/// for a request that came with the connection, bounded so a flood cannot hold the
/// accepting thread.
const REFUSE_DRAIN_READS: usize = 16;

/// What one `read` produced.
#[derive(Debug)]
pub(crate) enum ReadOutcome {
    /// This many bytes were read into the buffer.
    Data(usize),
    /// The peer closed its sending side: `read` returned 0.
    Eof,
    /// No bytes for now: a nonblocking socket is drained until its next edge, or a blocking
    /// socket's read timeout passed (a deadline may be due).
    WouldBlock,
    /// The connection is broken (reset, or another error).
    Failed(io::Error),
}

/// One `read` from `source` into `buf` (which must not be empty), classified. A read that
/// a signal interrupted before any byte moved is retried.
#[inline]
pub(crate) fn read_once(mut source: impl Read, buf: &mut [u8]) -> ReadOutcome {
    debug_assert!(!buf.is_empty(), "a read into nothing looks like EOF");
    loop {
        return match source.read(buf) {
            // Zero bytes from a socket means the peer closed its side.
            Ok(0) => ReadOutcome::Eof,
            Ok(n) => ReadOutcome::Data(n),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            // Not an error: `EAGAIN` from a drained nonblocking socket or from a blocking
            // socket's timeout (`TimedOut` on platforms that report it so).
            Err(err) if is_timeout(&err) => ReadOutcome::WouldBlock,
            Err(err) => ReadOutcome::Failed(err),
        };
    }
}

/// True for the error a nonblocking socket or a socket timeout produces.
#[inline]
pub(crate) fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Why [`feed`] stopped offering input to the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Every byte was consumed.
    Consumed,
    /// The handler consumed nothing of what is left: it needs more bytes.
    NeedMore,
    /// The handler asked to close: no more input is delivered.
    CloseRequested,
    /// The callback batch's output (unsent output of this connection, or messages queued
    /// for others) passed the high-water mark with input left: the rest waits, buffered,
    /// until that output is sent.
    HighWater,
}

/// What one [`feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fed {
    /// Bytes the handler consumed (progress, for the idle clock).
    pub(crate) consumed: usize,
    /// Why it stopped.
    pub(crate) stop: Stop,
}

/// Offer input to the handler: straight from `fresh` when nothing is buffered (no copy
/// unless a partial frame is left over), otherwise appended to `buffered`. Whatever the
/// handler leaves unconsumed ends up in `buffered`.
///
/// `Handler::data` is called again at once while it makes progress, input remains, it has
/// not asked to close, and the batch's output (`ctx`'s unsent output, and what it queued
/// for other connections) is at most `high_water`. A model that sees [`Stop::HighWater`]
/// sends that output before offering the rest: so a client sending many requests without
/// reading holds at most the mark plus one reply.
#[inline]
pub(crate) fn feed<H: Handler>(
    handler: &H,
    session: &mut H::Session,
    buffered: &mut Vec<u8>,
    fresh: &[u8],
    ctx: &mut Context<'_>,
    high_water: usize,
) -> Fed {
    if buffered.is_empty() {
        let fed = consume(handler, session, fresh, ctx, high_water);
        buffered.extend_from_slice(&fresh[fed.consumed..]);
        fed
    } else {
        buffered.extend_from_slice(fresh);
        let fed = consume(handler, session, buffered, ctx, high_water);
        buffered.drain(..fed.consumed);
        if buffered.is_empty() && buffered.capacity() > KEEP_INPUT {
            *buffered = Vec::new();
        }
        fed
    }
}

/// The loop of [`feed`] over one contiguous input.
#[inline]
fn consume<H: Handler>(
    handler: &H,
    session: &mut H::Session,
    input: &[u8],
    ctx: &mut Context<'_>,
    high_water: usize,
) -> Fed {
    let mut consumed = 0;
    let stop = loop {
        if consumed == input.len() {
            break Stop::Consumed;
        }
        let rest = &input[consumed..];
        // A handler claiming more than it was given is clamped, not trusted.
        let n = handler.data(session, ctx, rest).min(rest.len());
        consumed += n;
        if ctx.close_requested() {
            break Stop::CloseRequested;
        }
        if n == 0 {
            break Stop::NeedMore;
        }
        if consumed < input.len() && ctx.over_high_water(high_water) {
            break Stop::HighWater;
        }
    };
    Fed { consumed, stop }
}

/// Which limit a connection's buffers are at, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// Nothing to do.
    Within,
    /// Unsent output passed the high-water mark: stop reading until it drains.
    AboveHighWater,
    /// The handler left a full input buffer unconsumed: it never will consume it. Close
    /// with [`CloseReason::InputLimit`], lingering so the client sees what was sent.
    InputCap,
    /// Unsent output passed the output cap: close with [`CloseReason::OutputLimit`] at
    /// once, since the client does not read.
    OutputCap,
}

/// The limit a connection with `pending_output` unsent bytes and `unconsumed_input`
/// buffered bytes is at. A connection that is already closing reads nothing more, so a
/// model ignores [`Limit::InputCap`] for it (and it is not paused either).
#[inline]
pub(crate) fn check_limits(
    pending_output: usize,
    unconsumed_input: usize,
    config: &Config,
) -> Limit {
    if pending_output > config.max_output {
        Limit::OutputCap
    } else if unconsumed_input > 0 && unconsumed_input >= config.max_input {
        Limit::InputCap
    } else if pending_output > config.high_water {
        Limit::AboveHighWater
    } else {
        Limit::Within
    }
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Output is flushed (or being flushed) and the peer has finished or will not be waited
    /// for: send FIN and close (EOF, idle timeout).
    Graceful(CloseReason),
    /// Flush, send FIN, then read and discard input until the client's EOF or the linger
    /// timeout, so closing cannot reset away the reply (handler close, input cap, stop).
    Lingering(CloseReason),
    /// Close at once, discarding queued output (reset, error, abort, output cap).
    Abrupt(CloseReason),
}

impl Ending {
    /// The reason the handler will be told.
    pub(crate) fn reason(self) -> CloseReason {
        match self {
            Ending::Graceful(reason) | Ending::Lingering(reason) | Ending::Abrupt(reason) => reason,
        }
    }
}

/// What a callback's requests mean, once applied to its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The handler timer's new deadline, for a model that keeps a heap of them (the
    /// connection's timer slot is already updated).
    pub(crate) arm: Option<Instant>,
    /// How the connection must end, if the handler asked to close it.
    pub(crate) close: Option<Ending>,
}

/// Apply the timer request of one callback to the connection's `timer` slot, and say what
/// its close request means. Takes the requests by value: they end with the callback and
/// can never reach another connection.
#[inline]
pub(crate) fn apply(actions: Actions, timer: &mut Option<Instant>) -> Applied {
    let arm = match actions.timer {
        Some(TimerRequest::Set(at)) => {
            *timer = Some(at);
            Some(at)
        }
        Some(TimerRequest::Cancel) => {
            *timer = None;
            None
        }
        None => None,
    };
    let close = actions.close.map(|request| match request {
        // `abort` discards queued output: nothing of it may reach the peer.
        CloseRequest::Now => Ending::Abrupt(CloseReason::Handler),
        CloseRequest::AfterFlush => Ending::Lingering(CloseReason::Handler),
    });
    Applied { arm, close }
}

/// What a failed `accept` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// A signal interrupted the call: try again at once.
    Retry,
    /// The backlog is empty (nonblocking listener): wait for the next edge.
    Drained,
    /// Out of descriptors or memory: stop accepting for `Config::accept_backoff`. Retrying
    /// at once would spin, and clients closing will free some.
    Exhausted,
    /// The waiting client failed before we took it (aborted, reset, a network error the
    /// kernel passes on): its problem, not ours; go on accepting.
    ClientGone,
    /// The listening socket itself is unusable: fatal to the worker, which stops as a
    /// graceful stop would and reports the error.
    ListenerBroken,
}

/// Classify an `accept` error. Only errors that name the listener as broken are fatal;
/// anything else is taken to be about the client being accepted, because `accept(2)` also
/// reports that client's pending network errors.
pub(crate) fn classify_accept(err: &io::Error) -> AcceptError {
    match err.kind() {
        io::ErrorKind::Interrupted => return AcceptError::Retry,
        io::ErrorKind::WouldBlock => return AcceptError::Drained,
        io::ErrorKind::OutOfMemory => return AcceptError::Exhausted,
        _ => {}
    }
    match err.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => AcceptError::Exhausted,
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EFAULT) => {
            AcceptError::ListenerBroken
        }
        _ => AcceptError::ClientGone,
    }
}

/// A socket whose sending side can be shut down on its own.
pub(crate) trait HalfClose {
    /// Send FIN after the bytes already written; reading stays possible.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl HalfClose for std::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

/// Turn a client away when the server is full: one attempt at the busy reply, then read
/// what the client already sent (bounded), then FIN. Reading first matters: closing a
/// socket with unread input sends a reset, which can destroy the reply just written.
///
/// `stream` must be nonblocking, so that a refusal never blocks the accepting thread.
/// Dropping it afterwards closes it.
pub(crate) fn refuse<S>(stream: &S, reply: &[u8])
where
    S: HalfClose,
    for<'a> &'a S: Read + Write,
{
    if !reply.is_empty() {
        // One attempt: a fresh socket's send buffer takes a short reply whole.
        let _ = (&mut &*stream).write(reply);
    }
    let mut sink = [0u8; 1024];
    for _ in 0..REFUSE_DRAIN_READS {
        match (&mut &*stream).read(&mut sink) {
            Ok(n) if n > 0 => {}
            // EOF, nothing more yet (WouldBlock), or an error: stop reading.
            _ => break,
        }
    }
    // Failure means the client is already gone.
    let _ = stream.shutdown_write();
}

#[cfg(test)]
mod tests;

/// How a nonblocking connect turned out, once the socket was reported writable (or in
/// error). Both models read `SO_ERROR` the same way.
#[derive(Debug)]
pub(crate) enum Connect {
    /// Still in progress (a spurious wake-up).
    Pending,
    /// Established.
    Established,
    /// Established, then reset by the peer before anyone looked (a reset is carried as a
    /// reset, not as a failed connect).
    EstablishedThenReset,
    /// The connect failed: refused, unreachable, timed out.
    Failed(io::Error),
}

impl Connect {
    /// The outcome a pending socket error stands for: `ECONNRESET` can only follow an
    /// established connection (a refused connect reports `ECONNREFUSED`).
    pub(crate) fn from_error(err: io::Error) -> Connect {
        if err.kind() == io::ErrorKind::ConnectionReset {
            Connect::EstablishedThenReset
        } else {
            Connect::Failed(err)
        }
    }
}
