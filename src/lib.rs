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
//! - [`handler`] — the [`Handler`] trait a protocol implements, and its [`Context`].
//! - `reactor` — the event loop: poll, accept, dispatch, flush, timers, reap.
//! - `connection` — one client's socket, buffers and state; classifies I/O results.
//! - `mailbox` — queues for `send_to` between reactor workers.
//! - `spare` — spare output buffers, so idle connections own none.
//! - `timer` — deadlines for idle, linger and handler timers, a heap with lazy cancellation.
//! - `threads` — the thread-per-client model running the same handlers.
//! - [`server`] — the [`Server`] builder, [`Running`] handle, [`StopHandle`] and workers.
//! - [`config`], [`stats`] — limits in, counters out.
//! - `reason` — connection ids and the reasons a connection closes.
//! - [`protocols`] — echo, the tutorial's `seed` server, chat, HTTP/1.1 and a RESP
//!   key-value store.
//! - [`client`] — the tutorial's client.
//! - [`load`] — the load generator: many mio client connections against any echo server.

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod client;
pub mod config;
mod connection;
pub mod handler;
pub mod load;
mod mailbox;
pub mod protocols;
mod reactor;
mod reason;
pub mod server;
mod spare;
pub mod stats;
mod threads;
mod timer;

pub use config::{Config, WritePolicy};
pub use handler::{Context, Handler};
pub use reason::{CloseReason, ConnId};
pub use server::{Live, Model, Running, Server, StopHandle};
pub use stats::Stats;

/// The README's code examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
