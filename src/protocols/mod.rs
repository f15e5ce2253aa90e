//! Protocols that ship with tcp-reactor. Each is a [`Handler`](crate::Handler): bytes in,
//! bytes out, no sockets, so each runs under every model.

mod echo;

pub use echo::Echo;
