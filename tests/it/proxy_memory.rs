//! The proxy is paced by its slower side: a firehose upstream behind a slow client, and a
//! fast client in front of a slow upstream, stream many times the high-water mark through
//! a proxy process (reactor model, then threads) whose peak resident memory (`VmHWM`)
//! grows by a few MiB only. Without
//! flow control across connections the proxy would read the fast side as fast as it
//! sends, until the slow side's output reached its cap and the pair was cut.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use fixtures::PATIENCE;
use fixtures::client::connect;
use fixtures::process::ServerProcess;
use fixtures::server::loopback;

/// Bytes streamed through the proxy in each test: 64 times the high-water mark below.
const STREAM: usize = 64 * 1024 * 1024;
/// The proxy's high-water mark in these tests.
const HIGH_WATER: usize = 1024 * 1024;
/// How long the slow side reads slowly before catching up.
const SLOW_SPELL: Duration = Duration::from_millis(1500);
/// Peak memory the proxy may add while streaming, in KiB: the mark on both sides, one
/// read budget, and allocator slack; far below the stream.
const MAX_GROWTH_KIB: u64 = 8 * 1024;

/// The byte at `offset` of the stream, so order and content are checked on arrival.
fn pattern(offset: usize) -> u8 {
    (offset % 251) as u8
}

/// Write the whole stream to `stream`, then close it.
fn firehose(mut stream: TcpStream) {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < STREAM {
        let len = chunk.len().min(STREAM - sent);
        for (i, byte) in chunk[..len].iter_mut().enumerate() {
            *byte = pattern(sent + i);
        }
        stream.write_all(&chunk[..len]).expect("firehose write");
        sent += len;
    }
    stream.shutdown(Shutdown::Write).expect("half-close");
}

/// Read the whole stream, slowly for [`SLOW_SPELL`] then as fast as it comes, checking
/// every byte; returns how many arrived.
fn slow_reader(mut stream: TcpStream) -> usize {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let slow_until = Instant::now() + SLOW_SPELL;
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    loop {
        let slow = Instant::now() < slow_until;
        let want = if slow { 4096 } else { buf.len() };
        let n = stream.read(&mut buf[..want]).expect("read the stream");
        if n == 0 {
            return got;
        }
        for (i, &byte) in buf[..n].iter().enumerate() {
            assert_eq!(byte, pattern(got + i), "byte {} changed", got + i);
        }
        got += n;
        if slow {
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A proxy process under `model` (`reactor` or `threads`) in front of `upstream`.
fn proxy_process(model: &str, upstream: std::net::SocketAddr) -> ServerProcess {
    let upstream = upstream.to_string();
    let high_water = HIGH_WATER.to_string();
    let low_water = (HIGH_WATER / 4).to_string();
    ServerProcess::spawn(
        &[
            "--protocol",
            "proxy",
            "--model",
            model,
            "--upstream",
            &upstream,
            "--high-water",
            &high_water,
            "--low-water",
            &low_water,
        ],
        None,
    )
}

/// Run one stream through a fresh proxy under `model` and check its peak memory growth.
fn stream_through(model: &str, upstream_sends: bool) {
    let listener = TcpListener::bind(loopback()).expect("bind the upstream");
    let proxy = proxy_process(model, listener.local_addr().expect("addr"));
    let before = proxy.status().hwm_kib;
    let upstream = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("the proxy connects");
        if upstream_sends {
            firehose(stream);
            0
        } else {
            slow_reader(stream)
        }
    });
    let client = connect(proxy.addr);
    client
        .set_write_timeout(Some(PATIENCE * 4))
        .expect("timeout");
    let received = if upstream_sends {
        slow_reader(client)
    } else {
        firehose(client.try_clone().expect("clone"));
        let mut rest = Vec::new();
        let mut client = client;
        let _ = client.read_to_end(&mut rest);
        0
    };
    let upstream_received = upstream.join().expect("upstream");
    assert_eq!(
        received.max(upstream_received),
        STREAM,
        "the whole stream arrived"
    );
    let growth = proxy.status().hwm_kib.saturating_sub(before);
    eprintln!(
        "{model} proxy VmHWM grew by {growth} KiB while streaming {} MiB",
        STREAM >> 20
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "the proxy's peak memory grew by {growth} KiB: it buffered the stream"
    );
    proxy.stop();
}

#[test]
fn a_slow_client_behind_a_firehose_upstream_keeps_the_proxy_small() {
    stream_through("reactor", true);
}

#[test]
fn a_slow_upstream_behind_a_fast_client_keeps_the_proxy_small() {
    stream_through("reactor", false);
}

/// Under the threads model a blocking write paces its thread: the same bounds hold.
#[test]
fn threads_a_slow_client_behind_a_firehose_upstream_keeps_the_proxy_small() {
    stream_through("threads", true);
}

/// As above, the other way round.
#[test]
fn threads_a_slow_upstream_behind_a_fast_client_keeps_the_proxy_small() {
    stream_through("threads", false);
}
