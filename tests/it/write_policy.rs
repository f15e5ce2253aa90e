//! The reactor's write policies: each one keeps output order, flush-before-close,
//! backpressure, the output cap and the idle timeout exactly as the eager policy does, and
//! the end-of-turn policy really writes a turn's output once.
//!
//! Every behaviour test runs under each policy ([`for_each_policy!`]).

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use fixtures::client::{
    connect, expect_eof, expect_reply, finish_sending, recv_exact, recv_line, recv_to_end, send,
};
use fixtures::process::ServerProcess;
use fixtures::server::{serve, wait_connections};
use tcp_reactor::protocols::{Chat, Echo, Http};
use tcp_reactor::{CloseReason, Config, Context, Handler, Model, Server, WritePolicy};

/// Generates, for each named test function `fn name(policy: WritePolicy)`, a `#[test]` per
/// write policy: `eager::name`, `end_of_turn::name` and `adaptive::name`.
macro_rules! for_each_policy {
    ($($name:ident),* $(,)?) => {
        mod eager {
            $(
                #[test]
                fn $name() {
                    super::$name(tcp_reactor::WritePolicy::Eager);
                }
            )*
        }
        mod end_of_turn {
            $(
                #[test]
                fn $name() {
                    super::$name(tcp_reactor::WritePolicy::EndOfTurn);
                }
            )*
        }
        mod adaptive {
            $(
                #[test]
                fn $name() {
                    super::$name(tcp_reactor::WritePolicy::Adaptive { min_events: 2 });
                }
            )*
        }
    };
}

for_each_policy!(
    pipelined_echo_comes_back_in_order_to_fifty_concurrent_clients,
    chat_lines_and_own_replies_keep_their_order,
    pipelined_requests_are_all_answered_before_the_close,
    a_half_closed_client_receives_every_reply_before_eof,
    a_slow_reader_gets_every_byte_through_backpressure,
    a_client_that_never_reads_is_closed_by_the_output_cap,
    written_output_and_consumed_input_count_as_progress,
    idle_connections_keep_no_output_buffer,
);

/// The reactor model with `policy` and otherwise default limits.
fn config(policy: WritePolicy) -> Config {
    Config::default().with_write_policy(policy)
}

/// Replies to every input byte with [`AMPLIFY`] bytes (a reply much larger than its
/// request, as a `GET` of a large value is).
struct Amplify;

/// Bytes of output per byte of input of [`Amplify`].
const AMPLIFY: usize = 32 * 1024;

impl Handler for Amplify {
    type Session = ();

    fn open(&self, _ctx: &mut Context<'_>) {}

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        // One reply per call, so the server's high-water check sits between replies.
        ctx.write(&[input[0]; AMPLIFY]);
        1
    }
}

fn pipelined_echo_comes_back_in_order_to_fifty_concurrent_clients(policy: WritePolicy) {
    const CLIENTS: usize = 50;
    const MESSAGES: usize = 200;
    let running = serve(Echo, config(policy), Model::Reactor);
    let addr = running.local_addr();
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                let mut stream = connect(addr);
                let mut reader = stream.try_clone().expect("clone the client socket");
                // Every client sends all its messages at once (many replies per turn), and
                // every message is unique, so a reordering or a mix-up shows.
                let messages: Vec<u8> = (0..MESSAGES)
                    .flat_map(|seq| format!("<{client}:{seq}>").into_bytes())
                    .collect();
                start.wait();
                let expected = messages.clone();
                let sender = thread::spawn(move || send(&mut stream, &messages));
                let echoed = recv_exact(&mut reader, expected.len());
                sender.join().expect("the sender finished");
                assert!(echoed == expected, "client {client}: echo out of order");
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client thread finished");
    }
    wait_connections(&running, 0);
    let stats = running.stop().expect("the server stopped");
    assert_eq!(stats.closed_by(CloseReason::Eof), CLIENTS as u64);
}

fn chat_lines_and_own_replies_keep_their_order(policy: WritePolicy) {
    let running = serve(Chat::new(), config(policy), Model::Reactor);
    let addr = running.local_addr();
    let mut alice = connect(addr);
    let mut bob = connect(addr);
    wait_connections(&running, 2);
    // Lines sent in one write reach the other member in order, each once.
    send(&mut alice, b"one\ntwo\nthree\n");
    let lines: Vec<String> = (0..3).map(|_| recv_line(&mut bob)).collect();
    assert_eq!(lines.len(), 3);
    for (line, word) in lines.iter().zip(["one", "two", "three"]) {
        assert!(line.ends_with(word), "bob got {line:?}, wanted ...{word}");
    }
    send(&mut bob, b"back\n");
    assert!(recv_line(&mut alice).ends_with("back"));
    running.stop().expect("the server stopped");
}

fn pipelined_requests_are_all_answered_before_the_close(policy: WritePolicy) {
    let running = serve(Http::default(), config(policy), Model::Reactor);
    let mut stream = connect(running.local_addr());
    let keep = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let last = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut burst = keep.repeat(20);
    burst.extend_from_slice(last);
    send(&mut stream, &burst);
    let replies = recv_to_end(&mut stream);
    let text = String::from_utf8_lossy(&replies);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 21, "{text}");
    assert!(text.ends_with("Connection: close\r\n\r\nHello, world!\n"));
    running.stop().expect("the server stopped");
}

fn a_half_closed_client_receives_every_reply_before_eof(policy: WritePolicy) {
    let running = serve(Echo, config(policy), Model::Reactor);
    let mut stream = connect(running.local_addr());
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    send(&mut stream, &payload);
    finish_sending(&stream);
    assert!(recv_to_end(&mut stream) == payload, "echo differs");
    let stats = running.stop().expect("the server stopped");
    assert_eq!(stats.closed_by(CloseReason::Eof), 1);
}

fn a_slow_reader_gets_every_byte_through_backpressure(policy: WritePolicy) {
    // 64 replies of 32 KiB: 2 MiB in all, twice the output cap, so only backpressure (not
    // the cap) may stand between the client and its replies.
    const REQUESTS: usize = 64;
    let running = serve(
        Amplify,
        config(policy)
            .with_high_water(128 * 1024)
            .with_low_water(32 * 1024)
            .with_max_output(1024 * 1024),
        Model::Reactor,
    );
    let mut stream = connect(running.local_addr());
    let requests: Vec<u8> = (0..REQUESTS as u8).collect();
    send(&mut stream, &requests);
    let mut got = Vec::new();
    while got.len() < REQUESTS * AMPLIFY {
        // Read slowly at first, so the server's output backs up.
        if got.len() < 512 * 1024 {
            thread::sleep(Duration::from_millis(2));
        }
        got.extend(recv_exact(&mut stream, 16 * 1024));
    }
    for (index, reply) in got.chunks(AMPLIFY).enumerate() {
        assert!(
            reply.iter().all(|&byte| byte == index as u8),
            "reply {index}"
        );
    }
    finish_sending(&stream);
    expect_eof(&mut stream);
    let stats = running.stop().expect("the server stopped");
    assert_eq!(stats.closed_by(CloseReason::OutputLimit), 0);
    assert_eq!(stats.closed_by(CloseReason::Eof), 1);
}

fn a_client_that_never_reads_is_closed_by_the_output_cap(policy: WritePolicy) {
    // One reply far larger than the cap and than what the kernel buffers on loopback: the
    // only way past the high-water pause (a single reply larger than the cap). What the
    // kernel refuses stays queued, over the cap, whatever the policy.
    struct Flood;
    impl Handler for Flood {
        type Session = ();
        fn open(&self, _ctx: &mut Context<'_>) {}
        fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
            for _ in 0..FLOOD / AMPLIFY {
                ctx.write(&[b'x'; AMPLIFY]);
            }
            input.len()
        }
    }
    /// Bytes of the one reply.
    const FLOOD: usize = 32 * 1024 * 1024;
    let running = serve(
        Flood,
        config(policy)
            .with_high_water(256 * 1024)
            .with_low_water(64 * 1024)
            .with_max_output(512 * 1024),
        Model::Reactor,
    );
    let mut stream = connect(running.local_addr());
    wait_connections(&running, 1);
    // One byte, and never a byte read.
    send(&mut stream, b"y");
    wait_connections(&running, 0);
    let stats = running.stop().expect("the server stopped");
    assert_eq!(stats.closed_by(CloseReason::OutputLimit), 1, "{stats}");
    drop(stream);
}

fn written_output_and_consumed_input_count_as_progress(policy: WritePolicy) {
    // Generous: a loaded machine may hold a thread back for a good part of a second.
    let idle = Duration::from_millis(1500);
    let running = serve(
        Echo,
        config(policy).with_idle_timeout(Some(idle)),
        Model::Reactor,
    );
    let addr = running.local_addr();
    let mut busy = connect(addr);
    let mut silent = connect(addr);
    wait_connections(&running, 2);
    // Three idle periods of traffic: the busy client stays, the silent one goes.
    let until = Instant::now() + idle * 3;
    while Instant::now() < until {
        send(&mut busy, b"ping");
        expect_reply(&mut busy, b"ping");
        thread::sleep(idle / 10);
    }
    expect_eof(&mut silent);
    send(&mut busy, b"still here");
    expect_reply(&mut busy, b"still here");
    let stats = running.stop().expect("the server stopped");
    assert_eq!(stats.closed_by(CloseReason::IdleTimeout), 1);
}

fn idle_connections_keep_no_output_buffer(policy: WritePolicy) {
    // Each client echoes 4 KiB once, then idles. A connection that kept the buffer its
    // reply was queued in would hold 4 KiB more each (measured before the spare pool:
    // 4,328 bytes per connection under end of turn, against 238 eager). The bound is half
    // that buffer: the allocator's and the kernel's own noise on a loaded machine reaches
    // about 1.1 KB per connection, a kept buffer 4 KB.
    const CLIENTS: usize = 1000;
    const SIZE: usize = 4096;
    let server = ServerProcess::spawn(&["--write-policy", policy.name()], None);
    let before = server.status().rss_kib;
    let payload = vec![b'm'; SIZE];
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let mut stream = connect(server.addr);
            send(&mut stream, &payload);
            expect_reply(&mut stream, &payload);
            stream
        })
        .collect();
    let after = server.status().rss_kib;
    let per_connection = (after.saturating_sub(before) * 1024) as usize / CLIENTS;
    assert!(
        per_connection < 2048,
        "{per_connection} bytes per idle connection ({before} KiB -> {after} KiB)"
    );
    drop(clients);
    server.stop();
}

/// Echo with a 16-byte read buffer: a 160-byte burst takes ten reads in one turn, each
/// followed by a callback with 16 bytes of output. Returns the server's write calls.
fn writes_for_a_burst_of_ten_reads(policy: WritePolicy) -> u64 {
    let running = Server::new(Echo)
        .config(config(policy).with_read_chunk(16))
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("the server starts");
    let mut stream = connect(running.local_addr());
    // One write: on loopback the whole burst is queued before the server's readable edge.
    let burst: Vec<u8> = (0..160u8).collect();
    send(&mut stream, &burst);
    assert!(recv_exact(&mut stream, burst.len()) == burst);
    drop(stream);
    wait_connections(&running, 0);
    running.stop().expect("the server stopped").writes
}

#[test]
fn end_of_turn_writes_the_output_of_ten_reads_at_once() {
    assert_eq!(writes_for_a_burst_of_ten_reads(WritePolicy::Eager), 10);
    assert_eq!(writes_for_a_burst_of_ten_reads(WritePolicy::EndOfTurn), 1);
    // One readiness event: below the adaptive threshold of 2, so written at once.
    assert_eq!(
        writes_for_a_burst_of_ten_reads(WritePolicy::Adaptive { min_events: 2 }),
        10
    );
}
