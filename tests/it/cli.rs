//! The command line refuses limits that cannot work, with the library's message naming the
//! field, and a flag for a protocol other than the one served, before it listens.

use fixtures::process::ServeCommand;

/// Start `tcp-reactor serve <args>` and return why it did not start listening.
#[track_caller]
fn refusal(args: &[&str]) -> String {
    match ServeCommand::default().args(args).spawn() {
        Ok(server) => panic!("tcp-reactor serve {args:?} is listening on {}", server.addr),
        Err(err) => err.to_string(),
    }
}

#[test]
fn zero_workers_is_refused_by_name() {
    let why = refusal(&["--workers", "0"]);
    assert!(why.contains("exit status: 1"), "{why}");
    assert!(
        why.contains(
            "tcp-reactor: error: invalid configuration: workers must be greater than zero"
        ),
        "{why}"
    );
}

#[test]
fn watermarks_above_the_output_cap_are_refused_by_name() {
    let why = refusal(&[
        "--low-water",
        "1024",
        "--high-water",
        "2048",
        "--max-output",
        "1024",
    ]);
    assert!(why.contains("exit status: 1"), "{why}");
    assert!(
        why.contains("high_water (2048) must not exceed max_output (1024)"),
        "{why}"
    );
}

#[test]
fn flags_the_chosen_protocol_or_model_does_not_use_are_refused_by_name() {
    for (args, why) in [
        (
            &["--upstream", "127.0.0.1:1"][..],
            "--upstream is only used with --protocol proxy (not echo)",
        ),
        (
            &["--protocol", "http", "--upstream-retry", "5"],
            "--upstream-retry is only used with --protocol proxy (not http)",
        ),
        (
            &["--connect-timeout", "1"],
            "--connect-timeout is only used with --protocol proxy",
        ),
        (
            &["--max-store", "1000000"],
            "--max-store is only used with --protocol resp (not echo)",
        ),
        (
            &["--header-timeout", "5"],
            "--header-timeout is only used with --protocol http (not echo)",
        ),
        (
            &["--model", "threads", "--write-policy", "eager"],
            "--write-policy is only used with --model reactor",
        ),
        (
            &["--model", "threads", "--accept-budget", "4"],
            "--accept-budget is only used with --model reactor",
        ),
        (
            &["--write-policy", "eager", "--defer-min-events", "4"],
            "--defer-min-events is only used with --model reactor and --write-policy adaptive",
        ),
        (
            &["--handshake-timeout", "3"],
            "--handshake-timeout is only used with --tls-cert and --tls-key",
        ),
        (
            &["--unix-mode", "600"],
            "--unix-mode is only used with an --addr unix:PATH",
        ),
        (
            &["--step", "--model", "threads", "--metrics", "127.0.0.1:0"],
            "--step is only used with --model reactor",
        ),
    ] {
        let refused = refusal(args);
        assert!(refused.contains("exit status: 1"), "{args:?}: {refused}");
        assert!(
            refused.contains(&format!("tcp-reactor: error: {why}")),
            "{args:?}: {refused}"
        );
    }
    // The same flags where they are used: the server starts.
    for args in [
        &["--protocol", "http", "--header-timeout", "5"][..],
        &[
            "--write-policy",
            "adaptive",
            "--defer-min-events",
            "4",
            "--accept-budget",
            "4",
        ],
        &[
            "--protocol",
            "proxy",
            "--upstream",
            "127.0.0.1:1",
            "--connect-timeout",
            "1",
        ],
    ] {
        match ServeCommand::default().args(args).spawn() {
            Ok(server) => drop(server.stop()),
            Err(err) => panic!("tcp-reactor serve {args:?} did not start: {err}"),
        }
    }
}

/// Run `tcp-reactor <args>` to its end (bounded by [`fixtures::PATIENCE`]); returns its exit
/// status, stdout and stderr.
#[track_caller]
fn run_binary(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    use std::process::{Command, Stdio};
    let child = Command::new(env!("CARGO_BIN_EXE_tcp-reactor"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tcp-reactor");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(fixtures::PATIENCE) {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("waiting for tcp-reactor {args:?}: {e}"),
        Err(_) => panic!(
            "tcp-reactor {args:?} still runs after {:?}",
            fixtures::PATIENCE
        ),
    };
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Our echo server on a Unix socket in a fresh temporary directory (kept alive with it).
fn unix_echo() -> (tcp_reactor::Running, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("echo.sock");
    let running = tcp_reactor::Server::new(tcp_reactor::protocols::Echo)
        .listen([tcp_reactor::Listener::unix(&path)])
        .expect("listen on a Unix socket");
    (running, dir, format!("unix:{}", path.display()))
}

#[test]
fn the_client_resolves_a_host_name() {
    let running =
        fixtures::server::start(tcp_reactor::protocols::Echo, tcp_reactor::Model::Reactor);
    let addr = format!("localhost:{}", running.local_addr().port());
    let (status, stdout, stderr) = run_binary(&["client", "--addr", &addr, "--message", "hello"]);
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(stdout, "hello\n");
}

#[test]
fn the_client_speaks_over_a_unix_socket() {
    let (_running, _dir, addr) = unix_echo();
    let (status, stdout, stderr) =
        run_binary(&["client", "--addr", &addr, "--message", "over unix"]);
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(stdout, "over unix\n");
}

#[test]
fn an_empty_message_half_closes_and_the_client_ends_with_the_servers_close() {
    let running =
        fixtures::server::start(tcp_reactor::protocols::Echo, tcp_reactor::Model::Reactor);
    let addr = running.local_addr().to_string();
    let started = std::time::Instant::now();
    let (status, stdout, stderr) = run_binary(&["client", "--addr", &addr, "--message", ""]);
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(stdout, "\n", "nothing was echoed");
    assert!(
        stderr.contains("closed the connection without a reply"),
        "{stderr}"
    );
    // The server's EOF ended the wait, not the client's 5 s reply timeout.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let stats = fixtures::server::stop_checked(running);
    assert_eq!(stats.closed_by(tcp_reactor::CloseReason::Eof), 1, "{stats}");
    assert_eq!(stats.bytes_in, 0, "{stats}");
}

#[test]
fn the_client_refuses_an_address_without_a_port_with_the_accepted_forms() {
    let (status, _, stderr) = run_binary(&["client", "--addr", "localhost", "--message", "x"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("HOST:PORT"), "{stderr}");
    assert!(stderr.contains("unix:PATH"), "{stderr}");
}

#[test]
fn the_load_command_reaches_a_host_name_and_a_unix_socket() {
    let running =
        fixtures::server::start(tcp_reactor::protocols::Echo, tcp_reactor::Model::Reactor);
    let by_name = format!("localhost:{}", running.local_addr().port());
    let (_unix, _dir, by_path) = unix_echo();
    for addr in [&by_name, &by_path] {
        let (status, stdout, stderr) = run_binary(&[
            "load",
            "--addr",
            addr,
            "--connections",
            "3",
            "--messages",
            "90",
            "--json",
        ]);
        assert!(status.success(), "{addr}: {status}: {stderr}");
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
        assert_eq!(json["messages"], 90, "{addr}: {stdout}");
        assert_eq!(json["connected"], 3, "{addr}: {stdout}");
        assert!(
            json["addr"]
                .as_str()
                .is_some_and(|shown| shown.starts_with(addr.as_str())),
            "{stdout}"
        );
    }
}

#[test]
fn the_trace_log_names_connections_and_marks_each_turn() {
    let server = match ServeCommand::default().log("tcp_reactor=trace").spawn() {
        Ok(server) => server,
        Err(err) => panic!("cannot start tcp-reactor serve: {err}"),
    };
    let mut client = fixtures::client::connect(server.addr);
    fixtures::client::send(&mut client, b"hello");
    assert_eq!(fixtures::client::recv_exact(&mut client, 5), b"hello");
    drop(client);
    fixtures::eventually("the close is logged", || {
        server.log_lines_with("close connection 1 (") == 1
    });
    for line in [
        "event on listener 0: readable=true",
        "accept 127.0.0.1:",
        "as connection 1 (slot 0, token 4294967296)",
        "read 5 bytes from connection 1",
        "wrote 5 bytes to connection 1",
        "event on connection 1: readable=true writable=true read_closed=true",
        "turn 1: poll returned 1 event(s)",
        "turn 1 ended: 1 connection(s) open",
    ] {
        assert_eq!(server.log_lines_with(line), 1, "{line:?}");
    }
    // The bytes' event (with or without writability on the same one).
    assert!(server.log_lines_with("event on connection 1: readable=true") >= 2);
    // Every turn is opened and closed, and no event is named by a raw token.
    let opened = server.log_lines_with(": poll returned ");
    assert!(opened >= 3, "{opened} turns");
    assert_eq!(server.log_lines_with(" ended: "), opened);
    assert_eq!(server.log_lines_with("event 0x"), 0);
    // Only our own lines: `tcp_reactor=trace` leaves mio's out.
    assert_eq!(server.log_lines_with("mio::"), 0);
    drop(server.stop());
}
