//! Protocols that ship with tcp-reactor. Each is a [`Handler`](crate::Handler): bytes in,
//! bytes out, no sockets, so each runs under every model.

mod chat;
mod echo;
pub mod http;
pub mod proxy;
pub mod resp;
mod seed;
#[cfg(test)]
mod testkit;

pub use chat::{Chat, DEFAULT_MAX_LINE};
pub use echo::Echo;
pub use http::Http;
pub use proxy::Proxy;
pub use resp::Resp;
pub use seed::{SEED_REPLY, Seed};
