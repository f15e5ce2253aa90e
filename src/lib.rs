//! # tcp-reactor
//!
//! A single-threaded, event-driven TCP server core on `mio`: one thread, one `mio::Poll`
//! (epoll on Linux, edge-triggered), a `slab` of connections with their own read and write
//! buffers. One thread serves thousands of clients, and a client is dropped when its read
//! returns 0: the peer has closed.
//!
//! The same protocol code also runs under a thread-per-client model, so the two can be
//! compared fairly.
//!
//! # The loop
//!
//! A blocking server waits in `accept` or `recv` for *one* socket. The reactor instead asks
//! the kernel "which of my sockets can make progress?" (`poll`) and then does only the work
//! that will not block:
//!
//! 1. **poll** — wait for readiness events, or until the next timer is due;
//! 2. **accept** — take new clients from the listener, up to a budget per turn;
//! 3. **dispatch** — for each readable connection, read into a buffer and hand the bytes to
//!    the [`Handler`], which queues output; a read of 0 bytes means the client has gone;
//! 4. **flush** — write queued output until the kernel buffer is full (`WouldBlock`);
//! 5. **expire timers** — idle clients, lingering closes, handler timers;
//! 6. **reap** — free the slab slot of every connection that finished.
//!
//! # Layout
//!
//! Bottom up; each layer knows only the ones below it.
//!
//! - [`handler`] — the [`Handler`] trait a protocol implements, and its [`Context`].
//! - [`config`], [`stats`], `reason` — limits in, counters out, connection ids and the
//!   reasons a connection closes.
//! - `rules` — what both models do alike, written once: feeding the handler, the caps and
//!   the high-water pause, a callback's timer and close requests, accept-error classes,
//!   refusing a client, classifying a read.
//! - `worker` — what every worker is given (its setup, the server-wide gauges).
//! - `reactor/` — the event loop: `mod.rs` is the loop itself, one named step per line;
//!   `accept`, `io_path`, `lifecycle` (a connection's phases), `mail` (cross-worker
//!   messages), `timer` and `connection` each own one job.
//! - `threads/` — the thread-per-client model running the same handlers: the `accept`
//!   thread, the `client` thread, the `peer` its writes go through, the `registry`.
//! - [`listener`] — where a server listens: TCP addresses, Unix socket paths (stale files,
//!   permissions), sockets handed in, inherited descriptors (`LISTEN_FDS`), and the binary
//!   upgrade that hands them to a new process; [`PeerAddr`] (`peer_addr`) says who a
//!   client is on either kind.
//! - [`server`] — on top: the [`Server`] builder, [`Running`] handle and [`StopHandle`];
//!   chooses a model and starts its workers. Nothing below imports it.
//! - [`protocols`] — echo, the tutorial's `seed` server, chat, HTTP/1.1 and a RESP
//!   key-value store.
//! - [`client`] — the tutorial's client.
//! - [`load`] — the load generator: many mio client connections against any echo server.

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod client;
pub mod config;
pub mod handler;
pub mod listener;
pub mod load;
mod peer_addr;
pub mod protocols;
mod reactor;
mod reason;
mod rules;
pub mod server;
pub mod stats;
mod threads;
mod worker;

pub use config::Config;
pub use handler::{Context, Handler};
pub use listener::{ListenAddr, Listener};
pub use peer_addr::{PeerAddr, UnixPeer};
pub use reason::{CloseReason, ConnId};
pub use server::{Model, Running, Server, StopHandle};
pub use stats::Stats;

/// The README's code examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
