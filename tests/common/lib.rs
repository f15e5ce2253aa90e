//! Fixtures shared by tcp-reactor's integration tests and its benchmark: one crate, so that
//! every test and the bench start servers, talk to them and read `/proc` the same way.
//!
//! - [`server`] — servers on 127.0.0.1:0 under a chosen model, and checked stops;
//! - [`client`] — blocking client sockets with deadlines, and assertions on what arrives;
//! - [`handlers`] — small handlers that each exercise one part of the handler contract;
//! - [`process`] — the `tcp-reactor serve` binary as a subprocess;
//! - [`procfs`] — a process's memory, threads and CPU time from `/proc`;
//! - [`echo_servers`] — deliberately simple, or deliberately broken, echo servers to test
//!   the load generator against.
//!
//! Every helper that can block has a deadline ([`PATIENCE`]), so a broken server fails a
//! test instead of hanging it; helpers that assert are `#[track_caller]`, so a failure
//! points at the test's line. Every behavioural test is written once and run against both
//! models with [`for_each_model!`].

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod client;
pub mod echo_servers;
pub mod handlers;
pub mod process;
pub mod procfs;
pub mod server;

use std::thread;
use std::time::{Duration, Instant};

/// Longest any single step of a test may wait before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Generates, for each named test function `fn name(model: Model)`, a `#[test]` per model:
/// `reactor::name` and `threads::name` (so `cargo test threads::` runs one model).
#[macro_export]
macro_rules! for_each_model {
    ($($name:ident),* $(,)?) => {
        mod reactor {
            $(
                #[test]
                fn $name() {
                    super::$name(tcp_reactor::Model::Reactor);
                }
            )*
        }
        mod threads {
            $(
                #[test]
                fn $name() {
                    super::$name(tcp_reactor::Model::Threads);
                }
            )*
        }
    };
}

/// Poll `condition` every 5 ms until it holds or `timeout` passes; true if it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Poll `condition` until it holds; fail after [`PATIENCE`] with `what`.
#[track_caller]
pub fn eventually(what: &str, condition: impl FnMut() -> bool) {
    assert!(
        wait_until(PATIENCE, condition),
        "timed out waiting until {what}"
    );
}
