//! Limits against hostile clients: a connection flood past the maximum, writers that never
//! read, partial frames that never end, slowloris, and a reset storm. Each test proves that
//! the hostile client costs only its own connection: everyone else is served meanwhile.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use fixtures::client::{
    Peer, connect, connect_small_rcvbuf, echo_roundtrip, poll_closed, recv_to_end,
};
use fixtures::handlers::{BUSY, Busy, Lines, Recorded, decode_lines};
use fixtures::server::{config, loopback, serve, stop_checked, wait_connections};
use fixtures::{PATIENCE, for_each_model, wait_until};
use socket2::SockRef;
use tcp_reactor::protocols::Echo;
use tcp_reactor::{CloseReason, Config, Context, Handler, Model, Server};

for_each_model!(
    connection_flood_past_the_limit_serves_exactly_the_limit_and_refuses_the_rest_cleanly,
    connection_flood_on_two_workers_is_limited_server_wide,
    refused_client_that_already_sent_a_request_sees_the_busy_reply_and_eof_not_a_reset,
    writer_that_never_reads_is_paused_with_bounded_memory_while_others_are_served,
    client_that_never_reads_a_stream_costs_bounded_memory_while_a_reader_gets_all,
    partial_frame_that_never_ends_is_closed_at_the_input_cap_with_a_clean_eof,
    backpressure_pause_is_not_mistaken_for_the_input_cap,
    slowloris_trickling_slower_than_the_idle_timeout_is_closed_and_others_are_unaffected,
    slowloris_trickling_a_partial_frame_is_closed_by_the_idle_timeout_and_others_are_unaffected,
    reset_storm_mid_traffic_closes_only_the_reset_connections,
    pending_output_counts_only_bytes_not_yet_sent,
    stop_is_bounded_by_linger_with_clients_that_never_read,
    accept_budget_of_one_still_accepts_a_whole_burst,
);

/// What a client of the flood test saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Nothing yet: served (a refused client gets the busy reply and EOF at once).
    Waiting,
    /// The busy reply, then EOF.
    Refused,
}

/// Echo with a busy reply, whose callback sleeps on a line `stall`: it holds the reactor's
/// only thread, so a client connecting meanwhile has its request waiting before `accept`.
struct StallingBusy;

impl Handler for StallingBusy {
    type Session = ();

    fn open(&self, _ctx: &mut Context<'_>) {}

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        if input.starts_with(b"stall\n") {
            thread::sleep(Duration::from_millis(300));
        }
        ctx.write(input);
        input.len()
    }

    fn busy_reply(&self) -> &[u8] {
        BUSY
    }
}

/// A client refused while its request is already in the server's socket must still read
/// the busy reply and a clean EOF: closing with unread input would send a reset, which
/// can destroy the reply. Both models read what a refused client sent before closing.
fn refused_client_that_already_sent_a_request_sees_the_busy_reply_and_eof_not_a_reset(
    model: Model,
) {
    let config = config().with_max_connections(1);
    let server = serve(StallingBusy, config, model);
    let addr = server.local_addr();
    let mut holder = connect(addr);
    echo_roundtrip(&mut holder, b"hold\n");
    for round in 0..3 {
        holder.write_all(b"stall\n").expect("write to the holder");
        // Let the server enter the stalling callback before the next client arrives.
        thread::sleep(Duration::from_millis(50));
        let mut refused = connect(addr);
        refused
            .write_all(&[b'x'; 4096])
            .expect("the request fits the socket buffers");
        let mut got = Vec::new();
        match refused.read_to_end(&mut got) {
            Ok(_) => assert_eq!(got, BUSY, "{model:?} round {round}: the busy reply"),
            Err(err) => panic!("{model:?} round {round}: {err} after {got:?}, not EOF"),
        }
        let mut back = [0; 6];
        holder.read_exact(&mut back).expect("the holder's echo");
    }
    let stats = stop_checked(server);
    assert_eq!(stats.refused, 3, "{stats}");
}

/// Read what the server sent a client of the flood test without blocking.
fn fate_of(stream: &mut TcpStream, got: &mut Vec<u8>) -> Fate {
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                assert_eq!(got.as_slice(), BUSY, "a refused client gets the busy reply");
                return Fate::Refused;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Fate::Waiting,
            Err(err) => panic!("a flood client saw {err} instead of the busy reply and EOF"),
        }
    }
}

/// Split flood clients into the served and the refused once `refused` refusals are
/// visible; every refused client must read the busy reply and EOF (no hang, no reset).
/// Returns the served clients, blocking again.
#[track_caller]
fn split_flood(clients: Vec<TcpStream>, refused: usize) -> Vec<TcpStream> {
    let mut got = vec![Vec::new(); clients.len()];
    let mut fates = vec![Fate::Waiting; clients.len()];
    let mut clients = clients;
    for client in &clients {
        client.set_nonblocking(true).expect("nonblocking");
    }
    let all_refused_seen = wait_until(PATIENCE, || {
        for (i, client) in clients.iter_mut().enumerate() {
            if fates[i] == Fate::Waiting {
                fates[i] = fate_of(client, &mut got[i]);
            }
        }
        fates.iter().filter(|&&f| f == Fate::Refused).count() == refused
    });
    assert!(all_refused_seen, "refused clients did not all see EOF");
    clients
        .into_iter()
        .zip(fates)
        .filter(|(_, fate)| *fate == Fate::Waiting)
        .map(|(client, _)| {
            client.set_nonblocking(false).expect("blocking");
            client
        })
        .collect()
}

fn connection_flood_past_the_limit_serves_exactly_the_limit_and_refuses_the_rest_cleanly(
    model: Model,
) {
    const LIMIT: usize = 100;
    const ATTEMPTS: usize = 500;
    let (handler, closes) = Recorded::new(Busy);
    let config = config().with_max_connections(LIMIT);
    let server = serve(handler, config, model);
    let addr = server.local_addr();
    let clients: Vec<TcpStream> = (0..ATTEMPTS).map(|_| connect(addr)).collect();
    let refused = || server.refused();
    assert!(
        wait_until(PATIENCE, || refused() == (ATTEMPTS - LIMIT) as u64),
        "{model:?}: expected {} refusals, saw {}",
        ATTEMPTS - LIMIT,
        refused()
    );
    let mut served = split_flood(clients, ATTEMPTS - LIMIT);
    assert_eq!(
        served.len(),
        LIMIT,
        "{model:?}: exactly the limit is served"
    );
    for (i, client) in served.iter_mut().enumerate() {
        echo_roundtrip(client, format!("served {i}\n").as_bytes());
    }
    assert_eq!(server.connections(), LIMIT as u64);
    // After half of them leave, newcomers are served again, up to the limit.
    served.truncate(LIMIT / 2);
    wait_connections(&server, (LIMIT / 2) as u64);
    for i in 0..LIMIT / 2 {
        let mut newcomer = connect(addr);
        echo_roundtrip(&mut newcomer, format!("newcomer {i}\n").as_bytes());
        served.push(newcomer);
    }
    let busy = recv_to_end(&mut connect(addr));
    assert_eq!(
        busy, BUSY,
        "{model:?}: the limit still holds after recovery"
    );
    drop(served);
    wait_connections(&server, 0);
    let stats = stop_checked(server);
    eprintln!(
        "{model:?} flood: {ATTEMPTS} attempts at limit {LIMIT}: {LIMIT} served, {} \
         refused; then 50 left, 50 newcomers served, 1 more refused",
        ATTEMPTS - LIMIT
    );
    assert_eq!(stats.accepted, (LIMIT + LIMIT / 2) as u64);
    assert_eq!(stats.refused, (ATTEMPTS - LIMIT + 1) as u64);
    assert_eq!(stats.closed_by(CloseReason::Eof), stats.accepted);
    assert_eq!(closes.count(CloseReason::Eof), LIMIT + LIMIT / 2);
}

fn connection_flood_on_two_workers_is_limited_server_wide(model: Model) {
    // `max_connections` is "most connections served at once" by the server, whatever the
    // number of workers sharing its port.
    const LIMIT: usize = 100;
    const ATTEMPTS: usize = 500;
    let config = config().with_max_connections(LIMIT);
    let server = Server::new(Busy)
        .config(config)
        .model(model)
        .workers(2)
        .bind(loopback())
        .expect("bind two workers");
    let clients: Vec<TcpStream> = (0..ATTEMPTS)
        .map(|_| connect(server.local_addr()))
        .collect();
    let decided = || server.accepted() + server.refused();
    assert!(wait_until(PATIENCE, || decided() == ATTEMPTS as u64));
    let by_worker = server.accepted_by_worker();
    assert_eq!(
        server.connections(),
        LIMIT as u64,
        "{model:?}: served at once with two workers (accepted per worker: {by_worker:?})"
    );
    let mut served = split_flood(clients, ATTEMPTS - LIMIT);
    assert_eq!(served.len(), LIMIT);
    for (i, client) in served.iter_mut().enumerate() {
        echo_roundtrip(client, format!("served {i}\n").as_bytes());
    }
    drop(served);
    wait_connections(&server, 0);
    let stats = stop_checked(server);
    assert_eq!(stats.refused, (ATTEMPTS - LIMIT) as u64);
}

/// Sample `value` until it holds still for `window`; `None` if it never does within
/// [`PATIENCE`].
fn wait_until_stable(value: impl Fn() -> u64, window: Duration) -> Option<u64> {
    let deadline = Instant::now() + PATIENCE;
    let mut last = value();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        let now = value();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= window {
            return Some(now);
        }
    }
    None
}

/// A well-behaved echo client doing roundtrips in a thread until stopped, to show that
/// others are served while a hostile client does its worst.
#[derive(Debug)]
struct Meanwhile {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<u32>,
}

impl Meanwhile {
    /// Start one, tagged `tag` (its payloads are unique).
    fn start(addr: std::net::SocketAddr, tag: usize) -> Meanwhile {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut client = connect(addr);
            let mut rounds = 0u32;
            // Bounded in count as well as by the flag.
            while !flag.load(Ordering::Relaxed) && rounds < 100_000 {
                echo_roundtrip(
                    &mut client,
                    format!("meanwhile {tag} {rounds}\n").as_bytes(),
                );
                rounds += 1;
                thread::sleep(Duration::from_millis(1));
            }
            rounds
        });
        Meanwhile { stop, thread }
    }

    /// Stop it; returns its roundtrips, and fails the test if any failed.
    #[track_caller]
    fn finish(self) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        let rounds = self.thread.join().expect("a well-behaved client failed");
        assert!(rounds > 0, "a well-behaved client was never served");
        rounds
    }
}

/// Write `chunk` repeatedly to nonblocking `stream` until the kernel has refused more for
/// `stalled_for`, or `cap` bytes went out, or `deadline`. Returns the bytes written.
fn push_until_stalled(
    stream: &mut TcpStream,
    cap: usize,
    stalled_for: Duration,
    deadline: Duration,
) -> usize {
    let chunk = vec![b'x'; 64 * 1024];
    let start = Instant::now();
    let mut sent = 0;
    let mut stalled_since: Option<Instant> = None;
    while sent < cap && start.elapsed() < deadline {
        match stream.write(&chunk[..chunk.len().min(cap - sent)]) {
            Ok(n) => {
                sent += n;
                stalled_since = None;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= stalled_for {
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => panic!("writing to the server failed: {err}"),
        }
    }
    sent
}

fn writer_that_never_reads_is_paused_with_bounded_memory_while_others_are_served(model: Model) {
    const HIGH_WATER: usize = 256 * 1024;
    const LOW_WATER: usize = 64 * 1024;
    let (handler, record) = Recorded::new(Echo);
    let read_chunk = Config::default().read_chunk;
    // The claimed bound on what the server holds for it, enforced by the server itself:
    // were pending output ever to exceed it, the flooder would be closed (OutputLimit).
    let bound = HIGH_WATER + read_chunk;
    let config = config()
        .with_high_water(HIGH_WATER)
        .with_low_water(LOW_WATER)
        .with_max_output(bound);
    let server = serve(handler, config, model);
    let addr = server.local_addr();
    // A small receive buffer keeps the kernel from absorbing much of the echo.
    let mut flooder = connect_small_rcvbuf(addr, 16 * 1024);
    flooder.set_nonblocking(true).expect("nonblocking");
    let other = Meanwhile::start(addr, 0);
    // 256 MiB would be far beyond every buffer; the server must stop reading long
    // before, and then the kernel stops the flooder.
    let pushed = push_until_stalled(
        &mut flooder,
        256 << 20,
        Duration::from_millis(500),
        Duration::from_secs(10),
    );
    let served = other.finish();
    assert!(
        pushed < 256 << 20,
        "{model:?}: the server never stopped reading"
    );
    // Paused (the reactor stops reading; a threads-model client thread blocks writing):
    // with input waiting, the handler is soon given none at all. (Kernel buffers that grow
    // late may let a little more through after the client stalled.)
    let consumed = wait_until_stable(|| record.consumed(), Duration::from_millis(300))
        .unwrap_or_else(|| panic!("{model:?}: reads were never paused"));
    // The flooder stays open, paused, for as long as it likes: not closed by any limit.
    assert_eq!(poll_closed(&mut flooder), Peer::Open);
    assert_eq!(
        record.total(),
        1,
        "only the other client left: {:?}",
        record.all()
    );
    eprintln!(
        "{model:?} never-reading writer: pushed {} KiB into its socket; the server consumed \
         {} KiB, then paused holding at most {} KiB (high water {} KiB + one read chunk, \
         enforced as the output cap); another client did {served} roundtrips meanwhile",
        pushed / 1024,
        consumed / 1024,
        bound / 1024,
        HIGH_WATER / 1024,
    );
    drop(flooder);
    wait_connections(&server, 0);
    let stats = stop_checked(server);
    assert_eq!(stats.closed_by(CloseReason::OutputLimit), 0);
    assert_eq!(
        stats.closed_by(CloseReason::Eof) + stats.closed_by(CloseReason::Reset),
        2
    );
}

/// Streams `chunks` blocks of 64 KiB, one per 1 ms timer, whatever the client does; then
/// closes. Output grows without input: only the output cap (reactor) or a blocking write
/// (threads) bounds it.
#[derive(Debug, Default)]
struct Stream {
    chunks: u32,
    /// Blocks written so far, over all connections.
    written: Arc<AtomicU64>,
}

impl Handler for Stream {
    type Session = u32;

    fn open(&self, ctx: &mut Context<'_>) -> u32 {
        ctx.set_timer(Duration::from_millis(1));
        0
    }

    fn data(&self, _sent: &mut u32, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }

    fn timer(&self, sent: &mut u32, ctx: &mut Context<'_>) {
        ctx.write(&[b's'; 64 * 1024]);
        self.written.fetch_add(1, Ordering::SeqCst);
        *sent += 1;
        if *sent < self.chunks {
            ctx.set_timer(Duration::from_millis(1));
        } else {
            ctx.close();
        }
    }
}

/// Bytes a client that never read can still take from its socket before EOF or reset.
fn drain_after_close(stream: &mut TcpStream) -> usize {
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut got = 0usize;
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        got += n;
    }
    got
}

fn client_that_never_reads_a_stream_costs_bounded_memory_while_a_reader_gets_all(model: Model) {
    const CHUNKS: u32 = 256;
    const MAX_OUTPUT: usize = 1024 * 1024;
    let written = Arc::new(AtomicU64::new(0));
    let stream = Stream {
        chunks: CHUNKS,
        written: Arc::clone(&written),
    };
    let (handler, closes) = Recorded::new(stream);
    let config = config().with_max_output(MAX_OUTPUT);
    let server = serve(handler, config, model);
    let mut non_reader = connect(server.local_addr());
    let mut reader = connect(server.local_addr());
    let all = recv_to_end(&mut reader);
    assert_eq!(all.len(), CHUNKS as usize * 64 * 1024);
    let what = match model {
        // Output queues in user space until it passes the cap: closed, OutputLimit.
        Model::Reactor => {
            assert!(
                closes.wait_for(CloseReason::OutputLimit, 1, PATIENCE),
                "the non-reader was not closed at the output cap: {:?}",
                closes.all()
            );
            let got = drain_after_close(&mut non_reader);
            assert!(
                got < all.len(),
                "the non-reader cannot have received it all"
            );
            format!("closed (output_limit) after {} KiB reached it", got / 1024)
        }
        // Its client thread blocks writing to it: no more timer callbacks, so no more
        // output than one batch; it stays open until the server stops.
        Model::Threads => {
            assert!(closes.wait_for(CloseReason::Handler, 1, PATIENCE));
            let before = written.load(Ordering::SeqCst);
            thread::sleep(Duration::from_millis(500));
            assert_eq!(written.load(Ordering::SeqCst), before, "still writing");
            assert_eq!(
                closes.total(),
                1,
                "only the reader left: {:?}",
                closes.all()
            );
            let blocks = before - u64::from(CHUNKS);
            format!("blocked, open, after {blocks} blocks of 64 KiB were written to it")
        }
        other => panic!("no expected behaviour written for {other:?}"),
    };
    let stats = stop_checked(server);
    eprintln!(
        "{model:?} stream to a client that never reads (output cap {} KiB): the reader got \
         {} KiB and EOF; the non-reader was {what}",
        MAX_OUTPUT / 1024,
        all.len() / 1024,
    );
    let capped = if model == Model::Reactor { 1 } else { 0 };
    assert_eq!(stats.closed_by(CloseReason::OutputLimit), capped);
    assert_eq!(stats.closed_by(CloseReason::Handler), 1);
}

fn partial_frame_that_never_ends_is_closed_at_the_input_cap_with_a_clean_eof(model: Model) {
    const MAX_INPUT: usize = 16 * 1024;
    let (handler, closes) = Recorded::new(Lines {
        one_per_call: false,
    });
    let config = config().with_max_input(MAX_INPUT);
    let server = serve(handler, config, model);
    let addr = server.local_addr();
    let mut hostile = connect(addr);
    let mut writer = hostile.try_clone().expect("clone");
    // Keeps sending one endless line (bounded at 1 MiB), ignoring the server's FIN.
    let sending = thread::spawn(move || {
        let block = [b'a'; 4096];
        let mut sent = 0;
        while sent < 1 << 20 {
            match writer.write(&block) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        let _ = writer.shutdown(std::net::Shutdown::Write);
        sent
    });
    let mut reply = Vec::new();
    hostile
        .read_to_end(&mut reply)
        .expect("a lingering close ends in EOF, not a reset");
    assert!(reply.is_empty(), "no frame was ever complete");
    let sent = sending.join().expect("writer");
    let mut other = connect(addr);
    other.write_all(b"still served\n").expect("write");
    let mut frame = [0u8; 16];
    other.read_exact(&mut frame).expect("a frame back");
    assert_eq!(decode_lines(&frame), Some(vec![b"still served".to_vec()]));
    assert!(closes.wait_for(CloseReason::InputLimit, 1, PATIENCE));
    drop(other);
    wait_connections(&server, 0);
    let stats = stop_checked(server);
    eprintln!(
        "{model:?} input cap {} KiB: an endless line ({} KiB sent) got a clean EOF and \
         input_limit; another client was served",
        MAX_INPUT / 1024,
        sent / 1024
    );
    assert_eq!(stats.closed_by(CloseReason::InputLimit), 1);
}

fn backpressure_pause_is_not_mistaken_for_the_input_cap(model: Model) {
    // A client that sends a lot before it reads is slow, not hostile: while reads are
    // paused, input the echo was not offered must not count as a partial frame.
    const TOTAL: usize = 4 << 20;
    let (handler, closes) = Recorded::new(Echo);
    let config = config()
        .with_max_input(4096)
        .with_high_water(64 * 1024)
        .with_low_water(16 * 1024);
    let server = serve(handler, config, model);
    let mut client = connect(server.local_addr());
    client.set_nonblocking(true).expect("nonblocking");
    let early = push_until_stalled(
        &mut client,
        TOTAL,
        Duration::from_millis(300),
        Duration::from_secs(5),
    );
    client.set_nonblocking(false).expect("blocking");
    let payload = fixtures::client::pseudo_random_bytes(7, TOTAL - early);
    let mut back = Vec::new();
    let mut reader = client.try_clone().expect("clone");
    let receiving = thread::spawn(move || reader.read_to_end(&mut back).map(|_| back));
    client.write_all(&payload).expect("write the rest");
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let back = receiving.join().expect("reader").expect("read the echo");
    assert_eq!(
        back.len(),
        TOTAL,
        "{model:?}: echo cut short; closes: {:?}",
        closes.all()
    );
    assert!(back[..early].iter().all(|&b| b == b'x'));
    assert!(
        back[early..] == payload[..],
        "echo returned different bytes"
    );
    let stats = stop_checked(server);
    assert_eq!(stats.closed_by(CloseReason::InputLimit), 0);
    assert_eq!(stats.closed_by(CloseReason::Eof), 1);
}

/// Open `n` clients, each of which sends `first` once.
#[track_caller]
fn open_clients(addr: std::net::SocketAddr, n: usize, first: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut client = connect(addr);
            client.write_all(first).expect("first byte");
            client.set_nonblocking(true).expect("nonblocking");
            client
        })
        .collect()
}

/// Trickle `byte` to every open client every `every`, until all are closed or `deadline`;
/// returns when each was seen closed, relative to `start`.
fn trickle(
    clients: &mut [TcpStream],
    byte: Option<u8>,
    every: Duration,
    start: Instant,
    deadline: Duration,
) -> Vec<Option<Duration>> {
    let mut closed_at = vec![None; clients.len()];
    let mut next_byte = Instant::now() + every;
    while start.elapsed() < deadline && closed_at.iter().any(Option::is_none) {
        let send = Instant::now() >= next_byte;
        for (client, closed) in clients.iter_mut().zip(closed_at.iter_mut()) {
            if closed.is_some() {
                continue;
            }
            if poll_closed(client) == Peer::Closed {
                *closed = Some(start.elapsed());
            } else if let (true, Some(byte)) = (send, byte) {
                // Failure means the server closed it; the next check sees that.
                let _ = client.write(&[byte]);
            }
        }
        if send {
            next_byte += every;
        }
        thread::sleep(Duration::from_millis(10));
    }
    closed_at
}

/// A well-behaved client, in a thread: `rounds` request/reply exchanges, one per 50 ms.
fn steady_client(
    addr: std::net::SocketAddr,
    rounds: u32,
    exchange: fn(&mut TcpStream, u32),
) -> thread::JoinHandle<u32> {
    thread::spawn(move || {
        let mut client = connect(addr);
        for round in 0..rounds {
            exchange(&mut client, round);
            thread::sleep(Duration::from_millis(50));
        }
        rounds
    })
}

/// Summarise close times for a report line.
fn spread(closed_at: &[Option<Duration>]) -> (Duration, Duration) {
    let times: Vec<Duration> = closed_at.iter().flatten().copied().collect();
    let min = times.iter().min().copied().unwrap_or_default();
    let max = times.iter().max().copied().unwrap_or_default();
    (min, max)
}

fn slowloris_trickling_slower_than_the_idle_timeout_is_closed_and_others_are_unaffected(
    model: Model,
) {
    const SLOW: usize = 300;
    let idle = Duration::from_millis(400);
    let (handler, closes) = Recorded::new(Echo);
    let config = config().with_idle_timeout(Some(idle));
    let server = serve(handler, config, model);
    let addr = server.local_addr();
    let steady: Vec<_> = (0..4)
        .map(|_| {
            steady_client(addr, 40, |c, round| {
                echo_roundtrip(c, format!("round {round}\n").as_bytes())
            })
        })
        .collect();
    let start = Instant::now();
    let mut slow = open_clients(addr, SLOW, b"s");
    // Echo consumes each byte (progress), so trickle slower than the idle timeout.
    let closed_at = trickle(
        &mut slow,
        Some(b's'),
        Duration::from_secs(1),
        start,
        Duration::from_secs(5),
    );
    for client in steady {
        assert_eq!(client.join().expect("a steady client failed"), 40);
    }
    assert!(
        closed_at.iter().all(Option::is_some),
        "{model:?}: some slow clients stayed"
    );
    let (first, last) = spread(&closed_at);
    assert!(
        first >= idle,
        "{model:?}: closed after {first:?}, before the idle timeout"
    );
    assert!(closes.wait_for(CloseReason::IdleTimeout, SLOW, PATIENCE));
    wait_connections(&server, 0);
    let stats = stop_checked(server);
    eprintln!(
        "{model:?} slowloris (echo, 1 byte/s, idle {idle:?}): {SLOW} closed by the idle \
         timeout between {first:?} and {last:?}; 4 steady clients did 40 roundtrips each"
    );
    assert_eq!(stats.closed_by(CloseReason::IdleTimeout), SLOW as u64);
    assert_eq!(stats.closed_by(CloseReason::Eof), 4);
}

fn slowloris_trickling_a_partial_frame_is_closed_by_the_idle_timeout_and_others_are_unaffected(
    model: Model,
) {
    const SLOW: usize = 300;
    let idle = Duration::from_millis(500);
    let (handler, closes) = Recorded::new(Lines { one_per_call: true });
    let config = config().with_idle_timeout(Some(idle));
    let server = serve(handler, config, model);
    let addr = server.local_addr();
    let steady: Vec<_> = (0..4)
        .map(|_| {
            steady_client(addr, 40, |c, round| {
                let line = format!("round {round}");
                c.write_all(format!("{line}\n").as_bytes()).expect("write");
                let mut frame = vec![0; 4 + line.len()];
                c.read_exact(&mut frame).expect("frame");
                assert_eq!(decode_lines(&frame), Some(vec![line.into_bytes()]));
            })
        })
        .collect();
    let start = Instant::now();
    let mut slow = open_clients(addr, SLOW, b"G");
    // Bytes arrive 5x faster than the idle timeout, but the line never completes, so
    // nothing is consumed: no progress.
    let closed_at = trickle(
        &mut slow,
        Some(b'E'),
        Duration::from_millis(100),
        start,
        Duration::from_secs(5),
    );
    for client in steady {
        assert_eq!(client.join().expect("a steady client failed"), 40);
    }
    assert!(
        closed_at.iter().all(Option::is_some),
        "{model:?}: some slow clients stayed"
    );
    let (first, last) = spread(&closed_at);
    assert!(
        first >= idle,
        "{model:?}: closed after {first:?}, before the idle timeout"
    );
    assert!(closes.wait_for(CloseReason::IdleTimeout, SLOW, PATIENCE));
    wait_connections(&server, 0);
    let stats = stop_checked(server);
    eprintln!(
        "{model:?} slowloris (partial line, 10 bytes/s, idle {idle:?}): {SLOW} closed by \
         the idle timeout between {first:?} and {last:?}; 4 steady clients did 40 each"
    );
    assert_eq!(stats.closed_by(CloseReason::IdleTimeout), SLOW as u64);
    assert_eq!(stats.closed_by(CloseReason::Eof), 4);
}

/// One client of the reset storm: some traffic, then a reset (`SO_LINGER` 0 and close).
fn storm_client(addr: std::net::SocketAddr, i: usize) {
    let mut client = connect(addr);
    match i % 3 {
        // Reset with the echo of 32 KiB still in flight.
        0 => client.write_all(&[b'r'; 32 * 1024]).expect("write"),
        // Reset a connection the server has paused (it never read its echo).
        1 => {
            client.set_nonblocking(true).expect("nonblocking");
            push_until_stalled(
                &mut client,
                8 << 20,
                Duration::from_millis(100),
                Duration::from_secs(2),
            );
        }
        // Reset in the middle of a request, after a full roundtrip.
        _ => {
            echo_roundtrip(&mut client, &[b'q'; 1024]);
            client.write_all(&[b'h'; 512]).expect("write");
        }
    }
    SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
}

fn reset_storm_mid_traffic_closes_only_the_reset_connections(model: Model) {
    const STORM: usize = 300;
    const STEADY: usize = 8;
    let (handler, closes) = Recorded::new(Echo);
    let config = config()
        .with_high_water(256 * 1024)
        .with_low_water(64 * 1024);
    let server = serve(handler, config, model);
    let addr = server.local_addr();
    let steady: Vec<Meanwhile> = (0..STEADY).map(|k| Meanwhile::start(addr, k)).collect();
    let storm: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                for i in (t..STORM).step_by(4) {
                    storm_client(addr, i);
                }
            })
        })
        .collect();
    for thread in storm {
        thread.join().expect("storm thread");
    }
    assert!(
        closes.wait_for(CloseReason::Reset, STORM, PATIENCE),
        "{model:?}: {} of {STORM} resets seen: {:?}",
        closes.count(CloseReason::Reset),
        closes.total()
    );
    let rounds: Vec<u32> = steady.into_iter().map(Meanwhile::finish).collect();
    wait_connections(&server, 0);
    let stats = stop_checked(server);
    eprintln!(
        "{model:?} reset storm: {STORM} resets mid-traffic -> {} reset, {} eof, {} other; \
         steady clients did {:?} roundtrips meanwhile",
        stats.closed_by(CloseReason::Reset),
        stats.closed_by(CloseReason::Eof),
        stats.closed_total()
            - stats.closed_by(CloseReason::Reset)
            - stats.closed_by(CloseReason::Eof),
        rounds
    );
    assert_eq!(stats.accepted, (STORM + STEADY) as u64);
    assert_eq!(stats.closed_by(CloseReason::Reset), STORM as u64);
    assert_eq!(stats.closed_by(CloseReason::Eof), STEADY as u64);
}

/// On its first input writes a burst; on every later input, reports
/// `Context::pending_output()` as `pending <n>\n`.
#[derive(Debug)]
struct Reporter {
    burst: Vec<u8>,
}

impl Handler for Reporter {
    type Session = bool;

    fn open(&self, _ctx: &mut Context<'_>) -> bool {
        false
    }

    fn data(&self, burst_sent: &mut bool, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        if *burst_sent {
            let report = format!("pending {}\n", ctx.pending_output());
            ctx.write(report.as_bytes());
        } else {
            *burst_sent = true;
            ctx.write(&self.burst);
        }
        input.len()
    }
}

fn pending_output_counts_only_bytes_not_yet_sent(model: Model) {
    // The documented meaning of `Context::pending_output`, which handlers use for their
    // own backpressure, and which the reactor itself uses to stop feeding input.
    const BURST: usize = 48 << 20;
    const READ_FIRST: usize = 8 << 20;
    let handler = Reporter {
        burst: fixtures::handlers::big_reply(BURST),
    };
    let config = config()
        .with_high_water(128 << 20)
        .with_low_water(64 << 20)
        .with_max_output(128 << 20);
    let server = serve(handler, config, model);
    let mut client = connect_small_rcvbuf(server.local_addr(), 16 * 1024);
    client.write_all(b"a").expect("write");
    let mut first = vec![0; READ_FIRST];
    client
        .read_exact(&mut first)
        .expect("the start of the burst");
    // At least READ_FIRST bytes have been sent, so at most BURST - READ_FIRST are not.
    client.write_all(b"?").expect("write");
    let mut rest = vec![0; BURST - READ_FIRST];
    client.read_exact(&mut rest).expect("the rest of the burst");
    let mut report = String::new();
    let mut byte = [0u8; 1];
    while !report.ends_with('\n') {
        client.read_exact(&mut byte).expect("the report");
        report.push(byte[0] as char);
    }
    let reported: usize = report
        .trim()
        .strip_prefix("pending ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad report {report:?}"));
    eprintln!(
        "{model:?} pending_output: {} KiB reported with at most {} KiB unsent",
        reported / 1024,
        (BURST - READ_FIRST) / 1024
    );
    assert!(
        reported <= BURST - READ_FIRST,
        "{model:?}: pending_output() reported {reported} bytes, but at most {} were unsent",
        BURST - READ_FIRST
    );
    drop(client);
    stop_checked(server);
}

fn stop_is_bounded_by_linger_with_clients_that_never_read(model: Model) {
    // Stopping flushes and closes every connection, but a client that never reads cannot
    // hold the server up past the linger bound.
    let linger = Duration::from_millis(500);
    // Time a stop may take beyond the linger: joining threads, closing sockets.
    const STOP_SLACK: Duration = Duration::from_secs(5);
    let config = Config::default()
        .with_linger(linger)
        .with_high_water(64 * 1024)
        .with_low_water(16 * 1024);
    let (handler, closes) = Recorded::new(Echo);
    let server = serve(handler, config, model);
    let addr = server.local_addr();
    let mut hostile: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut flooder = connect_small_rcvbuf(addr, 16 * 1024);
            flooder.set_nonblocking(true).expect("nonblocking");
            push_until_stalled(
                &mut flooder,
                64 << 20,
                Duration::from_millis(200),
                Duration::from_secs(5),
            );
            flooder
        })
        .collect();
    // Silent ones and a half-written line, too.
    hostile.extend((0..10).map(|_| connect(addr)));
    wait_connections(&server, 20);
    let start = Instant::now();
    let stats = stop_checked(server);
    let took = start.elapsed();
    eprintln!(
        "{model:?} stop with 10 never-reading flooders and 10 silent clients (linger \
         {linger:?}): done in {took:?}; {} shutdown, {} linger_timeout",
        closes.count(CloseReason::Shutdown),
        closes.count(CloseReason::LingerTimeout),
    );
    assert_eq!(stats.closed_total(), 20);
    assert!(
        took < linger + STOP_SLACK,
        "{model:?}: stopping took {took:?} with linger {linger:?}"
    );
}

fn accept_budget_of_one_still_accepts_a_whole_burst(model: Model) {
    // A budget that stops accepting early must revisit the listener: the clients left in
    // the backlog raise no new readiness event.
    const BURST: usize = 300;
    let config = config().with_accept_budget(1);
    let server = serve(Echo, config, model);
    let mut clients: Vec<TcpStream> = (0..BURST).map(|_| connect(server.local_addr())).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        echo_roundtrip(client, format!("burst {i}\n").as_bytes());
    }
    assert_eq!(server.connections(), BURST as u64);
    drop(clients);
    wait_connections(&server, 0);
    let stats = stop_checked(server);
    assert_eq!(stats.accepted, BURST as u64);
}
