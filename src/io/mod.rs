//! Bytes between a connection and the kernel, below every server model: the transport
//! (plaintext or a TLS session), the blocking socket types the threads model serves, peer
//! addresses, and `sys`, the one place that calls libc directly.
//!
//! Nothing here knows a connection's life (phases, limits, the handler): that is the models'
//! and `rules`' job.

pub(crate) mod peer_addr;
pub(crate) mod stream;
// The one module allowed `unsafe` (the crate denies it everywhere else).
#[allow(unsafe_code)]
pub(crate) mod sys;
#[cfg(feature = "tls")]
pub(crate) mod tls;
#[cfg(feature = "tls")]
pub mod tls_config;
pub(crate) mod transport;
