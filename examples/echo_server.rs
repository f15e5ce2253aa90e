//! The smallest useful embedding: an echo server on 127.0.0.1:8866.
//!
//! Run with `cargo run --example echo_server`, then `nc 127.0.0.1 8866`.
//! Add `RUST_LOG=tcp_reactor=trace` to watch every turn, event, accept, read, write and
//! close (plain `RUST_LOG=trace` adds mio's own lines).

use tcp_reactor::{Server, protocols::Echo};

fn main() -> std::io::Result<()> {
    env_logger::init();
    let running = Server::new(Echo).bind("127.0.0.1:8866".parse().expect("an address"))?;
    println!("echo server listening on {}", running.local_addr());
    let stats = running.wait()?;
    println!("{stats}");
    Ok(())
}
