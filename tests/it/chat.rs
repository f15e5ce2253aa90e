//! Chat: lines go to everyone else, whole and only once complete; an over-long line
//! closes its sender only. Under both models.

use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use fixtures::client::{assert_silent, connect, recv_line, recv_to_end, send};
use fixtures::server::{start_server, wait_connections};
use fixtures::{eventually, for_each_model};
use socket2::SockRef;
use tcp_reactor::protocols::Chat;
use tcp_reactor::{CloseReason, Config, Model, Running, Server};

for_each_model!(
    each_line_reaches_every_other_client_and_not_its_sender,
    a_partial_line_is_held_until_its_newline,
    an_over_long_line_closes_only_its_sender,
    a_line_without_newline_past_the_limit_closes_its_sender,
    lines_cross_between_workers,
    a_member_that_never_reads_is_closed_and_the_others_carry_on,
);

/// How long a client waits to be sure nothing arrives.
const QUIET: Duration = Duration::from_millis(300);

/// A chat room with `max_line`, and `n` clients who are all members.
fn room(model: Model, max_line: usize, n: usize) -> (Running, Arc<Chat>, Vec<TcpStream>) {
    let chat = Arc::new(Chat::with_max_line(max_line));
    let running = start_server(
        Server::from_arc(Arc::clone(&chat)),
        model,
        Config::default(),
    );
    let clients: Vec<_> = (0..n).map(|_| connect(running.local_addr())).collect();
    eventually(&format!("{n} clients joined"), || chat.members() == n);
    (running, chat, clients)
}

/// Split `[id] text` into its id and text.
#[track_caller]
fn parse(line: &str) -> (u64, &str) {
    let rest = line
        .strip_prefix('[')
        .unwrap_or_else(|| panic!("no id in {line:?}"));
    let (id, text) = rest
        .split_once("] ")
        .unwrap_or_else(|| panic!("no id in {line:?}"));
    (
        id.parse().unwrap_or_else(|_| panic!("bad id in {line:?}")),
        text,
    )
}

fn each_line_reaches_every_other_client_and_not_its_sender(model: Model) {
    let (running, _chat, mut clients) = room(model, 4096, 3);
    send(&mut clients[0], b"hello\r\n");
    let (from_b, text_b) = {
        let line = recv_line(&mut clients[1]);
        let (id, text) = parse(&line);
        (id, text.to_owned())
    };
    let line_c = recv_line(&mut clients[2]);
    assert_eq!(text_b, "hello", "the \\r is stripped");
    assert_eq!(
        parse(&line_c),
        (from_b, "hello"),
        "same sender id for everyone"
    );
    assert_silent(&mut clients[0], QUIET);

    // And back the other way, several lines in one write.
    send(&mut clients[2], b"one\ntwo\n");
    for reader in [0, 1] {
        let first = recv_line(&mut clients[reader]);
        let second = recv_line(&mut clients[reader]);
        let (id, text) = parse(&first);
        assert_ne!(id, from_b, "a different sender");
        assert_eq!(text, "one");
        assert_eq!(parse(&second), (id, "two"));
    }
    assert_silent(&mut clients[2], QUIET);
    drop(running);
}

fn a_partial_line_is_held_until_its_newline(model: Model) {
    let (running, _chat, mut clients) = room(model, 4096, 2);
    send(&mut clients[0], b"hel");
    assert_silent(&mut clients[1], QUIET);
    send(&mut clients[0], b"lo wor");
    assert_silent(&mut clients[1], QUIET);
    send(&mut clients[0], b"ld\nnext");
    assert_eq!(parse(&recv_line(&mut clients[1])).1, "hello world");
    assert_silent(&mut clients[1], QUIET);
    drop(running);
}

fn an_over_long_line_closes_only_its_sender(model: Model) {
    let (running, chat, mut clients) = room(model, 16, 3);
    let mut long = vec![b'x'; 100];
    long.push(b'\n');
    send(&mut clients[0], &long);
    let reply = recv_to_end(&mut clients[0]);
    assert_eq!(reply, b"error: line too long (limit 16 bytes)\n");
    // The server lingers until the client closes too (or the linger timeout).
    drop(clients.remove(0));
    eventually("the sender left the room", || chat.members() == 2);
    wait_connections(&running, 2);
    assert_silent(&mut clients[0], QUIET);
    // The others carry on.
    send(&mut clients[0], b"still here\n");
    assert_eq!(parse(&recv_line(&mut clients[1])).1, "still here");
    drop(running);
}

fn a_line_without_newline_past_the_limit_closes_its_sender(model: Model) {
    let (running, chat, mut clients) = room(model, 16, 2);
    send(&mut clients[0], &[b'y'; 40]);
    let reply = recv_to_end(&mut clients[0]);
    assert_eq!(reply, b"error: line too long (limit 16 bytes)\n");
    drop(clients.remove(0));
    eventually("the sender left the room", || chat.members() == 1);
    assert_silent(&mut clients[0], QUIET);
    drop(running);
}

fn lines_cross_between_workers(model: Model) {
    let chat = Arc::new(Chat::new());
    let server = Server::from_arc(Arc::clone(&chat)).workers(2);
    let running = start_server(server, model, Config::default());
    let mut clients: Vec<_> = (0..8).map(|_| connect(running.local_addr())).collect();
    eventually("8 clients joined", || chat.members() == 8);
    let by_worker = running.accepted_by_worker();
    assert_eq!(
        by_worker.iter().sum::<u64>(),
        8,
        "accepted by worker: {by_worker:?}"
    );
    for sender in 0..clients.len() {
        send(&mut clients[sender], format!("from {sender}\n").as_bytes());
        for (reader, client) in clients.iter_mut().enumerate() {
            if reader != sender {
                assert_eq!(parse(&recv_line(client)).1, format!("from {sender}"));
            }
        }
    }
    for client in &mut clients {
        assert_silent(client, Duration::from_millis(50));
    }
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(stats.closed_by(CloseReason::Shutdown), 8, "{stats}");
}

fn a_member_that_never_reads_is_closed_and_the_others_carry_on(model: Model) {
    // A member that reads nothing must not hold up the room: once it cannot take more
    // (unsent output over the cap, or a send stalled past the linger time) it is closed.
    let config = Config::default()
        .with_max_output(512 * 1024)
        // Never paused before the cap closes it (the cap is checked first).
        .with_high_water(512 * 1024)
        .with_linger(Duration::from_millis(300));
    let chat = Arc::new(Chat::new());
    let running = start_server(Server::from_arc(Arc::clone(&chat)), model, config);
    let mut talker = connect(running.local_addr());
    let mut listener = connect(running.local_addr());
    let deaf = connect(running.local_addr());
    SockRef::from(&deaf)
        .set_recv_buffer_size(4096)
        .expect("set SO_RCVBUF");
    eventually("3 clients joined", || chat.members() == 3);

    // Far more than the kernel buffers between the server and the deaf client can hold
    // (the send buffer alone autotunes up to `tcp_wmem`'s maximum).
    let lines_needed = (3 * max_send_buffer() / 1000).max(12_000);
    /// Lines the talker may be ahead of the listener, so the listener is never the one
    /// that falls behind.
    const AHEAD: usize = 128;
    let line = format!("{}\n", "x".repeat(1000));
    let received = Arc::new(AtomicUsize::new(0));
    let progress = Arc::clone(&received);
    let reader = thread::spawn(move || {
        let mut lines = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while lines < lines_needed {
            let n = listener
                .read(&mut buf)
                .expect("the listener keeps receiving");
            assert!(n > 0, "the listener was closed after {lines} lines");
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
            progress.store(lines, Ordering::Relaxed);
        }
        // Keep the listener connected: it is still a member.
        (lines, listener)
    });
    for sent in 0..lines_needed {
        if sent % 32 == 0 {
            eventually("the listener keeps up", || {
                sent <= received.load(Ordering::Relaxed) + AHEAD
            });
        }
        send(&mut talker, line.as_bytes());
    }
    let (lines, _listener) = reader.join().expect("the listener finished");
    assert_eq!(lines, lines_needed);
    eventually("the deaf member was dropped", || chat.members() == 2);
    drop(deaf);
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(stats.closed_by(CloseReason::OutputLimit), 1, "{stats}");
    assert_eq!(stats.closed_by(CloseReason::Shutdown), 2, "{stats}");
}

/// The most a TCP send buffer can grow to (Linux `tcp_wmem`), or 4 MiB if unknown.
fn max_send_buffer() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|text| text.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 * 1024 * 1024)
}
