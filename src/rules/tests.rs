//! Each rule, checked without a socket: handlers and streams here are plain values.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::ConnId;
use crate::handler::Outbox;

/// Consumes one line per call and answers it with `reply_size` bytes; closes on `quit`.
struct Lines {
    /// Bytes written per line.
    reply_size: usize,
    /// Calls to `data` so far.
    calls: AtomicUsize,
}

impl Lines {
    fn new(reply_size: usize) -> Self {
        Lines {
            reply_size,
            calls: AtomicUsize::new(0),
        }
    }
}

impl Handler for Lines {
    type Session = ();

    fn open(&self, _ctx: &mut Context<'_>) {}

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            return 0;
        };
        if &input[..end] == b"quit" {
            ctx.close();
        } else {
            ctx.write(&vec![b'x'; self.reply_size]);
        }
        end + 1
    }
}

/// One `feed` of `fresh` on top of `buffered`, with a fresh context.
fn feed_once<H: Handler<Session = ()>>(
    handler: &H,
    buffered: &mut Vec<u8>,
    fresh: &[u8],
    high_water: usize,
) -> Fed {
    let peer = crate::PeerAddr::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)));
    let (mut out, mut actions, mut outbox) = (Vec::new(), Actions::default(), Outbox::default());
    let now = Instant::now();
    let mut ctx = Context::new(ConnId(1), peer, now, &mut out, &mut actions, &mut outbox);
    feed(handler, &mut (), buffered, fresh, &mut ctx, high_water)
}

#[test]
fn feeding_consumes_every_whole_frame_and_keeps_the_partial_one() {
    let handler = Lines::new(1);
    let mut buffered = Vec::new();
    let fed = feed_once(&handler, &mut buffered, b"a\nb\npart", usize::MAX);
    assert_eq!(
        fed,
        Fed {
            consumed: 4,
            stop: Stop::NeedMore
        }
    );
    assert_eq!(buffered, b"part");
    let fed = feed_once(&handler, &mut buffered, b"ial\n", usize::MAX);
    assert_eq!(
        fed,
        Fed {
            consumed: 8,
            stop: Stop::Consumed
        }
    );
    assert!(buffered.is_empty());
}

#[test]
fn feeding_stops_at_high_water_and_keeps_the_rest_buffered() {
    let handler = Lines::new(100);
    let mut buffered = Vec::new();
    let fed = feed_once(&handler, &mut buffered, b"a\nb\nc\nd\n", 150);
    assert_eq!(
        fed,
        Fed {
            consumed: 4,
            stop: Stop::HighWater
        }
    );
    assert_eq!(
        handler.calls.load(Ordering::Relaxed),
        2,
        "no call once output is past high water"
    );
    assert_eq!(buffered, b"c\nd\n");
}

#[test]
fn feeding_that_ends_with_the_input_is_not_held_at_high_water() {
    let handler = Lines::new(100);
    let mut buffered = Vec::new();
    let fed = feed_once(&handler, &mut buffered, b"a\nb\n", 150);
    assert_eq!(
        fed,
        Fed {
            consumed: 4,
            stop: Stop::Consumed
        }
    );
}

/// Sends each line to connection 2 instead of answering it.
struct Forward;

impl Handler for Forward {
    type Session = ();
    fn open(&self, _ctx: &mut Context<'_>) {}
    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            return 0;
        };
        ctx.send_to(ConnId(2), &[b'y'; 100]);
        end + 1
    }
}

#[test]
fn feeding_stops_when_messages_for_others_pass_high_water() {
    let mut buffered = Vec::new();
    let fed = feed_once(&Forward, &mut buffered, b"a\nb\nc\nd\n", 150);
    assert_eq!(
        fed,
        Fed {
            consumed: 4,
            stop: Stop::HighWater
        }
    );
    assert_eq!(buffered, b"c\nd\n");
}

#[test]
fn feeding_stops_at_a_close_request() {
    let handler = Lines::new(1);
    let mut buffered = Vec::new();
    let fed = feed_once(&handler, &mut buffered, b"a\nquit\nb\n", usize::MAX);
    assert_eq!(
        fed,
        Fed {
            consumed: 7,
            stop: Stop::CloseRequested
        }
    );
    assert_eq!(buffered, b"b\n");
}

#[test]
fn feeding_releases_a_large_input_buffer_once_consumed() {
    let handler = Lines::new(1);
    let mut buffered = vec![b'y'; 4 * KEEP_INPUT];
    let fed = feed_once(&handler, &mut buffered, b"\n", usize::MAX);
    assert_eq!(fed.consumed, 4 * KEEP_INPUT + 1);
    assert_eq!(buffered.capacity(), 0);
}

/// Claims to have consumed more than it was given.
struct Greedy;

impl Handler for Greedy {
    type Session = ();
    fn open(&self, _ctx: &mut Context<'_>) {}
    fn data(&self, _session: &mut (), _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len() + 10
    }
}

#[test]
fn feeding_clamps_a_handler_that_claims_too_much() {
    let mut buffered = b"abc".to_vec();
    let fed = feed_once(&Greedy, &mut buffered, b"de", usize::MAX);
    assert_eq!(
        fed,
        Fed {
            consumed: 5,
            stop: Stop::Consumed
        }
    );
    assert!(buffered.is_empty());
}

#[test]
fn limits_are_checked_worst_first() {
    let config = Config {
        high_water: 10,
        max_output: 100,
        max_input: 50,
        ..Config::default()
    };
    assert_eq!(check_limits(101, 60, &config), Limit::OutputCap);
    assert_eq!(check_limits(20, 50, &config), Limit::InputCap);
    assert_eq!(check_limits(20, 49, &config), Limit::AboveHighWater);
    assert_eq!(check_limits(10, 49, &config), Limit::Within);
}

#[test]
fn no_input_is_never_over_the_input_cap() {
    let empty_cap = Config {
        max_input: 0,
        ..Config::default()
    };
    assert_eq!(check_limits(0, 0, &empty_cap), Limit::Within);
    assert_eq!(check_limits(0, 1, &empty_cap), Limit::InputCap);
}

#[test]
fn a_timer_request_updates_the_slot_and_asks_to_arm() {
    let at = Instant::now() + Duration::from_secs(1);
    let mut timer = None;
    let set = Actions {
        timer: Some(TimerRequest::Set(at)),
        close: None,
    };
    assert_eq!(
        apply(set, &mut timer),
        Applied {
            arm: Some(at),
            close: None
        }
    );
    assert_eq!(timer, Some(at));
    let cancel = Actions {
        timer: Some(TimerRequest::Cancel),
        close: None,
    };
    assert_eq!(apply(cancel, &mut timer).arm, None);
    assert_eq!(timer, None);
}

#[test]
fn close_requests_become_endings() {
    let mut timer = None;
    let close = |request| Actions {
        close: Some(request),
        timer: None,
    };
    let lingering = apply(close(CloseRequest::AfterFlush), &mut timer).close;
    assert_eq!(lingering, Some(Ending::Lingering(CloseReason::Handler)));
    let abrupt = apply(close(CloseRequest::Now), &mut timer).close;
    assert_eq!(abrupt, Some(Ending::Abrupt(CloseReason::Handler)));
    assert_eq!(apply(Actions::default(), &mut timer).close, None);
}

#[test]
fn accept_errors_fall_into_classes() {
    let os = io::Error::from_raw_os_error;
    assert_eq!(classify_accept(&os(libc::EINTR)), AcceptError::Retry);
    assert_eq!(classify_accept(&os(libc::EAGAIN)), AcceptError::Drained);
    for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
        assert_eq!(
            classify_accept(&os(errno)),
            AcceptError::Exhausted,
            "{errno}"
        );
    }
    for errno in [libc::EBADF, libc::EINVAL, libc::ENOTSOCK, libc::EFAULT] {
        assert_eq!(
            classify_accept(&os(errno)),
            AcceptError::ListenerBroken,
            "{errno}"
        );
    }
    // Errors about the client being accepted, including network errors passed on.
    for errno in [
        libc::ECONNABORTED,
        libc::EPROTO,
        libc::EPERM,
        libc::ENETUNREACH,
    ] {
        assert_eq!(
            classify_accept(&os(errno)),
            AcceptError::ClientGone,
            "{errno}"
        );
    }
}

/// A scripted stream: reads return these results in turn, writes are recorded.
#[derive(Default)]
struct Script {
    /// Results of successive reads, front first (`Ok(n)`: n bytes).
    reads: RefCell<Vec<io::Result<usize>>>,
    /// Every byte written.
    written: RefCell<Vec<u8>>,
    /// Calls to `read`.
    read_calls: Cell<usize>,
    /// True once the write side was shut.
    shut: Cell<bool>,
}

impl Read for &Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_calls.set(self.read_calls.get() + 1);
        let mut reads = self.reads.borrow_mut();
        if reads.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        reads.remove(0).map(|n| n.min(buf.len()))
    }
}

impl Write for &Script {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl HalfClose for Script {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shut.set(true);
        Ok(())
    }
}

#[test]
fn a_refused_client_gets_the_reply_its_input_read_and_a_fin() {
    let stream = Script::default();
    stream.reads.borrow_mut().extend([Ok(100), Ok(50)]);
    refuse(&stream, b"busy\n");
    assert_eq!(stream.written.borrow().as_slice(), b"busy\n");
    assert_eq!(stream.read_calls.get(), 3, "read until WouldBlock");
    assert!(stream.shut.get());
}

#[test]
fn refusing_a_flood_reads_a_bounded_amount() {
    let stream = Script::default();
    stream.reads.borrow_mut().extend((0..100).map(|_| Ok(1024)));
    refuse(&stream, b"");
    assert!(stream.written.borrow().is_empty(), "no reply, no write");
    assert_eq!(stream.read_calls.get(), REFUSE_DRAIN_READS);
    assert!(stream.shut.get());
}

#[test]
fn reads_are_classified_and_interruptions_retried() {
    let stream = Script::default();
    stream.reads.borrow_mut().extend([
        Err(io::ErrorKind::Interrupted.into()),
        Ok(7),
        Ok(0),
        Err(io::ErrorKind::TimedOut.into()),
        Err(io::ErrorKind::ConnectionReset.into()),
    ]);
    let mut buf = [0; 16];
    assert!(matches!(read_once(&stream, &mut buf), ReadOutcome::Data(7)));
    assert!(matches!(read_once(&stream, &mut buf), ReadOutcome::Eof));
    assert!(matches!(
        read_once(&stream, &mut buf),
        ReadOutcome::WouldBlock
    ));
    assert!(matches!(
        read_once(&stream, &mut buf),
        ReadOutcome::Failed(_)
    ));
    assert!(matches!(
        read_once(&stream, &mut buf),
        ReadOutcome::WouldBlock
    ));
}
