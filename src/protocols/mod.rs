//! Protocols that ship with tcp-reactor. Each is a [`Handler`](crate::Handler): bytes in,
//! bytes out, no sockets, so each runs under every model.
//!
//! Every item is exported here, at one path; the HTTP and RESP constants carry their
//! protocol's name (`HTTP_BUSY`, `RESP_BUSY`).

mod chat;
mod echo;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod proxy;
// Its framer is reached by `fuzzing`.
pub(crate) mod resp;
mod seed;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod testkit;

pub use chat::{Chat, DEFAULT_MAX_LINE};
pub use echo::Echo;
pub use http::{
    BUSY as HTTP_BUSY, HEADER_TIMEOUT as HTTP_HEADER_TIMEOUT, HELLO as HTTP_HELLO, Http,
    HttpSession, KEEPALIVE_TIMEOUT as HTTP_KEEPALIVE_TIMEOUT, MAX_HEAD as HTTP_MAX_HEAD,
    MAX_HEADERS as HTTP_MAX_HEADERS,
};
pub use proxy::{DEFAULT_RETRY as PROXY_DEFAULT_RETRY, Proxy, Side as ProxySide};
pub use resp::{
    BUSY as RESP_BUSY, MAX_ARGS as RESP_MAX_ARGS, MAX_BULK as RESP_MAX_BULK,
    MAX_INLINE as RESP_MAX_INLINE, OOM as RESP_OOM, REDIS_VERSION as RESP_REDIS_VERSION, Resp,
    RespSession, STORE_ENTRY_OVERHEAD as RESP_STORE_ENTRY_OVERHEAD,
    SWEEP_BUDGET as RESP_SWEEP_BUDGET, SWEEP_EVERY as RESP_SWEEP_EVERY,
};
pub use seed::{SEED_REPLY, Seed};
