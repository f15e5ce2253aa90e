//! The load generator against real echo servers on 127.0.0.1: it counts exactly what it
//! sends, and reports every wrong, missing or refused echo instead of ignoring it.
use std::process::ExitCode;

use fixtures::echo_servers::{Behaviour, closed_port, fixture_server};
use fixtures::process::{ServeCommand, ServerProcess, model_arg};
use tcp_reactor::Model;
use tcp_reactor::load::{self, LoadArgs, Report};

/// Load arguments for a short, count-bounded run against `addr`.
fn count_run(
    addr: std::net::SocketAddr,
    connections: usize,
    size: usize,
    pipeline: usize,
    messages: u64,
) -> LoadArgs {
    LoadArgs {
        addr: addr.into(),
        connections,
        size,
        pipeline,
        messages: Some(messages),
        timeout: Some(60.0),
        quiet: true,
        ..LoadArgs::default()
    }
}

#[track_caller]
fn run_ok(args: &LoadArgs) -> Report {
    match load::run(args) {
        Ok(report) => report,
        Err(e) => panic!("load run could not happen: {e}"),
    }
}

#[test]
fn every_message_sent_is_echoed_verified_and_counted_exactly() {
    let server = fixture_server(Behaviour::Echo);
    // 1003 messages over 7 connections does not divide evenly; 100 B is not a multiple of
    // the pattern's 8-byte words; pipelining makes echoes arrive in arbitrary pieces.
    let report = run_ok(&count_run(server.addr, 7, 100, 4, 1003));
    assert_eq!(report.error_count(), 0, "{:?}", report.failure_line());
    assert_eq!(report.connected, 7);
    assert_eq!(report.sent, 1003);
    assert_eq!(report.messages, 1003);
    assert_eq!(report.bytes, 1003 * 100);
    // Bounded by count: the rate is over the whole exchange.
    assert_eq!(report.rate_secs, report.elapsed_secs);
    assert!(report.latency_us.p50 > 0.0 && report.latency_us.max >= report.latency_us.p99);
    assert!(report.failure_line().is_none());
}

#[test]
fn large_messages_split_across_reads_are_verified() {
    let server = fixture_server(Behaviour::Echo);
    let report = run_ok(&count_run(server.addr, 2, 300_000, 2, 10));
    assert_eq!(report.error_count(), 0, "{:?}", report.failure_line());
    assert_eq!(report.messages, 10);
    assert_eq!(report.bytes, 10 * 300_000);
}

#[test]
fn a_flipped_byte_is_reported_as_a_mismatch() {
    // Byte 1000 of each connection's stream is byte 40 of message 15 (64 B each; message 0
    // is the uncounted warm-up) on its way back.
    let server = fixture_server(Behaviour::FlipByteAt(1000));
    let report = run_ok(&count_run(server.addr, 3, 64, 1, 300));
    assert_eq!(report.errors.mismatches, 3, "{report:?}");
    assert!(report.error_count() >= 3);
    // Each connection got 15 correct echoes before the corrupted one and none after; the
    // first was the uncounted warm-up.
    assert_eq!(report.messages, 3 * 14);
    let line = report.failure_line().unwrap_or_default();
    assert!(line.contains("3 mismatched"), "{line}");
    assert!(line.contains("message 15 byte 40"), "{line}");
}

#[test]
fn the_cli_entry_exits_non_zero_on_a_mismatch() {
    let server = fixture_server(Behaviour::FlipByteAt(10));
    let code = load::run_cli(count_run(server.addr, 1, 64, 1, 5));
    assert_eq!(code, ExitCode::FAILURE);
}

#[test]
fn the_cli_entry_exits_zero_on_a_clean_run() {
    let server = fixture_server(Behaviour::Echo);
    let code = load::run_cli(count_run(server.addr, 2, 64, 1, 20));
    assert_eq!(code, ExitCode::SUCCESS);
}

#[test]
fn a_server_closing_before_echoing_everything_is_reported() {
    let server = fixture_server(Behaviour::CloseAfter(640));
    let report = run_ok(&count_run(server.addr, 2, 64, 1, 100));
    // Each connection sees the close either as EOF on read or as a reset on its next write.
    assert_eq!(
        report.errors.closed_early + report.errors.io,
        2,
        "{report:?}"
    );
    // Ten echoes per connection, the first being the uncounted warm-up.
    assert_eq!(report.messages, 2 * 9);
    assert!(!report.is_clean());
}

#[test]
fn a_server_that_never_echoes_is_reported_and_the_run_still_ends() {
    let server = fixture_server(Behaviour::Swallow);
    let mut args = count_run(server.addr, 3, 64, 1, 30);
    args.timeout = Some(1.0);
    let report = run_ok(&args);
    assert_eq!(report.connected, 3);
    assert_eq!(report.errors.timed_out, 3, "{report:?}");
    assert_eq!(report.messages, 0);
    assert!(
        report
            .failure_line()
            .unwrap_or_default()
            .contains("3 timed out")
    );
}

#[test]
fn refused_connections_are_counted_as_connect_failures() {
    let report = run_ok(&count_run(closed_port(), 4, 64, 1, 40));
    assert_eq!(report.errors.connect_failures, 4);
    assert_eq!(report.connected, 0);
    assert_eq!(report.messages, 0);
    assert!(
        report
            .failure_line()
            .unwrap_or_default()
            .contains("4 connect failure")
    );
}

#[test]
fn a_duration_run_stops_by_itself_and_is_clean() {
    let server = fixture_server(Behaviour::Echo);
    let args = LoadArgs {
        addr: server.addr.into(),
        connections: 5,
        duration: Some(0.3),
        ramp: 0.1,
        quiet: true,
        ..LoadArgs::default()
    };
    let report = run_ok(&args);
    assert_eq!(report.error_count(), 0, "{:?}", report.failure_line());
    assert!(report.messages > 0);
    assert_eq!(
        report.messages, report.sent,
        "every message sent before the end is awaited"
    );
    // The rate is taken over the 0.3 s window, not the drain after it.
    assert!((report.rate_secs - 0.3).abs() < 1e-6, "{report:?}");
    assert!(report.rate_secs <= report.elapsed_secs);
}

#[test]
fn hundreds_of_connections_on_two_threads_all_get_served() {
    let server = fixture_server(Behaviour::Echo);
    let mut args = count_run(server.addr, 500, 64, 1, 2000);
    args.threads = Some(2);
    let report = run_ok(&args);
    assert_eq!(report.error_count(), 0, "{:?}", report.failure_line());
    assert_eq!(report.connected, 500);
    assert_eq!(report.messages, 2000);
    assert_eq!(report.threads, 2);
}

#[test]
fn idle_connections_are_held_after_one_echo_each() {
    let server = fixture_server(Behaviour::Echo);
    let idle = match load::idle::open(server.addr, 50, std::time::Duration::from_secs(20)) {
        Ok(idle) => idle,
        Err(e) => panic!("idle open failed: {e}"),
    };
    assert_eq!(idle.held(), 50);
    assert_eq!(idle.failed(), 0);
}

#[test]
fn the_json_report_has_the_measured_fields() {
    let server = fixture_server(Behaviour::Echo);
    let report = run_ok(&count_run(server.addr, 1, 64, 1, 10));
    let json = serde_json::to_value(&report).unwrap_or_default();
    assert_eq!(json["messages"], 10);
    assert!(json["latency_us"]["p999"].is_number());
    assert_eq!(json["errors"]["mismatches"], 0);
}

/// Our echo server under `model` in its own process, so that thousands of connections fit
/// in the descriptor limit of each side.
#[track_caller]
fn echo_process(model: Model) -> ServerProcess {
    let command = ServeCommand::default()
        .args(["--protocol", "echo", "--model", model_arg(model)])
        .args(["--max-connections", "15000"])
        .log("warn");
    match command.spawn() {
        Ok(server) => server,
        Err(err) => panic!("cannot start the {model:?} echo server: {err}"),
    }
}

#[test]
fn our_reactor_echoes_every_message_of_a_thousand_connections() {
    let server = echo_process(Model::Reactor);
    let mut args = count_run(server.addr, 1000, 64, 2, 20_000);
    args.threads = Some(2);
    let report = run_ok(&args);
    assert_eq!(report.error_count(), 0, "{:?}", report.failure_line());
    assert_eq!(report.connected, 1000);
    assert_eq!(report.messages, 20_000);
    assert_eq!(report.bytes, 20_000 * 64);
}

#[test]
fn our_threads_model_echoes_every_message_of_hundreds_of_connections() {
    let server = echo_process(Model::Threads);
    let mut args = count_run(server.addr, 300, 100, 2, 6_000);
    args.threads = Some(2);
    let report = run_ok(&args);
    assert_eq!(report.error_count(), 0, "{:?}", report.failure_line());
    assert_eq!(report.connected, 300);
    assert_eq!(report.messages, 6_000);
}

/// `tcp-reactor load ...` against `addr`, returning the exit status and stderr.
fn load_binary(addr: std::net::SocketAddr, extra: &[&str]) -> (std::process::ExitStatus, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tcp-reactor"))
        .args(["load", "--addr", &addr.to_string(), "--quiet"])
        .args(extra)
        .output();
    match output {
        Ok(out) => (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Err(e) => panic!("could not run tcp-reactor load: {e}"),
    }
}

#[test]
fn the_load_command_exits_non_zero_with_one_line_on_a_mismatch() {
    let server = fixture_server(Behaviour::FlipByteAt(100));
    let (status, stderr) = load_binary(server.addr, &["--connections", "2", "--messages", "50"]);
    assert!(!status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("2 mismatched"), "{stderr}");
}

#[test]
fn the_load_command_exits_zero_and_prints_json_on_a_clean_run() {
    let server = echo_process(Model::Reactor);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tcp-reactor"))
        .args([
            "load",
            "--addr",
            &server.addr.to_string(),
            "--messages",
            "300",
            "--json",
        ])
        .output();
    let Ok(out) = output else {
        panic!("could not run tcp-reactor load")
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(json["messages"], 300);
    assert_eq!(json["errors"]["mismatches"], 0);
}

#[test]
fn impossible_arguments_are_refused_before_any_connection() {
    let too_much = LoadArgs {
        size: 16 * 1024 * 1024,
        pipeline: 8,
        ..LoadArgs::default()
    };
    let negative = LoadArgs {
        duration: Some(-1.0),
        ..LoadArgs::default()
    };
    for args in [too_much, negative] {
        match load::run(&args) {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput),
            Ok(report) => panic!("accepted {args:?}: {report:?}"),
        }
    }
}

/// A duration run whose server stops gracefully after the exchange has begun: the server
/// answers what has arrived, then closes each connection (EOF right behind the last
/// echo). Every connection must be reported as closed early, none as timed out, and the
/// run must end when the server closed it, not at its duration or timeout.
fn a_server_stopping_mid_run_is_reported_as_closed_early_at_once(model: Model) {
    const CONNECTIONS: usize = 20;
    let running = fixtures::server::serve(
        tcp_reactor::protocols::Echo,
        fixtures::server::config(),
        model,
    );
    let args = LoadArgs {
        addr: running.local_addr().into(),
        connections: CONNECTIONS,
        // Far longer than the test: the run may only end because the server closed.
        duration: Some(30.0),
        timeout: Some(40.0),
        threads: Some(2),
        quiet: true,
        ..LoadArgs::default()
    };
    let load = std::thread::spawn(move || load::run(&args));
    // Mid-run: every connection accepted, then a moment for the warm-up echoes (a few
    // milliseconds) and for messages to flow. The threads model publishes its byte counts
    // only as clients end, so the open connections are what both models show live.
    fixtures::eventually("every load connection is accepted", || {
        running.connections() == CONNECTIONS as u64
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    running.stop().expect("the server stops");
    let report = match load.join() {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => panic!("load run could not happen: {e}"),
        Err(_) => panic!("the load thread panicked"),
    };
    assert_eq!(report.connected, CONNECTIONS as u64, "{report:?}");
    assert_eq!(report.errors.timed_out, 0, "{report:?}");
    assert_eq!(report.errors.closed_early, CONNECTIONS as u64, "{report:?}");
    assert_eq!(report.error_count(), CONNECTIONS as u64, "{report:?}");
    assert!(report.messages > 0, "{report:?}");
    // The server closed them all within its linger: the run did not wait for its end.
    assert!(report.elapsed_secs < 30.0, "{report:?}");
    let line = report.failure_line().unwrap_or_default();
    assert!(line.contains("20 closed early"), "{line}");
}

fixtures::for_each_model!(a_server_stopping_mid_run_is_reported_as_closed_early_at_once);

/// `tcp-reactor load` against our echo server with a run far longer than the test, sent
/// SIGINT once every connection is exchanging messages; returns the exit status, stdout
/// and stderr.
fn interrupted_load(extra: &[&str]) -> (std::process::ExitStatus, String, String) {
    use std::process::{Command, Stdio};
    const CONNECTIONS: u64 = 4;
    let running = fixtures::server::start(tcp_reactor::protocols::Echo, Model::Reactor);
    let child = Command::new(env!("CARGO_BIN_EXE_tcp-reactor"))
        .args(["load", "--addr", &running.local_addr().to_string()])
        .args(["--connections", &CONNECTIONS.to_string()])
        .args(["--duration", "60", "--timeout", "90", "--quiet"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tcp-reactor load");
    fixtures::eventually("every load connection is accepted", || {
        running.connections() == CONNECTIONS
    });
    // Past the warm-up echoes, with messages flowing.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT the load");
    // Bounded: the output arrives on a thread, and the test fails if it takes too long.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(fixtures::PATIENCE) {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("waiting for tcp-reactor load: {e}"),
        Err(_) => panic!(
            "tcp-reactor load still runs {:?} after SIGINT",
            fixtures::PATIENCE
        ),
    };
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn ctrl_c_on_the_load_command_prints_a_partial_report_and_exits_130() {
    let (status, stdout, stderr) = interrupted_load(&[]);
    assert_eq!(status.code(), Some(130), "{status}; {stdout}{stderr}");
    assert!(
        stdout.contains("interrupted        yes: a partial report"),
        "{stdout}"
    );
    // What was measured before the signal is in the report, and nothing is an error.
    let echoed = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("messages"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok());
    assert!(echoed.is_some_and(|n| n > 0), "{stdout}");
    assert!(
        stdout.contains("0 connect, 0 mismatch, 0 closed early, 0 I/O, 0 timed out"),
        "{stdout}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
}

#[test]
fn ctrl_c_on_the_load_command_marks_the_json_report_interrupted() {
    let (status, stdout, stderr) = interrupted_load(&["--json"]);
    assert_eq!(status.code(), Some(130), "{status}; {stdout}{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
    assert_eq!(json["interrupted"], true, "{stdout}");
    assert!(json["messages"].as_u64().is_some_and(|n| n > 0), "{stdout}");
    assert_eq!(json["errors"]["timed_out"], 0, "{stdout}");
}
