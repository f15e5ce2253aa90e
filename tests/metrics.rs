//! Live statistics and the Prometheus endpoint: after known traffic, `Running::stats()`
//! and a scrape of `/metrics` (parsed here) report the open connections, bytes and closes
//! by reason that the traffic made; `promtool check metrics` accepts the scrape.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use fixtures::client::{connect, expect_reply};
use fixtures::process::{ServerProcess, stat};
use fixtures::server::start;
use fixtures::{eventually, for_each_model};
use tcp_reactor::protocols::Echo;
use tcp_reactor::{CloseReason, Model, metrics};

for_each_model!(metrics_report_known_traffic);

/// One scrape of `GET /metrics` at `addr`: the status line and the body.
fn scrape(addr: SocketAddr) -> (String, String) {
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("send the scrape");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the scrape");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    (head.to_string(), body.to_string())
}

/// The samples of an exposition: `name{labels}` to value.
fn samples(body: &str) -> HashMap<String, u64> {
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Sum of every sample of `name` (all label values).
fn sum(samples: &HashMap<String, u64>, name: &str) -> u64 {
    samples
        .iter()
        .filter(|(key, _)| key.as_str() == name || key.starts_with(&format!("{name}{{")))
        .map(|(_, value)| value)
        .sum()
}

/// Three echo clients each send 100 bytes; one leaves. The live stats and the scrape
/// say: 2 open, 3 accepted, 300 bytes each way, 1 closed by EOF.
fn metrics_report_known_traffic(model: Model) {
    let running = start(Echo, model);
    let endpoint = metrics::serve("127.0.0.1:0".parse().expect("addr"), running.live_stats())
        .expect("serve metrics");
    let payload = [b'm'; 100];
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(running.local_addr())).collect();
    for client in &mut clients {
        client.write_all(&payload).expect("send");
        expect_reply(client, &payload);
    }
    let leaving = clients.pop().expect("a client");
    leaving.shutdown(Shutdown::Write).expect("half-close");
    let mut rest = Vec::new();
    let _ = (&leaving).read_to_end(&mut rest);
    // Under the threads model a client's bytes count once it has closed: the bytes are
    // checked below, once every client has gone.
    eventually("the close is published", || {
        running.stats().closed_by(CloseReason::Eof) == 1
    });
    // A threads-model client publishes its close just before it leaves the gauges.
    eventually("two connections open", || running.connections() == 2);
    let stats = running.stats();
    assert_eq!(stats.accepted, 3);
    let (head, body) = scrape(endpoint.local_addr());
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("text/plain; version=0.0.4"),
        "content type: {head}"
    );
    let found = samples(&body);
    assert_eq!(found["tcp_reactor_connections_open"], 2, "{body}");
    assert_eq!(sum(&found, "tcp_reactor_accepted_total"), 3, "{body}");
    assert_eq!(
        found["tcp_reactor_closed_total{reason=\"eof\"}"], 1,
        "{body}"
    );
    assert_eq!(sum(&found, "tcp_reactor_closed_total"), 1, "{body}");
    // Idle clients may keep small buffers (up to 16 KiB each way) for their next request.
    assert!(
        found["tcp_reactor_buffered_bytes"] <= 2 * 32 * 1024,
        "{body}"
    );
    drop(clients);
    // A threads-model client publishes its close just before it leaves the gauges: wait for
    // both.
    eventually("every close is published", || {
        running.stats().closed_total() == 3 && running.connections() == 0
    });
    let (_, body) = scrape(endpoint.local_addr());
    let found = samples(&body);
    assert_eq!(
        sum(&found, "tcp_reactor_received_bytes_total"),
        300,
        "{body}"
    );
    assert_eq!(sum(&found, "tcp_reactor_sent_bytes_total"), 300, "{body}");
    assert_eq!(found["tcp_reactor_connections_open"], 0, "{body}");
    if model == Model::Reactor {
        assert!(sum(&found, "tcp_reactor_polls_total") > 0, "{body}");
        assert!(sum(&found, "tcp_reactor_events_total") > 0, "{body}");
    }
    promtool_accepts(&body);
    let (head, _) = {
        let mut stream = connect(endpoint.local_addr());
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("send");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read");
        (reply, ())
    };
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    endpoint.stop();
    let total = running.stop().expect("stop");
    assert_eq!(total.bytes_in, 300);
}

/// `promtool check metrics` accepts the exposition; skipped, saying so, without promtool.
fn promtool_accepts(body: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("SKIPPED promtool check: promtool is not installed (Debian package prometheus)");
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(body.as_bytes()).expect("feed promtool");
    }
    let out = child.wait_with_output().expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check metrics rejected the scrape:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `serve --metrics ADDR --stats-interval SECS`: the binary serves the scrape on its own
/// listener and logs the summary line.
#[test]
fn serve_exposes_metrics_and_logs_a_summary() {
    // A free port for the endpoint: bound, read, released (the CLI takes an address).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let server = ServerProcess::spawn(
        &["--metrics", &metrics_addr, "--stats-interval", "0.2"],
        None,
    );
    let mut client = connect(server.addr);
    client.write_all(b"hello").expect("send");
    expect_reply(&mut client, b"hello");
    let addr: SocketAddr = metrics_addr.parse().expect("addr");
    eventually("the endpoint answers", || TcpStream::connect(addr).is_ok());
    eventually("the scrape counts the client", || {
        let found = samples(&scrape(addr).1);
        found.get("tcp_reactor_connections_open") == Some(&1)
            && sum(&found, "tcp_reactor_received_bytes_total") == 5
    });
    eventually("a summary line is logged", || {
        server.log_lines_with("connections 1 | accepted/s") > 0
    });
    drop(client);
    let stats = server.stop();
    assert_eq!(stat(&stats, "accepted"), 1, "{stats:?}");
}

/// `serve --help` shows the budget, the deadlines and the observers with their defaults.
#[test]
fn serve_help_shows_the_budget_deadlines_and_observers() {
    let out = Command::new(env!("CARGO_BIN_EXE_tcp-reactor"))
        .args(["serve", "--help"])
        .output()
        .expect("run serve --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--max-buffered <MAX_BUFFERED>",
        "[default: 268435456]",
        "--idle-timeout",
        "75 for http",
        "--header-timeout <HEADER_TIMEOUT>",
        "[default: 60]",
        "--stats-interval",
        "--metrics <ADDR>",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag:?}:\n{help}");
    }
}
