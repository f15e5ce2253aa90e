//! The tutorial's server: one message in, `hahaha` out, then close. Checked from Rust
//! under both models, and with the tutorial's own Python client against the binary.

use std::process::Command;

use fixtures::client::{connect, recv_to_end, send};
use fixtures::process::{ServerProcess, model_arg};
use fixtures::server::{start, wait_connections};
use fixtures::{PATIENCE, for_each_model, wait_until};
use tcp_reactor::protocols::Seed;
use tcp_reactor::{CloseReason, Model};

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
    wait_connections(&running, 0);
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
    wait_connections(&running, 0);
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

fn the_tutorial_python_client_gets_hahaha_from_the_binary(model: Model) {
    let server = ServerProcess::spawn(&["--protocol", "seed", "--model", model_arg(model)], None);
    let addr = server.addr;
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
    assert!(
        wait_until(PATIENCE, || server.log_lines_with(logged) > 0),
        "the server never logged {logged:?}"
    );
}
