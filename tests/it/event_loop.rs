//! The reactor driven from outside: one turn at a time on the test's thread, its poll
//! descriptor nested in an outer epoll, and messages posted into it from other threads
//! reaching clients through the handler's `posted` callback.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use fixtures::client::connect;
use fixtures::server::loopback;
use tcp_reactor::{EventLoop, Server};

// The example's handler, so the example is exercised too.
#[path = "../../examples/feed_server.rs"]
#[allow(dead_code, reason = "the example's own `main` is not called here")]
mod feed_server;

use feed_server::Feed;

/// Turn `event_loop` (10 ms at most per turn) until `done` holds; at most 5 s.
#[track_caller]
fn turn_until(event_loop: &mut EventLoop<Feed>, mut done: impl FnMut(&EventLoop<Feed>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(event_loop) {
        assert!(Instant::now() < deadline, "the condition never held");
        event_loop
            .turn(Some(Duration::from_millis(10)))
            .expect("a turn");
    }
}

/// Whatever `stream` (nonblocking) has to read now.
fn read_now(stream: &mut TcpStream, into: &mut Vec<u8>) {
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::WouldBlock => return,
            Err(err) => panic!("read: {err}"),
        }
    }
}

#[test]
fn a_turn_returns_after_its_timeout_when_nothing_happens() {
    let mut event_loop = Server::new(Feed::default())
        .event_loop(loopback())
        .expect("bind");
    let started = Instant::now();
    let stopped = event_loop
        .turn(Some(Duration::from_millis(50)))
        .expect("a turn");
    assert!(!stopped);
    assert!(started.elapsed() >= Duration::from_millis(40));
    assert_eq!(event_loop.stats().polls, 1, "exactly one turn");
    assert!(!event_loop.turn(Some(Duration::ZERO)).expect("a turn"));
    assert_eq!(event_loop.stats().polls, 2);
}

#[test]
fn messages_posted_from_another_thread_reach_every_client_in_order() {
    let mut event_loop = Server::new(Feed::default())
        .event_loop(loopback())
        .expect("bind");
    let addr = event_loop.local_addr().expect("addr");
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
    turn_until(&mut event_loop, |l| l.connections() == 3);
    let poster = event_loop.poster();
    let feeder = thread::spawn(move || {
        for n in 0..20 {
            poster.post(format!("line {n}\n")).expect("post");
        }
    });
    for client in &clients {
        client.set_nonblocking(true).expect("nonblocking");
    }
    let want: String = (0..20).map(|n| format!("line {n}\n")).collect();
    let mut got = vec![Vec::new(); clients.len()];
    turn_until(&mut event_loop, |_| {
        for (client, got) in clients.iter_mut().zip(&mut got) {
            read_now(client, got);
        }
        got.iter().all(|got| got.len() >= want.len())
    });
    feeder.join().expect("feeder");
    for got in got {
        assert_eq!(String::from_utf8(got).expect("text"), want);
    }
    // Clients that close on the server's EOF let the stop finish at once.
    for client in &clients {
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
    }
    event_loop.stop();
    turn_until(&mut event_loop, |l| l.connections() == 0);
    assert!(event_loop.turn(None).expect("the last turn"), "stopped");
}

#[test]
fn the_poll_descriptor_nests_in_an_outer_epoll() {
    let mut event_loop = Server::new(Feed::default())
        .event_loop(loopback())
        .expect("bind");
    // SAFETY: plain epoll calls on descriptors we own; `event` outlives each call.
    let outer = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(outer >= 0, "epoll_create1");
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 7,
    };
    let added =
        unsafe { libc::epoll_ctl(outer, libc::EPOLL_CTL_ADD, event_loop.poll_fd(), &mut event) };
    assert_eq!(added, 0, "the loop's descriptor can be watched");
    let wait = |timeout_ms| {
        let mut ready = [libc::epoll_event { events: 0, u64: 0 }];
        unsafe { libc::epoll_wait(outer, ready.as_mut_ptr(), 1, timeout_ms) }
    };
    assert_eq!(wait(0), 0, "nothing to do yet");
    let _client = connect(event_loop.local_addr().expect("addr"));
    assert_eq!(
        wait(5000),
        1,
        "a client waiting makes the loop's descriptor readable"
    );
    event_loop.turn(Some(Duration::ZERO)).expect("a turn");
    assert_eq!(event_loop.connections(), 1, "that turn accepted it");
    unsafe { libc::close(outer) };
}

#[test]
fn the_stats_count_the_peak_of_connections_like_a_bound_server() {
    let mut event_loop = Server::new(Feed::default())
        .event_loop(loopback())
        .expect("bind");
    let addr = event_loop.local_addr().expect("addr");
    let first = connect(addr);
    let second = connect(addr);
    turn_until(&mut event_loop, |l| l.connections() == 2);
    assert_eq!(
        event_loop.stats().peak_connections,
        2,
        "while both are open"
    );
    drop((first, second));
    turn_until(&mut event_loop, |l| l.connections() == 0);
    event_loop.stop();
    turn_until(&mut event_loop, |l| l.stats().closed_total() == 2);
    while !event_loop
        .turn(Some(Duration::from_millis(10)))
        .expect("a turn")
    {}
    let stats = event_loop.stats();
    assert_eq!(stats.accepted, 2, "{stats}");
    assert_eq!(
        stats.peak_connections, 2,
        "the final stats keep the peak: {stats}"
    );
}
