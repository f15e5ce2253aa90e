//! # tcp-reactor
//!
//! A single-threaded, event-driven TCP server core on `mio`: one thread, one `mio::Poll`
//! (epoll, edge-triggered), a `slab` of connections with their own read and write buffers.
//! A protocol implements one trait, [`Handler`], and runs unchanged under the reactor or
//! under a thread-per-client model ([`Model`]), so the two can be compared fairly.
//!
//! **The loop.** Every socket is nonblocking and registered once with epoll. Each turn, the
//! reactor polls for readiness (no longer than the next deadline); accepts and reads what
//! is ready and hands the bytes to the handler; serves again what a per-turn budget
//! stopped early, since no new edge will come for it; delivers what other workers and
//! threads sent; writes each connection's queued output once; applies the memory budget;
//! expires timers; frees the connections that finished (a read of 0 bytes means the peer
//! has gone); and checks for a stop. The README's
//! [How the loop works](https://github.com/tcp-reactor/tcp-reactor#how-the-loop-works)
//! tells each of these steps once, and `Reactor::turn` is that list in code.
//!
//! **Linux only**: it relies on epoll's edge-triggered wake-ups, `POLLRDHUP`,
//! `MSG_NOSIGNAL` and `SO_REUSEPORT`, and does not build elsewhere.
//!
//! **Logging**: the crate logs through `log` and installs no logger. A program that embeds
//! it sees no line (not a failed listener, not a budget warning) until it installs one, for
//! example with `env_logger::init()`.
//!
//! # Features
//!
//! - `cli` (default): the `tcp-reactor` binary, `tcp_reactor::client` (the tutorial's
//!   client) and `tcp_reactor::load` (the load generator), with their dependencies.
//! - `tls` (default): TLS below the handler under both models, `Server::tls` and
//!   `tcp_reactor::tls_config`, with rustls and its ring provider.
//! - `fuzzing`: what the fuzz targets in `fuzz/` drive, in a module hidden from these
//!   docs; not for embedders.
//!
//! `tcp-reactor = { version = "0.1", default-features = false }` gives the server core and
//! the [`protocols`] alone.
//!
//! # Layout
//!
//! Bottom up; each layer imports only the layers listed before it (doc links aside).
//!
//! - **Types every layer speaks**: `handler` ([`Handler`], [`Context`], reaching other
//!   connections by id, ids and close reasons), `config`, `stats`, `budget` (the
//!   server-wide budget for buffered bytes), `io::peer_addr`.
//! - **Shared mechanics**: `rules`, what both models do alike, written once; `io`, bytes
//!   through the socket or rustls, and `sys`, every libc call behind a safe function.
//! - **Per worker**: `worker`; `watch` (what the live page sees of each loop, and step
//!   mode); `listen` ([`Listener`]: TCP, Unix paths, inherited descriptors
//!   ([`activation`]), the binary [`upgrade`]).
//! - **Models**: `reactor` (`turn` is one named step per line; [`EventLoop`], [`Poster`]),
//!   `threads`, and [`metrics`] (snapshots, Prometheus text, an endpoint that is a small
//!   reactor of its own).
//! - **On top**: `server` ([`Server`], [`Running`], [`StopHandle`]); nothing imports it.
//! - **Beside**: [`protocols`], which see only the first layer; `tools` (`client`, `load`);
//!   the binary in `src/bin/tcp-reactor/`, which parses arguments and calls the library.
//!
//! The server core is re-exported at the crate root; the rest are public modules. The
//! guide — operations, deployment, TLS, embedding in depth, architecture, benchmarks — is in
//! [`docs/`](https://github.com/tcp-reactor/tcp-reactor/tree/main/docs).

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
// `unsafe` lives in `io::sys` alone, behind safe functions.
#![deny(unsafe_code)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "tcp-reactor is Linux-only: it relies on epoll's edge-triggered semantics, POLLRDHUP, \
     MSG_NOSIGNAL and SO_REUSEPORT load balancing (see the crate docs)"
);

mod budget;
mod config;
mod handler;
mod io;
mod listen;
pub mod metrics;
pub mod protocols;
mod reactor;
mod rules;
mod server;
mod stats;
mod threads;
#[cfg(feature = "cli")]
mod tools;
mod worker;

pub use config::{Config, ConfigError, WritePolicy};
pub use handler::reason::{CloseReason, ConnId};
pub use handler::{Context, Handler};
pub use io::peer_addr::{PeerAddr, UnixPeer};
#[cfg(feature = "tls")]
pub use io::tls_config;
pub use listen::{ListenAddr, Listener, activation, proxy_header, upgrade};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use protocols::fuzzing;
pub use reactor::{EventLoop, Poster};
pub use server::{Model, Running, Server, StopHandle};
pub use stats::Stats;
#[cfg(feature = "cli")]
pub use tools::{client, load};
pub use worker::drain::Draining;

/// The README's code examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The guide's code examples (`docs/*.md`), compiled as doc tests: one item per page.
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../docs/README.md")]
    struct Index;
    #[doc = include_str!("../docs/architecture.md")]
    struct Architecture;
    #[doc = include_str!("../docs/bench.md")]
    struct Bench;
    #[doc = include_str!("../docs/deploy.md")]
    struct Deploy;
    #[doc = include_str!("../docs/embedding.md")]
    struct Embedding;
    #[doc = include_str!("../docs/learning.md")]
    struct Learning;
    #[doc = include_str!("../docs/live.md")]
    struct Live;
    #[doc = include_str!("../docs/operations.md")]
    struct Operations;
    #[doc = include_str!("../docs/protocols.md")]
    struct Protocols;
    #[doc = include_str!("../docs/reliability.md")]
    struct Reliability;
    #[doc = include_str!("../docs/testing.md")]
    struct Testing;
    #[cfg(feature = "tls")]
    #[doc = include_str!("../docs/tls.md")]
    struct Tls;
}
