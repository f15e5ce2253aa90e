//! The tutorial's server: one message in, `hahaha` out, then close. Checked from Rust
//! under both models, and with the tutorial's own Python client against the binary.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;

use tcp_reactor::protocols::Seed;
use tcp_reactor::{CloseReason, Model};

use common::*;

for_each_model!(
    seed_replies_hahaha_and_closes,
    seed_serves_many_clients_one_after_another,
    the_tutorial_python_client_gets_hahaha_from_the_binary,
);

fn seed_replies_hahaha_and_closes(model: Model) {
    let running = start(Seed, model);
    let mut client = connect(running.local_addr());
    send(&mut client, "你好, hello".as_bytes());
    assert_eq!(recv_to_end(&mut client), b"hahaha");
    // The server lingers until this client closes too (or the linger timeout).
    drop(client);
    wait_for_connections(&running, 0);
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(stats.closed_by(CloseReason::Handler), 1, "{stats}");
}

fn seed_serves_many_clients_one_after_another(model: Model) {
    let running = start(Seed, model);
    for i in 0..20 {
        let mut client = connect(running.local_addr());
        send(&mut client, format!("message {i}").as_bytes());
        assert_eq!(recv_to_end(&mut client), b"hahaha");
    }
    wait_for_connections(&running, 0);
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(stats.accepted, 20);
    assert_eq!(stats.bytes_out, 20 * 6);
}

/// The client from the tutorial, with its prompts replaced by arguments.
const PYTHON_CLIENT: &str = r#"
import socket, sys
tcp_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp_socket.connect((sys.argv[1], int(sys.argv[2])))
tcp_socket.send(sys.argv[3].encode("utf-8"))
recv_data = tcp_socket.recv(1024)
print(recv_data.decode("utf-8"))
tcp_socket.close()
"#;

/// Kills the server process when the test ends, however it ends.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Find a `127.0.0.1:port` in a line of the server's output.
fn find_addr(line: &str) -> Option<SocketAddr> {
    line.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .filter_map(|word| word.trim_end_matches(['.', ';']).parse().ok())
        .find(|addr: &SocketAddr| addr.ip().is_loopback())
}

fn the_tutorial_python_client_gets_hahaha_from_the_binary(model: Model) {
    let model_name = match model {
        Model::Reactor => "reactor",
        Model::Threads => "threads",
        other => panic!("no command-line name for {other:?}"),
    };
    let child = Command::new(env!("CARGO_BIN_EXE_tcp-reactor"))
        .args(["serve", "--protocol", "seed", "--model", model_name])
        .args(["--addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the tcp-reactor binary");
    let mut server = ServerProcess(child);
    // The bound address is printed on stdout or stderr; the log goes to stderr.
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let stdout = server.0.stdout.take().expect("piped stdout");
    let stderr = server.0.stderr.take().expect("piped stderr");
    for pipe in [Box::new(stdout) as Box<dyn Read + Send>, Box::new(stderr)] {
        let lines_tx = lines_tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
    }
    // Only the readers hold senders now: when the server exits, the channel closes.
    drop(lines_tx);
    let mut seen = Vec::new();
    let addr = loop {
        match lines_rx.recv_timeout(PATIENCE) {
            Ok(line) => match find_addr(&line) {
                Some(addr) => break addr,
                None => seen.push(line),
            },
            Err(err) => panic!("the server printed no address ({err}); its output: {seen:#?}"),
        }
    };
    let output = Command::new("python3")
        .args([
            "-c",
            PYTHON_CLIENT,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            "hello",
        ])
        .output()
        .expect("run python3");
    assert!(output.status.success(), "python client failed: {output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim_end(), "hahaha");
    let logged = "接收到的数据:hello";
    loop {
        match lines_rx.recv_timeout(PATIENCE) {
            Ok(line) if line.contains(logged) => break,
            Ok(line) => seen.push(line),
            Err(err) => panic!("the server never logged {logged:?} ({err}); output: {seen:#?}"),
        }
    }
}
