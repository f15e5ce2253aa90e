//! A layer-4 TCP proxy, like HAProxy's `mode tcp`: each client is paired with a connection
//! to an upstream, and bytes are forwarded both ways unchanged.
//!
//! This module owns the pairing and the choice of upstream; the reactor's outbound
//! connections, flow control and half-close do the rest. The pair is paced by its slower
//! side: when one connection's unsent output passes high water the other is paused, and
//! resumed once it drains. An EOF is carried across as a shutdown of the other side's
//! sending half (after its queued bytes), a reset as a reset.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::proxy_header::{self, SendProxy};
use crate::{CloseReason, ConnId, Context, Handler};

/// How long an upstream that refused is skipped, by default.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(2);

/// The proxy: a round-robin over upstreams, skipping one that failed to connect until
/// its retry interval has passed.
#[derive(Debug)]
pub struct Proxy {
    /// Where clients are forwarded.
    upstreams: Vec<SocketAddr>,
    /// Round-robin position.
    next: AtomicUsize,
    /// Per upstream: skipped until this instant after a failed connect.
    down_until: Mutex<Vec<Option<Instant>>>,
    /// How long a failed upstream is skipped.
    retry: Duration,
    /// Begin each upstream connection with a PROXY header of this version, naming the
    /// client and this address as its destination (HAProxy's `send-proxy`).
    send_proxy: Option<(SendProxy, SocketAddr)>,
}

/// One side of a proxied pair.
#[derive(Debug)]
pub struct Side {
    /// The other side of the pair; `None` for a client no upstream could take.
    other: Option<ConnId>,
    /// For the upstream side: the address dialed (to mark it down if it fails).
    upstream: Option<SocketAddr>,
}

impl Proxy {
    /// A proxy over `upstreams`, skipping a failed one for `retry`.
    pub fn new(upstreams: Vec<SocketAddr>, retry: Duration) -> Self {
        let down_until = Mutex::new(vec![None; upstreams.len()]);
        Proxy {
            upstreams,
            next: AtomicUsize::new(0),
            down_until,
            retry,
            send_proxy: None,
        }
    }

    /// Begin each upstream connection with a PROXY header of `version` that names the
    /// client (the one a PROXY header named, if this server was sent one) and `local`,
    /// the address clients connect to, as the destination.
    pub fn with_send_proxy(mut self, version: SendProxy, local: SocketAddr) -> Self {
        self.send_proxy = Some((version, local));
        self
    }

    /// The next upstream in turn that is not being skipped at `now`.
    fn pick(&self, now: Instant) -> Option<SocketAddr> {
        let count = self.upstreams.len();
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|step| (start + step) % count)
            .find(|&index| down[index].is_none_or(|until| until <= now))
            .map(|index| self.upstreams[index])
    }

    /// Skip `addr` until `retry` from `now`.
    fn mark_down(&self, addr: SocketAddr, now: Instant) {
        let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        for (index, upstream) in self.upstreams.iter().enumerate() {
            if *upstream == addr {
                down[index] = Some(now + self.retry);
            }
        }
    }
}

impl Handler for Proxy {
    type Session = Side;

    fn open(&self, ctx: &mut Context<'_>) -> Side {
        if let Some(client) = ctx.dialed_by() {
            return Side {
                other: Some(client),
                upstream: ctx.peer_addr().as_tcp(),
            };
        }
        let Some(addr) = self.pick(ctx.now()) else {
            // No upstream can be reached: close the client at once. Each upstream's failure
            // was logged once as a warning; this is the same news per client.
            log::debug!(
                "proxy: no upstream available (all {} skipped after failing): closing client connection {}",
                self.upstreams.len(),
                ctx.id()
            );
            ctx.abort();
            return Side {
                other: None,
                upstream: None,
            };
        };
        let upstream = ctx.connect(addr);
        if let Some((version, local)) = self.send_proxy {
            // Queued before any byte of the client's: it goes first once connected.
            let header = match ctx.peer_addr().as_tcp() {
                Some(client) => proxy_header::encode(version, client, local),
                None => proxy_header::encode_unknown(version),
            };
            ctx.send_to(upstream, &header);
        }
        Side {
            other: Some(upstream),
            upstream: None,
        }
    }

    fn data(&self, side: &mut Side, ctx: &mut Context<'_>, input: &[u8]) -> usize {
        if let Some(other) = side.other {
            ctx.send_to(other, input);
        }
        input.len()
    }

    fn read_closed(&self, side: &mut Side, ctx: &mut Context<'_>) -> bool {
        // The other side's peer reads EOF once what is queued for it is sent; this side
        // stays open for what the other side still sends.
        if let Some(other) = side.other {
            ctx.shutdown_write(other);
        }
        side.other.is_some()
    }

    fn congested(&self, side: &mut Side, ctx: &mut Context<'_>) {
        if let Some(other) = side.other {
            ctx.pause_reading(other);
        }
    }

    fn drained(&self, side: &mut Side, ctx: &mut Context<'_>) {
        if let Some(other) = side.other {
            ctx.resume_reading(other);
        }
    }

    fn ending(&self, side: &mut Side, ctx: &mut Context<'_>, reason: CloseReason) {
        let Some(other) = side.other else {
            return;
        };
        match reason {
            // Both halves finished: the other side closes itself the same way.
            CloseReason::Eof => {}
            CloseReason::Reset => ctx.reset_conn(other),
            CloseReason::ConnectFailed(kind) => {
                if let Some(addr) = side.upstream {
                    // The one sign an operator gets of why this client was closed.
                    log::warn!(
                        "proxy: cannot reach upstream {addr} for client connection {other}: connect failed ({kind}); \
                         closing the client, skipping the upstream for {:?}",
                        self.retry
                    );
                    self.mark_down(addr, ctx.now());
                }
                ctx.abort_conn(other);
            }
            // A timeout, a limit or a stop on one side: the other flushes and closes.
            _ => ctx.close_conn(other),
        }
    }
}
