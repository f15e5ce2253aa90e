//! Behind a load balancer: the PROXY protocol header (v1 and v2) from trusted sources
//! names the client everywhere the handler looks, bad headers cost only their own
//! connection, untrusted sources are not parsed, and `max_per_address` counts the
//! address the header named. Under both models, over real sockets.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use fixtures::client::{connect, recv_exact, recv_line, recv_to_end, send};
use fixtures::process::{ServeCommand, model_arg};
use fixtures::server::{serve, start_server};
use fixtures::{PATIENCE, for_each_model};
use tcp_reactor::protocols::Http;
use tcp_reactor::proxy_header::{Cidr, SendProxy, encode};
use tcp_reactor::{Config, Context, Draining, Handler, Model, Running, Server, metrics};

for_each_model!(
    a_v1_header_names_the_client,
    a_v2_header_names_the_client_and_its_tlvs_are_skipped,
    a_v2_local_header_keeps_the_real_peer,
    a_header_in_one_byte_writes_works,
    a_header_from_an_untrusted_source_is_data,
    a_v1_header_with_junk_costs_only_its_connection,
    a_v1_header_longer_than_107_bytes_costs_only_its_connection,
    a_v2_header_with_a_bad_signature_costs_only_its_connection,
    a_v2_header_over_the_tlv_budget_costs_only_its_connection,
    a_trusted_client_that_never_sends_its_header_is_closed_at_the_timeout,
    the_per_address_limit_counts_the_address_the_header_named,
    the_command_line_logs_the_proxied_client_and_counts_per_address_refusals,
    the_proxy_protocol_sends_the_client_upstream_in_a_header,
    healthz_turns_503_as_a_drain_begins_and_keep_alive_clients_are_closed_after_a_reply,
    sigterm_with_stop_drain_reports_503_and_closes_keep_alives_after_their_next_reply,
);

/// Greets each client with the peer address it sees (`Context::peer_addr`), then echoes.
struct Greeter;

impl Handler for Greeter {
    type Session = ();

    fn open(&self, ctx: &mut Context<'_>) {
        ctx.write(format!("{}\n", ctx.peer_addr()).as_bytes());
    }

    fn data(&self, _: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }

    fn busy_reply(&self) -> &[u8] {
        b"busy\n"
    }
}

/// Trust loopback (where the tests' "balancer" connects from).
fn trusting(block: &str) -> Config {
    Config::default()
        .with_linger(Duration::from_millis(500))
        .with_handshake_timeout(Duration::from_millis(500))
        .with_proxy_protocol_from([block.parse::<Cidr>().expect("a block")])
}

fn client() -> SocketAddr {
    "192.0.2.7:4711".parse().unwrap()
}

/// A v2 header from `client` with `tlvs` bytes of TLV after the addresses.
fn v2_with_tlvs(client: SocketAddr, tlv_len: usize) -> Vec<u8> {
    let mut header = encode(SendProxy::V2, client, "127.0.0.1:80".parse().unwrap());
    // One TLV of type 0xE0 (a custom type) holding `tlv_len - 3` bytes.
    let body = u16::from_be_bytes([header[14], header[15]]) as usize + tlv_len;
    header[14..16].copy_from_slice(&(body as u16).to_be_bytes());
    header.push(0xE0);
    header.extend_from_slice(&((tlv_len - 3) as u16).to_be_bytes());
    header.extend(std::iter::repeat_n(b'x', tlv_len - 3));
    header
}

/// A good proxied client, to show a bad one cost nothing else.
#[track_caller]
fn good_client_is_served(running: &Running) {
    let mut good = connect(running.local_addr());
    send(
        &mut good,
        &encode(SendProxy::V1, client(), running.local_addr()),
    );
    assert_eq!(recv_line(&mut good), client().to_string());
    send(&mut good, b"still here");
    assert_eq!(recv_exact(&mut good, 10), b"still here");
}

/// The server closes `stream` without sending a byte (EOF, or a reset when input it
/// never read was left behind).
#[track_caller]
fn closed_without_a_byte(stream: &mut TcpStream) {
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!(
            "expected a close, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(err) => panic!("expected a close, got {err}"),
    }
}

fn a_v1_header_names_the_client(model: Model) {
    let running = serve(Greeter, trusting("127.0.0.1/32"), model);
    let mut stream = connect(running.local_addr());
    let mut bytes = encode(SendProxy::V1, client(), running.local_addr());
    bytes.extend_from_slice(b"hello");
    send(&mut stream, &bytes);
    assert_eq!(recv_line(&mut stream), "192.0.2.7:4711");
    assert_eq!(recv_exact(&mut stream, 5), b"hello");
    let v6: SocketAddr = "[2001:db8::5]:999".parse().unwrap();
    let mut six = connect(running.local_addr());
    send(
        &mut six,
        &encode(SendProxy::V1, v6, "[2001:db8::1]:80".parse().unwrap()),
    );
    assert_eq!(recv_line(&mut six), "[2001:db8::5]:999");
    drop((stream, six));
    let stats = running.stop().expect("stopped");
    assert_eq!(stats.proxied, 2, "{stats}");
}

fn a_v2_header_names_the_client_and_its_tlvs_are_skipped(model: Model) {
    let running = serve(Greeter, trusting("127.0.0.0/8"), model);
    let mut stream = connect(running.local_addr());
    let mut bytes = v2_with_tlvs(client(), 40);
    bytes.extend_from_slice(b"after");
    send(&mut stream, &bytes);
    assert_eq!(recv_line(&mut stream), "192.0.2.7:4711");
    assert_eq!(recv_exact(&mut stream, 5), b"after");
    running.stop().expect("stopped");
}

fn a_v2_local_header_keeps_the_real_peer(model: Model) {
    let running = serve(Greeter, trusting("127.0.0.1"), model);
    let mut stream = connect(running.local_addr());
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    local.extend_from_slice(b"ping");
    send(&mut stream, &local);
    let me = stream.local_addr().expect("local address");
    assert_eq!(recv_line(&mut stream), me.to_string());
    assert_eq!(recv_exact(&mut stream, 4), b"ping");
    running.stop().expect("stopped");
}

fn a_header_in_one_byte_writes_works(model: Model) {
    let running = serve(Greeter, trusting("127.0.0.1/32"), model);
    for version in [SendProxy::V1, SendProxy::V2] {
        let mut stream = connect(running.local_addr());
        stream.set_nodelay(true).expect("nodelay");
        let mut bytes = encode(version, client(), running.local_addr());
        bytes.extend_from_slice(b"x");
        for byte in bytes {
            send(&mut stream, &[byte]);
            thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(recv_line(&mut stream), "192.0.2.7:4711", "{version:?}");
        assert_eq!(recv_exact(&mut stream, 1), b"x");
    }
    running.stop().expect("stopped");
}

fn a_header_from_an_untrusted_source_is_data(model: Model) {
    let running = serve(Greeter, trusting("10.0.0.0/8"), model);
    let mut stream = connect(running.local_addr());
    let me = stream.local_addr().expect("local address");
    assert_eq!(recv_line(&mut stream), me.to_string());
    let header = encode(SendProxy::V1, client(), running.local_addr());
    send(&mut stream, &header);
    assert_eq!(recv_exact(&mut stream, header.len()), header);
    let stats = running.stop().expect("stopped");
    assert_eq!(
        (stats.proxied, stats.proxy_header_failed),
        (0, 0),
        "{stats}"
    );
}

/// Send `bad` as a trusted client's first bytes: it is closed unserved, a good client
/// beside it is served, and the failure is counted.
fn costs_only_its_connection(model: Model, bad: &[u8]) {
    let running = serve(Greeter, trusting("127.0.0.1/32"), model);
    let mut stream = connect(running.local_addr());
    send(&mut stream, bad);
    closed_without_a_byte(&mut stream);
    good_client_is_served(&running);
    let stats = running.stop().expect("stopped");
    assert_eq!(stats.proxy_header_failed, 1, "{stats}");
}

fn a_v1_header_with_junk_costs_only_its_connection(model: Model) {
    costs_only_its_connection(model, b"PROXY TCP4 junk here 1 2\r\nGET / HTTP/1.1\r\n\r\n");
}

fn a_v1_header_longer_than_107_bytes_costs_only_its_connection(model: Model) {
    let mut long = b"PROXY TCP4 192.0.2.7 127.0.0.1 4711 80".to_vec();
    long.extend(std::iter::repeat_n(b' ', 100));
    long.extend_from_slice(b"\r\n");
    assert!(long.len() > 107);
    costs_only_its_connection(model, &long);
}

fn a_v2_header_with_a_bad_signature_costs_only_its_connection(model: Model) {
    let mut bad = encode(SendProxy::V2, client(), "127.0.0.1:80".parse().unwrap());
    bad[6] = b'X';
    costs_only_its_connection(model, &bad);
}

fn a_v2_header_over_the_tlv_budget_costs_only_its_connection(model: Model) {
    // Announces 4,000 bytes of TLVs, more than the 516-byte budget: refused unread.
    costs_only_its_connection(model, &v2_with_tlvs(client(), 4_000)[..64]);
}

fn a_trusted_client_that_never_sends_its_header_is_closed_at_the_timeout(model: Model) {
    let running = serve(Greeter, trusting("127.0.0.1/32"), model);
    let mut silent = connect(running.local_addr());
    let started = Instant::now();
    // A partial header does not hold the connection past the deadline either.
    let mut partial = connect(running.local_addr());
    send(&mut partial, b"PROXY TCP4 192.0");
    closed_without_a_byte(&mut silent);
    closed_without_a_byte(&mut partial);
    assert!(started.elapsed() < PATIENCE);
    good_client_is_served(&running);
    let stats = running.stop().expect("stopped");
    assert_eq!(stats.proxy_header_failed, 2, "{stats}");
}

fn the_per_address_limit_counts_the_address_the_header_named(model: Model) {
    let config = trusting("127.0.0.1/32").with_max_per_address(Some(2));
    let running = serve(Greeter, config, model);
    let from = |addr: &str| {
        let mut stream = connect(running.local_addr());
        let addr: SocketAddr = addr.parse().unwrap();
        send(
            &mut stream,
            &encode(SendProxy::V2, addr, running.local_addr()),
        );
        stream
    };
    let mut first = from("192.0.2.7:1");
    assert_eq!(recv_line(&mut first), "192.0.2.7:1");
    let mut second = from("192.0.2.7:2");
    assert_eq!(recv_line(&mut second), "192.0.2.7:2");
    // The third from the same client is refused as a full server refuses.
    let mut third = from("192.0.2.7:3");
    assert_eq!(recv_to_end(&mut third), b"busy\n");
    // Another client, behind the same balancer, is unaffected.
    let mut other = from("192.0.2.8:1");
    assert_eq!(recv_line(&mut other), "192.0.2.8:1");
    // A place freed is a place taken again.
    drop(first);
    // The server sees the close within a turn or two; a bounded number of tries.
    let mut tries = 0;
    let mut again = loop {
        tries += 1;
        assert!(tries < 500, "the freed place was never given back");
        let mut stream = from("192.0.2.7:4");
        let line = {
            let mut byte = [0u8; 64];
            let n = stream.read(&mut byte).expect("a reply");
            String::from_utf8_lossy(&byte[..n]).into_owned()
        };
        if line.starts_with("192.0.2.7:4") {
            break stream;
        }
        assert_eq!(line, "busy\n");
        thread::sleep(Duration::from_millis(20));
    };
    send(&mut again, b"ok");
    assert_eq!(recv_exact(&mut again, 2), b"ok");
    drop((second, other, again));
    // The metrics count the refusals by reason.
    let exposition = metrics::render(&running.live_stats().snapshot());
    let per_address: u64 = exposition
        .lines()
        .find_map(|line| line.strip_prefix("tcp_reactor_refusals_total{reason=\"per_address\"} "))
        .and_then(|n| n.parse().ok())
        .expect("a per_address sample");
    assert!(per_address >= 1, "{exposition}");
    assert!(
        exposition.contains("tcp_reactor_refusals_total{reason=\"server_full\"} 0"),
        "{exposition}"
    );
    let stats = running.stop().expect("stopped");
    assert!(stats.refused_per_address >= 1, "{stats}");
    assert_eq!(stats.refused, stats.refused_per_address, "{stats}");
}

fn the_command_line_logs_the_proxied_client_and_counts_per_address_refusals(model: Model) {
    let server = ServeCommand::default()
        .args(["--protocol", "seed", "--model", model_arg(model)])
        .args(["--proxy-protocol-from", "10.9.0.0/16"])
        .args(["--proxy-protocol-from", "127.0.0.1"])
        .args(["--max-per-address", "1"])
        .spawn()
        .expect("the server starts");
    let mut stream = connect(server.addr);
    let mut bytes = encode(SendProxy::V1, client(), server.addr);
    bytes.extend_from_slice(b"hi");
    send(&mut stream, &bytes);
    assert_eq!(recv_to_end(&mut stream), b"hahaha");
    fixtures::eventually("the seed's log line", || {
        server.log_lines_with("[192.0.2.7:4711] ") == 1
    });
    // Two at once from another client: one is refused (the seed's busy reply is empty),
    // whichever the server counted second. The first client's connection still lingers,
    // waiting for its EOF, and does not count for this one.
    let other: SocketAddr = "192.0.2.9:1".parse().unwrap();
    let mut pair = [connect(server.addr), connect(server.addr)];
    for stream in &mut pair {
        send(stream, &encode(SendProxy::V2, other, server.addr));
    }
    thread::sleep(Duration::from_millis(100));
    let mut replies: Vec<Vec<u8>> = pair
        .iter_mut()
        .map(|stream| {
            // The refused one may be gone already: a failed send is its answer.
            let _ = std::io::Write::write_all(stream, b"x");
            let mut reply = Vec::new();
            match stream.read_to_end(&mut reply) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {}
                Err(err) => panic!("no reply: {err}"),
            }
            reply
        })
        .collect();
    replies.sort();
    assert_eq!(replies, [b"".to_vec(), b"hahaha".to_vec()]);
    let stats = server.stop();
    assert_eq!(stats.get("proxied"), Some(&3), "{stats:?}");
    assert_eq!(stats.get("refused per address"), Some(&1), "{stats:?}");
}

fn the_proxy_protocol_sends_the_client_upstream_in_a_header(model: Model) {
    // The upstream trusts loopback and greets with the client it was told of.
    let upstream = serve(Greeter, trusting("127.0.0.1/32"), Model::Reactor);
    for version in ["v1", "v2"] {
        // A proxy that itself trusts loopback for a header, and sends one on.
        let proxy = ServeCommand::default()
            .args(["--protocol", "proxy", "--model", model_arg(model)])
            .args(["--upstream", &upstream.local_addr().to_string()])
            .args(["--send-proxy", version])
            .args(["--proxy-protocol-from", "127.0.0.1"])
            .spawn()
            .expect("the proxy starts");
        let mut stream = connect(proxy.addr);
        let mut bytes = encode(SendProxy::V1, client(), proxy.addr);
        bytes.extend_from_slice(b"through");
        send(&mut stream, &bytes);
        assert_eq!(recv_line(&mut stream), "192.0.2.7:4711", "{version}");
        assert_eq!(recv_exact(&mut stream, 7), b"through");
        drop(stream);
        proxy.stop();
    }
    // Without a header of its own, the proxy names the client's real address.
    let proxy = ServeCommand::default()
        .args(["--protocol", "proxy", "--model", model_arg(model)])
        .args(["--upstream", &upstream.local_addr().to_string()])
        .args(["--send-proxy", "v2"])
        .spawn()
        .expect("the proxy starts");
    let mut stream = connect(proxy.addr);
    let me = stream.local_addr().expect("local address");
    assert_eq!(recv_line(&mut stream), me.to_string());
    drop(stream);
    proxy.stop();
    let stats = upstream.stop().expect("stopped");
    assert_eq!(stats.proxied, 3, "{stats}");
}

/// `GET path` on a fresh connection: the status code.
fn status_of(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = connect(addr);
    send(
        &mut stream,
        format!("GET {path} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let reply = String::from_utf8(recv_to_end(&mut stream)).expect("UTF-8");
    reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {reply:?}"))
}

/// One keep-alive request on `stream`: the response head.
fn keep_alive_request(stream: &mut TcpStream) -> String {
    send(stream, b"GET / HTTP/1.1\r\nHost: lb\r\n\r\n");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.extend(recv_exact(stream, 1));
    }
    let head = String::from_utf8(head).expect("UTF-8");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Content-Length");
    recv_exact(stream, length);
    head
}

fn healthz_turns_503_as_a_drain_begins_and_keep_alive_clients_are_closed_after_a_reply(
    model: Model,
) {
    let draining = Draining::new();
    let server = Server::new(Http::default().with_draining(draining.clone())).draining(draining);
    let running: Running = start_server(server, model, Config::default());
    let endpoint = metrics::serve("127.0.0.1:0".parse().unwrap(), running.live_stats())
        .expect("the metrics endpoint starts");
    assert_eq!(status_of(endpoint.local_addr(), "/healthz"), 200);
    let mut client = connect(running.local_addr());
    let head = keep_alive_request(&mut client);
    assert!(!head.contains("Connection: close"), "{head}");
    // An upgrade begins: the balancer hears it at once, and the client at its next reply.
    running.set_draining(true);
    assert_eq!(status_of(endpoint.local_addr(), "/healthz"), 503);
    let head = keep_alive_request(&mut client);
    assert!(head.contains("Connection: close"), "{head}");
    closed_without_a_byte(&mut client);
    drop(client);
    // The upgrade failed: serving again.
    running.set_draining(false);
    assert_eq!(status_of(endpoint.local_addr(), "/healthz"), 200);
    // A stop: 503 until the process ends, and the metrics listener keeps answering.
    running.stop().expect("stopped");
    assert_eq!(status_of(endpoint.local_addr(), "/healthz"), 503);
    assert_eq!(status_of(endpoint.local_addr(), "/metrics"), 200);
}

fn sigterm_with_stop_drain_reports_503_and_closes_keep_alives_after_their_next_reply(model: Model) {
    let metrics_addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("its address")
    };
    let server = ServeCommand::default()
        .args(["--protocol", "http", "--model", model_arg(model)])
        .args(["--metrics", &metrics_addr.to_string(), "--stop-drain", "10"])
        .spawn()
        .expect("the server starts");
    fixtures::eventually("the metrics endpoint", || {
        TcpStream::connect(metrics_addr).is_ok()
    });
    assert_eq!(status_of(metrics_addr, "/healthz"), 200);
    let mut client = connect(server.addr);
    assert!(!keep_alive_request(&mut client).contains("Connection: close"));
    let pid = nix::unistd::Pid::from_raw(server.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    fixtures::eventually("/healthz reports the drain", || {
        status_of(metrics_addr, "/healthz") == 503
    });
    // Still serving: the keep-alive client gets its reply, told to close.
    let head = keep_alive_request(&mut client);
    assert!(head.contains("Connection: close"), "{head}");
    closed_without_a_byte(&mut client);
    drop(client);
    // No connection is left: the server stops without waiting out the drain.
    let started = Instant::now();
    let stats = server.stop();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the drain was waited out"
    );
    assert_eq!(stats.get("accepted"), Some(&1), "{stats:?}");
}

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The pid a `--pid-file` holds, once it holds one.
fn pid_in(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Wait (bounded) for the pid file to name a process other than `old`; how long it took.
#[track_caller]
fn wait_for_successor(path: &std::path::Path, old: i32) -> (i32, Duration) {
    let started = Instant::now();
    let mut new = old;
    fixtures::eventually("the upgraded process writes its pid", || {
        new = pid_in(path).unwrap_or(old);
        new != old
    });
    (new, started.elapsed())
}

/// Signal process `pid`.
fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal the server");
}

/// Whether process `pid` is gone (or a zombie waiting to be reaped).
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| stat.contains(") Z "))
}

/// Two servers (reactor and threads) behind a real HAProxy sending PROXY v2 headers and
/// checking `/healthz`; `wrk` runs through it for 12 s while both are upgraded with
/// SIGUSR2, one after the other, then one is stopped with SIGTERM: no socket error, no
/// non-2xx response, and the servers saw wrk's address, not HAProxy's.
///
/// HAProxy connects to the servers from 127.0.0.3 (`source`), which alone is trusted, so
/// the client address a header names (wrk's, 127.0.0.1) differs from the kernel's peer.
/// Skipped, saying so, without `haproxy` or `wrk` (Debian packages, installed by .ci/run).
/// wrk is pinned to CPU 1 with `taskset` when it is there.
#[test]
fn a_fleet_behind_haproxy_is_upgraded_and_stopped_under_wrk_with_no_error() {
    let have = |tool: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if !have("haproxy") || !have("wrk") {
        println!("SKIPPED: haproxy or wrk is not installed (.ci/run installs both)");
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (front, a, b) = (free_port(), free_port(), free_port());
    let (metrics_a, metrics_b) = (free_port(), free_port());
    let start = |model: &str, port: u16, metrics: u16, name: &str| {
        ServeCommand::default()
            .addr(&format!("127.0.0.1:{port}"))
            .log("info,tcp_reactor::reactor::proxied=debug,tcp_reactor::threads::connection::admission=debug")
            .args(["--protocol", "http", "--model", model])
            .args(["--metrics", &format!("127.0.0.1:{metrics}")])
            .args(["--proxy-protocol-from", "127.0.0.3"])
            .args(["--stop-drain", "5", "--drain-timeout", "5"])
            .args(["--pid-file", dir.path().join(name).to_str().unwrap()])
            .spawn()
            .expect("a server starts")
    };
    let server_a = start("reactor", a, metrics_a, "a.pid");
    let server_b = start("threads", b, metrics_b, "b.pid");
    let config = format!(
        "global\n    maxconn 1000\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n    retries 3\n    option redispatch\n\
         frontend front\n    bind 127.0.0.1:{front}\n    default_backend fleet\n\
         backend fleet\n    balance roundrobin\n    option httpchk GET /healthz\n    source 127.0.0.3\n\
         \x20   server a 127.0.0.1:{a} send-proxy-v2 check port {metrics_a} inter 100ms fall 1 rise 2\n\
         \x20   server b 127.0.0.1:{b} send-proxy-v2 check port {metrics_b} inter 100ms fall 1 rise 2\n"
    );
    let config_path = dir.path().join("haproxy.cfg");
    std::fs::write(&config_path, config).expect("write the HAProxy configuration");
    let mut haproxy = std::process::Command::new("haproxy")
        .args(["-db", "-f", config_path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start haproxy");
    // The servers may still be starting: a refused connect means "not yet", not a failure.
    let healthy = |port: u16| {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        TcpStream::connect(addr).is_ok() && status_of(addr, "/healthz") == 200
    };
    fixtures::eventually("both servers healthy and HAProxy up", || {
        healthy(metrics_a) && healthy(metrics_b) && TcpStream::connect(("127.0.0.1", front)).is_ok()
    });
    // Let HAProxy's checks see both up (rise 2 at 100 ms).
    thread::sleep(Duration::from_millis(500));
    let mut wrk = if have("taskset") {
        let mut pinned = std::process::Command::new("taskset");
        pinned.args(["-c", "1", "wrk"]);
        pinned
    } else {
        std::process::Command::new("wrk")
    };
    let wrk = wrk
        .args([
            "-t1",
            "-c16",
            "-d12s",
            &format!("http://127.0.0.1:{front}/"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start wrk");
    let (a_pid, b_pid) = (server_a.pid() as i32, server_b.pid() as i32);
    thread::sleep(Duration::from_secs(2));
    signal(a_pid, nix::sys::signal::Signal::SIGUSR2);
    let (a_new, a_upgrade) = wait_for_successor(&dir.path().join("a.pid"), a_pid);
    thread::sleep(Duration::from_secs(2));
    signal(b_pid, nix::sys::signal::Signal::SIGUSR2);
    let (b_new, b_upgrade) = wait_for_successor(&dir.path().join("b.pid"), b_pid);
    thread::sleep(Duration::from_secs(2));
    signal(b_new, nix::sys::signal::Signal::SIGTERM);
    let out = wrk.wait_with_output().expect("wrk ends");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{report}");
    println!("upgrade a (reactor): {a_upgrade:?}; upgrade b (threads): {b_upgrade:?}");
    // The old processes exit once drained; the stopped one too.
    fixtures::eventually("the drained and stopped processes exit", || {
        gone(a_pid) && gone(b_pid) && gone(b_new)
    });
    let _ = haproxy.kill();
    let _ = haproxy.wait();
    let logs: Vec<String> = server_a
        .log_lines("PROXY header names")
        .into_iter()
        .chain(server_b.log_lines("PROXY header names"))
        .collect();
    signal(a_new, nix::sys::signal::Signal::SIGTERM);
    fixtures::eventually("the last server exits", || gone(a_new));
    drop((server_a, server_b));
    assert!(out.status.success(), "wrk failed: {report}");
    let requests: u64 = report
        .lines()
        .find_map(|line| line.trim().split_once(" requests in"))
        .and_then(|(n, _)| n.trim().parse().ok())
        .expect("wrk reports its requests");
    assert!(requests > 0, "{report}");
    assert!(!report.contains("Socket errors"), "{report}");
    assert!(!report.contains("Non-2xx"), "{report}");
    assert!(!logs.is_empty(), "no PROXY header was logged");
    for line in &logs {
        assert!(
            line.contains("127.0.0.3:") && line.contains("names 127.0.0.1:"),
            "{line}"
        );
    }
    println!(
        "fleet: {requests} requests, 0 errors, {} proxied connections logged",
        logs.len()
    );
}
