//! `Connection`'s methods, each checked over a real loopback pair.

use super::*;
use std::io::Read;
use std::net::{TcpListener, TcpStream};

/// A connection on the accepting end of a real loopback TCP pair, and its peer.
fn accepted(now: Instant) -> (Connection<()>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let peer = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (ours, addr) = listener.accept().expect("accept");
    ours.set_nonblocking(true).expect("nonblocking");
    let stream = MioStream::Tcp(mio::net::TcpStream::from_std(ours));
    let conn = Connection::new(stream, Token(7), ConnId(3), addr.into(), now);
    (conn, peer)
}

#[test]
fn output_goes_back_to_the_spare_pool_only_once_sent() {
    let (mut conn, mut peer) = accepted(Instant::now());
    let mut spare = SpareBuffers::default();
    let callee = conn.callee(None, &mut spare);
    assert_eq!((callee.mark, callee.already_sent), (0, 0));
    callee.out.extend_from_slice(b"hello");
    assert_eq!(conn.release_output(&mut spare), 5, "unsent output is kept");
    assert!(
        spare.take().capacity() == 0,
        "nothing went back to the pool"
    );
    let mut stats = Stats::default();
    assert!(matches!(
        conn.flush(&mut stats, Instant::now()),
        FlushOutcome::Done
    ));
    assert_eq!(stats.bytes_out, 5);
    let mut got = [0; 5];
    peer.read_exact(&mut got).expect("read");
    assert_eq!(&got, b"hello");
    assert_eq!(conn.release_output(&mut spare), 0);
    assert!(
        spare.take().capacity() > 0,
        "the emptied buffer is in the pool"
    );
}

#[test]
fn the_list_flags_are_set_once_until_taken() {
    let (mut conn, _peer) = accepted(Instant::now());
    assert!(conn.mark_queued());
    assert!(!conn.mark_queued(), "already on the ready list");
    assert!(conn.take_queued());
    assert!(conn.mark_queued(), "back on the list once taken off");
    assert!(!conn.mark_dirty(), "nothing to flush");
    let mut scratch = b"queued".to_vec();
    conn.queue_scratch(&mut scratch);
    assert!(scratch.is_empty());
    assert_eq!(conn.pending(), 6);
    assert!(conn.mark_dirty());
    assert!(!conn.mark_dirty(), "already on the flush list");
    assert!(conn.take_dirty());
    assert!(conn.mark_budget_wait());
    assert!(!conn.mark_budget_wait());
    assert!(conn.take_budget_wait());
    assert!(!conn.take_budget_wait());
}

#[test]
fn the_linger_deadline_moves_with_progress_and_then_passes() {
    let start = Instant::now();
    let linger = Duration::from_secs(5);
    let (mut conn, _peer) = accepted(start);
    assert_eq!(conn.linger_due(start, linger), Linger::Unarmed);
    assert!(conn.arm_linger(start + linger));
    assert!(
        !conn.arm_linger(start + 2 * linger),
        "the first bound stays"
    );
    let progress = start + Duration::from_secs(3);
    conn.progressed(progress);
    let at_first = start + linger;
    assert_eq!(
        conn.linger_due(at_first, linger),
        Linger::Later(progress + linger)
    );
    assert_eq!(conn.linger_due(progress + linger, linger), Linger::Passed);
}

#[test]
fn a_connection_dies_once_and_leaves_the_budget_when_freed() {
    let (mut conn, _peer) = accepted(Instant::now());
    let budget = Budget::new(1 << 20, 1);
    let mut scratch = vec![0; 100];
    conn.queue_scratch(&mut scratch);
    conn.account(&budget);
    assert!(budget.held() >= 100);
    assert!(conn.request_close(CloseReason::Handler));
    assert!(
        !conn.request_close(CloseReason::Shutdown),
        "the first request wins"
    );
    assert!(conn.die(CloseReason::Reset));
    assert!(!conn.die(CloseReason::Handler), "already dead");
    let (reason, session) = conn.finish(&budget);
    assert_eq!((reason, session), (CloseReason::Reset, None));
    assert_eq!(budget.held(), 0);
}

#[test]
fn a_handler_pause_stops_reading_only_while_open() {
    let (mut conn, _peer) = accepted(Instant::now());
    assert!(conn.wants_read());
    conn.pause_reading();
    assert!(!conn.wants_read());
    assert!(conn.request_close(CloseReason::Handler));
    assert!(
        conn.wants_read(),
        "a closing connection reads to reach the EOF"
    );
    assert!(conn.resume_reading());
    assert!(!conn.resume_reading());
}

#[test]
fn a_close_request_survives_the_peers_eof() {
    let closing = Phase::Open.after_close_request(CloseReason::Handler);
    assert_eq!(closing.after_eof(), Phase::Draining(CloseReason::Handler));
    let lingering = Phase::Lingering(CloseReason::InputLimit);
    assert_eq!(
        lingering.after_eof(),
        Phase::Draining(CloseReason::InputLimit)
    );
}

#[test]
fn the_first_close_request_wins() {
    let eof = Phase::Paused.after_eof();
    assert_eq!(eof, Phase::Draining(CloseReason::Eof));
    assert_eq!(eof.close_requested(), None);
    let shutdown = eof.after_close_request(CloseReason::Shutdown);
    assert_eq!(shutdown.close_requested(), Some(CloseReason::Shutdown));
    let again = shutdown.after_close_request(CloseReason::Handler);
    assert_eq!(again, shutdown);
    let dead = Phase::Dead(CloseReason::Reset);
    assert_eq!(dead.after_close_request(CloseReason::Handler), dead);
    assert_eq!(dead.after_eof(), dead);
}

#[test]
fn only_an_open_connection_feeds_the_handler() {
    let phases = [
        Phase::Open,
        Phase::Paused,
        Phase::Draining(CloseReason::Eof),
        Phase::Closing(CloseReason::Handler),
        Phase::Lingering(CloseReason::Handler),
        Phase::Dead(CloseReason::Reset),
    ];
    let feeding: Vec<bool> = phases.iter().map(|p| p.wants_input()).collect();
    assert_eq!(feeding, [true, false, false, false, false, false]);
    let reading: Vec<bool> = phases.iter().map(|p| p.wants_read()).collect();
    assert_eq!(reading, [true, false, false, true, true, false]);
    for quiet in [Phase::Connecting, Phase::HalfClosed] {
        assert!(!quiet.wants_input() && !quiet.wants_read());
    }
}

#[test]
fn a_half_closed_connection_closes_without_lingering_when_asked() {
    let asked = Phase::HalfClosed.after_close_request(CloseReason::Handler);
    assert_eq!(asked, Phase::Draining(CloseReason::Handler));
    assert_eq!(Phase::HalfClosed.after_eof(), Phase::HalfClosed);
}
