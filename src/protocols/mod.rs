//! Protocols that ship with tcp-reactor. Each is a [`Handler`](crate::Handler): bytes in,
//! bytes out, no sockets, so each runs under every model.

mod echo;
pub mod http;
pub mod resp;
#[cfg(test)]
mod testkit;

pub use echo::Echo;
pub use http::Http;
pub use resp::Resp;
