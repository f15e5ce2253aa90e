//! Timers: handler timers (set, re-arm, replace, cancel), the idle timeout and what counts
//! as progress, and the linger bound on a closing connection whose peer will not read.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use fixtures::client::{assert_silent, connect, connect_small_rcvbuf, recv_to_end};
use fixtures::handlers::{BigReply, Cancelling, Rearm, Recorded, Ticker, big_reply};
use fixtures::server::{config, serve, stop_checked, wait_connections};
use fixtures::{PATIENCE, for_each_model};
use tcp_reactor::protocols::Echo;
use tcp_reactor::{CloseReason, Config, Model};

for_each_model!(
    handler_timer_fires_once_per_set_and_can_rearm_itself,
    cancelled_handler_timer_never_fires,
    replaced_handler_timer_fires_only_at_its_new_deadline,
    idle_timeout_closes_a_silent_client_but_not_a_chatty_one,
    output_written_counts_as_progress_for_the_idle_timeout,
    idle_timeout_closes_a_client_that_takes_none_of_its_output,
);

/// Read exactly `n` bytes as text.
#[track_caller]
fn read_text(stream: &mut std::net::TcpStream, n: usize) -> String {
    let mut buf = vec![0; n];
    stream
        .read_exact(&mut buf)
        .expect("read within the timeout");
    String::from_utf8(buf).expect("text")
}

fn handler_timer_fires_once_per_set_and_can_rearm_itself(model: Model) {
    let period = Duration::from_millis(50);
    let (handler, closes) = Recorded::new(Ticker { period, ticks: 3 });
    let server = serve(handler, config(), model);
    let start = Instant::now();
    let mut client = connect(server.local_addr());
    let got = recv_to_end(&mut client);
    let elapsed = start.elapsed();
    assert_eq!(got, b"tick 1\ntick 2\ntick 3\n", "{model:?}");
    assert!(
        elapsed >= 3 * period,
        "{model:?}: three ticks took only {elapsed:?}"
    );
    assert!(closes.wait_for(CloseReason::Handler, 1, PATIENCE));
    eprintln!("{model:?} handler timer: 3 ticks of {period:?}, then close, in {elapsed:?}");
    stop_checked(server);
}

fn cancelled_handler_timer_never_fires(model: Model) {
    let after = Duration::from_millis(200);
    let handler = Cancelling {
        after,
        rearm: Rearm::Cancel,
    };
    let server = serve(handler, config(), model);
    // Control: left alone, the timer fires.
    let mut untouched = connect(server.local_addr());
    assert_eq!(read_text(&mut untouched, 6), "fired\n", "{model:?}");
    let mut cancelled = connect(server.local_addr());
    cancelled.write_all(b"x").expect("write");
    assert_eq!(read_text(&mut cancelled, 3), "ok\n");
    assert_silent(&mut cancelled, after * 3);
    stop_checked(server);
}

fn replaced_handler_timer_fires_only_at_its_new_deadline(model: Model) {
    // Moved earlier: fires once at the new deadline; the stale later entry is ignored.
    let earlier = Cancelling {
        after: Duration::from_secs(1),
        rearm: Rearm::Replace(Duration::from_millis(100)),
    };
    let server = serve(earlier, config(), model);
    let mut client = connect(server.local_addr());
    client.write_all(b"x").expect("write");
    assert_eq!(read_text(&mut client, 3), "ok\n");
    assert_eq!(read_text(&mut client, 6), "fired\n", "{model:?}");
    assert_silent(&mut client, Duration::from_millis(1200));
    stop_checked(server);

    // Moved later: the stale earlier entry must not fire it early.
    let later = Cancelling {
        after: Duration::from_millis(100),
        rearm: Rearm::Replace(Duration::from_millis(600)),
    };
    let server = serve(later, config(), model);
    let start = Instant::now();
    let mut client = connect(server.local_addr());
    client.write_all(b"x").expect("write");
    assert_eq!(read_text(&mut client, 3), "ok\n");
    assert_eq!(read_text(&mut client, 6), "fired\n", "{model:?}");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(600),
        "{model:?}: fired after {elapsed:?}, at the replaced deadline"
    );
    assert_silent(&mut client, Duration::from_millis(300));
    stop_checked(server);
}

fn idle_timeout_closes_a_silent_client_but_not_a_chatty_one(model: Model) {
    let idle = Duration::from_millis(500);
    let (handler, closes) = Recorded::new(Echo);
    let config = config().with_idle_timeout(Some(idle));
    let server = serve(handler, config, model);
    let start = Instant::now();
    let mut silent = connect(server.local_addr());
    let mut chatty = connect(server.local_addr());
    // Chatty sends every 100 ms for a second: twice the idle timeout.
    for i in 0..10 {
        fixtures::client::echo_roundtrip(&mut chatty, format!("{i}").as_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(recv_to_end(&mut silent).is_empty());
    assert!(start.elapsed() >= idle);
    assert_eq!(closes.count(CloseReason::IdleTimeout), 1, "{model:?}");
    chatty.shutdown(Shutdown::Write).expect("half-close");
    assert!(recv_to_end(&mut chatty).is_empty());
    wait_connections(&server, 0);
    let stats = stop_checked(server);
    assert_eq!(stats.closed_by(CloseReason::IdleTimeout), 1);
    assert_eq!(stats.closed_by(CloseReason::Eof), 1);
}

fn output_written_counts_as_progress_for_the_idle_timeout(model: Model) {
    // The client never sends a byte, but the server keeps writing to it (and it reads):
    // that is progress, so the idle timeout must not cut the stream.
    let idle = Duration::from_millis(500);
    let ticker = Ticker {
        period: Duration::from_millis(100),
        ticks: 10,
    };
    let (handler, closes) = Recorded::new(ticker);
    let config = config().with_idle_timeout(Some(idle));
    let server = serve(handler, config, model);
    let mut client = connect(server.local_addr());
    let got = String::from_utf8(recv_to_end(&mut client)).expect("text");
    assert_eq!(
        got.lines().count(),
        10,
        "{model:?}: stream cut short: {got:?}"
    );
    assert!(closes.wait_for(CloseReason::Handler, 1, PATIENCE));
    assert_eq!(closes.count(CloseReason::IdleTimeout), 0);
    stop_checked(server);
}

fn idle_timeout_closes_a_client_that_takes_none_of_its_output(model: Model) {
    // The client asks for a big reply and never reads it: no input is consumed and no
    // output taken, so it is idle although the server has something to say (the threads
    // model's writer is blocked meanwhile, and must still see the deadline).
    let idle = Duration::from_millis(300);
    let (handler, closes) = Recorded::new(BigReply::new(16 << 20));
    let config = config()
        .with_idle_timeout(Some(idle))
        .with_max_output(64 << 20);
    let server = serve(handler, config, model);
    let mut hostile = connect_small_rcvbuf(server.local_addr(), 16 * 1024);
    hostile.write_all(b"go").expect("write");
    assert!(
        closes.wait_for(CloseReason::IdleTimeout, 1, PATIENCE),
        "{model:?}: a client that takes nothing is closed by the idle timeout"
    );
    wait_connections(&server, 0);
    drop(hostile);
    let stats = stop_checked(server);
    assert_eq!(stats.closed_by(CloseReason::IdleTimeout), 1, "{stats}");
}

/// A client that asks for a big reply, half-closes at once, and never reads: the server
/// sees its EOF while output is still queued, and must drop it after the linger timeout.
/// How soon after its EOF a client that never reads must be dropped: the linger (500 ms)
/// plus generous slack, far below what a missing linger bound would take.
const DROP_BOUND: Duration = Duration::from_secs(5);

/// `high_water` decides whether the reply pauses reads before the EOF is read.
fn half_closed_client_that_never_reads_is_dropped_after_linger(model: Model, high_water: usize) {
    const REPLY: usize = 16 << 20;
    let linger = Duration::from_millis(500);
    let (handler, closes) = Recorded::new(BigReply::new(REPLY));
    let config = Config::default()
        .with_linger(linger)
        .with_high_water(high_water)
        .with_max_output(64 << 20);
    let server = serve(handler, config, model);
    // Control: a client that reads gets the whole reply (it half-closes after it, as
    // linger bounds the whole flush after an EOF).
    let mut reader = connect(server.local_addr());
    reader.write_all(b"go").expect("write");
    let mut all = vec![0; REPLY];
    reader.read_exact(&mut all).expect("the whole reply");
    assert!(all == big_reply(REPLY), "the reply arrived intact");
    reader.shutdown(Shutdown::Write).expect("half-close");
    assert!(recv_to_end(&mut reader).is_empty());
    // The hostile one asks, half-closes, and never reads.
    let hostile = connect_small_rcvbuf(server.local_addr(), 16 * 1024);
    (&hostile).write_all(b"go").expect("write");
    // Timed from before the half-close: the server cannot see the EOF any earlier.
    let start = Instant::now();
    hostile.shutdown(Shutdown::Write).expect("half-close");
    assert!(
        closes.wait_for(CloseReason::LingerTimeout, 1, DROP_BOUND),
        "{model:?}: not dropped within {DROP_BOUND:?} of its EOF (high water {} KiB): \
         closes so far {:?}",
        high_water / 1024,
        closes.all()
    );
    let after = start.elapsed();
    assert!(after >= linger, "{model:?}: dropped after {after:?}");
    eprintln!(
        "{model:?} linger {linger:?}, high water {} KiB: a half-closed client not reading \
         a {} MiB reply was dropped (linger_timeout) {after:?} after its EOF",
        high_water / 1024,
        REPLY >> 20
    );
    drop(hostile);
    wait_connections(&server, 0);
    let stats = stop_checked(server);
    assert_eq!(stats.closed_by(CloseReason::LingerTimeout), 1);
    assert_eq!(stats.closed_by(CloseReason::Eof), 1);
}

/// High water above the reply: reads never pause, so the EOF is read at once.
fn linger_bounds_a_half_closed_client_that_never_reads_a_big_reply(model: Model) {
    half_closed_client_that_never_reads_is_dropped_after_linger(model, 64 << 20);
}

/// Default high water: the reply pauses reads before the EOF is read. The peer has still
/// finished sending (the poll reports it), so the linger bound must apply.
fn linger_bounds_a_half_closed_client_even_when_its_reply_paused_reads(model: Model) {
    half_closed_client_that_never_reads_is_dropped_after_linger(
        model,
        Config::default().high_water,
    );
}

#[test]
fn linger_bounds_a_half_closed_client_that_never_reads_a_big_reply_reactor() {
    linger_bounds_a_half_closed_client_that_never_reads_a_big_reply(Model::Reactor);
}

#[test]
fn linger_bounds_a_half_closed_client_that_never_reads_a_big_reply_threads() {
    linger_bounds_a_half_closed_client_that_never_reads_a_big_reply(Model::Threads);
}

#[test]
fn linger_bounds_a_half_closed_client_even_when_its_reply_paused_reads_reactor() {
    linger_bounds_a_half_closed_client_even_when_its_reply_paused_reads(Model::Reactor);
}

#[test]
fn linger_bounds_a_half_closed_client_even_when_its_reply_paused_reads_threads() {
    linger_bounds_a_half_closed_client_even_when_its_reply_paused_reads(Model::Threads);
}
