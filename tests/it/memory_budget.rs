//! The server-wide budget for buffered bytes, with the server in its own process and its
//! peak memory (`VmHWM`) read from `/proc`: a chat room whose members never read while one
//! member floods it, and a crowd of RESP clients each holding a partial 512 KB bulk string.
//! Each time: the peak stays within the budget plus a stated overhead, the clients holding
//! the most are closed with the `memory_budget` reason, and a fresh client is served
//! throughout.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use fixtures::client::{connect, connect_small_rcvbuf};
use fixtures::for_each_model;
use fixtures::process::{ServerProcess, model_arg, stat};
use tcp_reactor::Model;

/// Longest a fresh client may wait for an answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The budget these tests give the server: small, so that the crowds below overrun it in
/// seconds (the default is 256 MiB; the README gives the figures with it).
const BUDGET_MIB: u64 = 48;

/// What the process may hold beyond the budget: its code and libraries, the read buffer,
/// the slab, per-connection bookkeeping and the allocator's slack (and, under the threads
/// model, each client thread's stack and read buffer).
const OVERHEAD_MIB: u64 = 96;

/// Longest a crowd scenario runs before it is judged.
const SCENARIO_TIME: Duration = Duration::from_secs(20);

for_each_model!(partial_frames_from_a_crowd_stay_within_the_budget);

#[test]
fn partial_frames_across_two_workers_stay_within_the_budget() {
    partial_frames(Model::Reactor, 2);
}

/// Start the server with the test budget.
fn spawn(protocol: &str, model: Model, workers: usize) -> ServerProcess {
    let budget = (BUDGET_MIB << 20).to_string();
    let workers = workers.to_string();
    ServerProcess::spawn(
        &[
            "--protocol",
            protocol,
            "--model",
            model_arg(model),
            "--workers",
            &workers,
            "--max-buffered",
            &budget,
        ],
        None,
    )
}

/// Check the server's peak memory against the budget and print it.
fn assert_peak_within_budget(server: &ServerProcess, scenario: &str) {
    let hwm_mib = server.status().hwm_kib / 1024;
    println!(
        "{scenario}: server VmHWM {hwm_mib} MiB (budget {BUDGET_MIB} MiB + {OVERHEAD_MIB} MiB)"
    );
    assert!(
        hwm_mib <= BUDGET_MIB + OVERHEAD_MIB,
        "{scenario}: peak {hwm_mib} MiB exceeds the budget of {BUDGET_MIB} MiB plus \
         {OVERHEAD_MIB} MiB"
    );
}

/// A fresh RESP client is answered within the I/O timeout.
fn resp_ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, IO_TIMEOUT) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// Many RESP clients each send a `SET` whose 512 KB value stops short of its end, and wait.
fn partial_frames_from_a_crowd_stay_within_the_budget(model: Model) {
    partial_frames(model, 1);
}

/// The partial-frames scenario on `workers` workers.
fn partial_frames(model: Model, workers: usize) {
    const CLIENTS: usize = 400;
    const VALUE: usize = 512 * 1024;
    let server = spawn("resp", model, workers);
    let addr = server.addr;
    let head = format!("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n${VALUE}\r\n");
    let body = vec![b'x'; VALUE - 1024];
    let started = Instant::now();
    let mut crowd = Vec::new();
    let mut served = 0;
    for i in 0..CLIENTS {
        if started.elapsed() > SCENARIO_TIME {
            break;
        }
        let mut stream = connect(addr);
        // The server stops reading a client once the budget is pressed, so a write may
        // block: a short timeout lets the crowd go on building.
        let _ = stream.set_write_timeout(Some(Duration::from_millis(50)));
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body);
        crowd.push(stream);
        if i % 40 == 39 {
            assert!(
                resp_ping(addr),
                "a fresh client went unanswered ({i} in the crowd)"
            );
            served += 1;
        }
    }
    // The budget's pressure lasts: the clients holding the most are closed.
    let deadline = Instant::now() + SCENARIO_TIME;
    let mut closed = 0;
    while Instant::now() < deadline {
        closed = crowd
            .iter_mut()
            .map(closed_by_server)
            .filter(|&c| c)
            .count();
        if closed > 0 {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        resp_ping(addr),
        "a fresh client went unanswered after the crowd"
    );
    served += 1;
    let scenario = format!("partial frames ({} workers, {model:?})", workers);
    assert_peak_within_budget(&server, &scenario);
    let episodes = server.log_lines_with("closing the");
    drop(crowd);
    let stats = server.stop();
    let by_budget = stat(&stats, "memory_budget");
    println!(
        "{scenario}: {by_budget} clients closed for the budget, {closed} seen closed, \
         {served} fresh clients served, {episodes} episode log lines"
    );
    assert!(
        by_budget > 0,
        "no client was closed for the budget: {stats:?}"
    );
    assert!(episodes >= 1, "closing for the budget was not logged");
}

/// The server closed this client (EOF or reset), seen without blocking.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let _ = stream.set_nonblocking(true);
    let mut byte = [0u8; 64];
    let closed = match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) => err.kind() != ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    closed
}

/// 300 chat members that never read, one member sending lines as fast as it can: the
/// fan-out is bounded by closing the sender (what it queued counts against it) and the
/// members that take none of it, and the room goes on working for members who read.
#[test]
fn chat_fan_out_to_members_that_never_read_stays_within_the_budget() {
    const MEMBERS: usize = 300;
    const FLOOD: usize = 512 << 20;
    let server = spawn("chat", Model::Reactor, 1);
    let addr = server.addr;
    let silent: Vec<TcpStream> = (0..MEMBERS)
        .map(|_| connect_small_rcvbuf(addr, 4096))
        .collect();
    let sender = thread::spawn(move || {
        let mut stream = connect(addr);
        let line = [b'y'; 2047];
        let mut batch = Vec::new();
        for _ in 0..32 {
            batch.extend_from_slice(&line);
            batch.push(b'\n');
        }
        let started = Instant::now();
        let mut sent = 0;
        while sent < FLOOD && started.elapsed() < SCENARIO_TIME {
            match stream.write_all(&batch) {
                Ok(()) => sent += batch.len(),
                Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == ErrorKind::TimedOut => {}
                // Under the kernel's own memory pressure (the silent members' socket
                // buffers) loopback connections are sometimes reset: the sender joins again.
                Err(err) => {
                    println!("chat fan-out: the sender's write failed ({err}); reconnecting");
                    stream = connect(addr);
                }
            }
        }
        sent
    });
    // Meanwhile, two fresh members who read must hear each other.
    let mut probes = 0;
    let started = Instant::now();
    while !sender.is_finished() && started.elapsed() < SCENARIO_TIME {
        assert!(
            chat_probe(addr, probes),
            "fresh members could not talk while the room was flooded (probe {probes})"
        );
        probes += 1;
        thread::sleep(Duration::from_millis(200));
    }
    let sent = sender.join().expect("sender thread");
    assert_peak_within_budget(&server, "chat fan-out");
    drop(silent);
    let stats = server.stop();
    let by_budget = stat(&stats, "memory_budget");
    println!(
        "chat fan-out: {} MiB sent, {by_budget} members closed for the budget, {probes} probes \
         answered",
        sent >> 20
    );
    println!("chat fan-out stats: {stats:?}");
    assert!(probes > 0, "no probe ran");
    assert!(
        by_budget > 0,
        "no silent member was closed for the budget: {stats:?}"
    );
}

/// Member A says a unique line; member B, reading everything, must see it.
fn chat_probe(addr: SocketAddr, n: usize) -> bool {
    let mut a = connect(addr);
    let mut b = connect(addr);
    // B joins before A speaks: wait until the room has seen B (its greeting is optional),
    // by having B say something first that A must see.
    let tag = format!("probe-{n}-{}", std::process::id());
    let _ = b.write_all(format!("hello-{tag}\n").as_bytes());
    if !read_until(&mut a, format!("hello-{tag}").as_bytes()) {
        return false;
    }
    let _ = a.write_all(format!("{tag}\n").as_bytes());
    read_until(&mut b, tag.as_bytes())
}

/// Read (within the I/O timeout) until `needle` has arrived, as fast as the flood comes:
/// a chunk is searched only if it holds the needle's first byte (a `memchr`), so a debug
/// build keeps up with the sender instead of becoming the slowest reader in the room.
fn read_until(stream: &mut TcpStream, needle: &[u8]) -> bool {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut window: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                // The tail of the previous chunk, in case the needle straddles two.
                window.extend_from_slice(&chunk[..n]);
                if window.contains(&needle[0]) && window.windows(needle.len()).any(|w| w == needle)
                {
                    return true;
                }
                let keep = needle.len().min(window.len());
                window.drain(..window.len() - keep);
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return false,
        }
    }
    false
}
