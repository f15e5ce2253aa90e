//! Servers under test, in this process: started on 127.0.0.1:0 under a chosen model, and
//! stopped with a check that every connection was accounted for.

use std::net::SocketAddr;
use std::time::Duration;

use tcp_reactor::{Config, Handler, Model, Running, Server, Stats};

use crate::{PATIENCE, wait_until};

/// Every model a behavioural test runs against: the same assertions hold for both.
pub const MODELS: &[Model] = &[Model::Reactor, Model::Threads];

/// IPv4 loopback, port 0: the kernel picks a free port.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Default limits with a short linger, so that stopping a server with stuck clients is quick.
pub fn config() -> Config {
    Config::default().with_linger(Duration::from_millis(500))
}

/// Log to the test's output when `RUST_LOG` asks for it.
fn init_logs() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// Start `handler` under `model` with default limits on a free loopback port.
#[track_caller]
pub fn start<H: Handler>(handler: H, model: Model) -> Running {
    serve(handler, Config::default(), model)
}

/// Start `handler` under `model` with `config` on a free loopback port.
#[track_caller]
pub fn serve<H: Handler>(handler: H, config: Config, model: Model) -> Running {
    start_server(Server::new(handler), model, config)
}

/// Start a prepared server (e.g. from `Server::from_arc`, or with workers) on a free
/// loopback port.
#[track_caller]
pub fn start_server<H: Handler>(server: Server<H>, model: Model, config: Config) -> Running {
    init_logs();
    match server.model(model).config(config).bind(loopback()) {
        Ok(running) => running,
        Err(err) => panic!("cannot start a {model:?} server: {err}"),
    }
}

/// Stop `running`, check that every accepted connection was closed and counted, and return
/// the final stats.
#[track_caller]
pub fn stop_checked(running: Running) -> Stats {
    let stats = match running.stop() {
        Ok(stats) => stats,
        Err(err) => panic!("server failed: {err}"),
    };
    assert_eq!(
        stats.accepted,
        stats.closed_total(),
        "every accepted connection is closed exactly once: {stats}"
    );
    stats
}

/// Wait until `running` has exactly `n` connections open, or fail.
#[track_caller]
pub fn wait_connections(running: &Running, n: u64) {
    assert!(
        wait_until(PATIENCE, || running.connections() == n),
        "expected {n} open connections, the server has {}",
        running.connections()
    );
}
