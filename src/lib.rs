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
//! # Linux only
//!
//! The crate builds for Linux and relies on Linux semantics that other Unix kernels do not
//! share:
//!
//! - **epoll, edge-triggered**: the reactor reads and writes until `WouldBlock` and counts on
//!   a new edge when data arrives after a short read, which is how Linux's epoll behaves
//!   (mio uses kqueue elsewhere, with different wake-up rules the loop was not tested on);
//! - **`POLLRDHUP`**: the thread-per-client model sees that a peer has finished sending
//!   without reading, so input it has not consumed yet cannot hide the EOF;
//! - **`MSG_NOSIGNAL`**: writes to a reset peer return `EPIPE` instead of raising `SIGPIPE`,
//!   so an embedding program whose `SIGPIPE` is at its default is not killed;
//! - **`SO_REUSEPORT`** with the kernel spreading connections between the listeners of
//!   several workers.
//!
//! # Features
//!
//! - `cli` (default): the `tcp-reactor` binary, the tutorial's `client` and the `load`
//!   generator, with their dependencies (clap, env_logger, hdrhistogram, indicatif,
//!   rlimit, serde, serde_json, signal-hook). An embedder that only serves depends on
//!   `tcp-reactor = { version = "0.1", default-features = false }` and gets the server core
//!   and the [`protocols`] alone.
//! - `fuzzing`: what the fuzz targets in `fuzz/` drive (a socket-free connection, the RESP
//!   framer), in a module hidden from these docs; not for embedders.
//!
//! # Layout
//!
//! Bottom up; each layer knows only the ones below it.
//!
//! - `handler` — the [`Handler`] trait a protocol implements, and its [`Context`].
//! - `config`, `stats`, `reason` — limits in ([`Config`], checked by
//!   [`Config::validate`]), counters out ([`Stats`]), connection ids and the reasons a
//!   connection closes.
//! - `rules` — what both models do alike, written once: feeding the handler, the caps and
//!   the high-water pause, a callback's timer and close requests, accept-error classes,
//!   refusing a client, classifying a read.
//! - `worker` — what every worker is given (its setup, the server-wide gauges).
//! - `reactor/` — the event loop: `mod.rs` is the loop itself, one named step per line;
//!   `accept`, `io_path`, `lifecycle` (a connection's phases), `mail` (cross-worker
//!   messages), `timer` and `connection` each own one job; `outbound` dials connections
//!   for handlers and carries out their requests by id (pause, resume, shut down, reset);
//!   `driven` is the [`EventLoop`] turned by the caller and the [`Poster`] into it.
//! - `handler/reach` — the [`Context`] calls that reach connections by id (`connect`,
//!   `pause_reading`, `shutdown_write`, `reset_conn`, …).
//!   messages), `timer` and `connection` each own one job.
//! - `tls` — TLS below the handler (feature `tls`): a rustls session (server or client)
//!   over any nonblocking stream, offering a socket's calls in plaintext.
//! - `transport` — a nonblocking connection's bytes go through the socket or `tls`; the
//!   reactor's connections and the load generator's hold one. [`tls_config`] builds rustls
//!   configurations from PEM files.
//! - `threads/` — the thread-per-client model running the same handlers: the `accept`
//!   thread, the `client` thread (`client/dial` for a connection a handler dials, and the
//!   half-close), the `peer` its writes go through, the `registry`, and `reach` (what a
//!   callback asks of connections by id).
//! - `budget` — the server-wide budget for buffered bytes: its accounting and the
//!   pressure at which reads pause, the largest holders close and accepting slows; each
//!   model applies it in its own `memory` file (`reactor/memory.rs`, `threads/memory.rs`).
//! - [`metrics`] — live [`metrics::Snapshot`]s of a running server, their Prometheus
//!   text exposition, and a `/metrics` endpoint on a listener of its own.
//! - `listener` — where a server listens ([`Listener`], [`ListenAddr`]): TCP addresses,
//!   Unix socket paths (stale files, permissions), sockets handed in, inherited
//!   descriptors ([`activation`], `LISTEN_FDS`), and the binary [`upgrade`] that hands them
//!   to a new process; [`PeerAddr`] says who a client is on either kind (a dialed
//!   connection's is always TCP).
//! - `server` — on top: the [`Server`] builder, [`Running`] handle and [`StopHandle`];
//!   chooses a model and starts its workers. Nothing below imports it.
//! - [`protocols`] — echo, the tutorial's `seed` server, chat, HTTP/1.1, a RESP
//!   key-value store and a TCP proxy.
//! - `client` — the tutorial's client (feature `cli`).
//! - `load` — the load generator: many mio client connections against any echo server
//!   (feature `cli`).
//!
//! Every item has one path: the server core is re-exported at the crate root from private
//! modules; protocols, the client and the load generator are public modules.

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "tcp-reactor is Linux-only: it relies on epoll's edge-triggered semantics, POLLRDHUP, \
     MSG_NOSIGNAL and SO_REUSEPORT load balancing (see the crate docs)"
);

mod budget;
#[cfg(feature = "cli")]
pub mod client;
mod config;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handler;
mod listener;
#[cfg(feature = "cli")]
pub mod load;
pub mod metrics;
mod peer_addr;
pub mod protocols;
mod reactor;
mod reason;
mod rules;
mod server;
mod stats;
mod threads;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
pub mod tls_config;
mod transport;
mod worker;

pub use config::{Config, ConfigError, WritePolicy};
pub use handler::{Context, Handler};
pub use listener::{ListenAddr, Listener, activation, upgrade};
pub use peer_addr::{PeerAddr, UnixPeer};
pub use reactor::{EventLoop, Poster};
pub use reason::{CloseReason, ConnId};
pub use server::{Model, Running, Server, StopHandle};
pub use stats::Stats;

/// The README's code examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
