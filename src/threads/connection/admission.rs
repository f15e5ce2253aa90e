//! A threads-model client before its handler opens: the PROXY header of a client from a
//! trusted balancer, read on the client's own thread within the handshake timeout, and
//! the per-address limit, checked on the address the header named.
//!
//! The header is taken off the socket before TLS or the handler read a byte
//! (`listen::proxy_header`). This file must not call the handler.

use std::io;
use std::time::Instant;

use super::{Client, Finished};
use crate::listen::proxy_header::HeaderRead;
use crate::rules;
use crate::{CloseReason, Handler, PeerAddr};

impl<H: Handler> Client<H> {
    /// Read the PROXY header if the client is a trusted balancer, and make its client
    /// address this connection's peer. An error (bad header, EOF, none in time) ends
    /// the connection before `open`.
    pub(super) fn take_header(&mut self) -> io::Result<()> {
        let config = &self.shared.config;
        if !config.trusts_proxy(self.addr) {
            return Ok(());
        }
        let deadline = Instant::now() + config.handshake_timeout;
        let mut read = HeaderRead::new();
        let admission = &self.shared.live.admission;
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no PROXY header in time",
                ));
            }
            if let Err(err) = self.peer.stream.set_read_timeout(Some(left)) {
                break Err(err);
            }
            match read.advance(&self.peer.stream) {
                Ok(Some(header)) => break Ok(header),
                // The read timeout passed: the loop checks the deadline.
                Ok(None) => {}
                Err(err) if err.kind() == io::ErrorKind::TimedOut => {}
                Err(err) => break Err(err),
            }
        };
        // The read loop sets its own timeouts; start it from a known state.
        self.read_timeout = None;
        self.peer.stream.set_read_timeout(None)?;
        match result {
            Ok(header) => {
                admission.count_proxied();
                let balancer = self.addr;
                if let Some(source) = header.source {
                    self.addr = PeerAddr::Tcp(source);
                }
                log::debug!("{balancer}: PROXY header names {}", self.addr);
                Ok(())
            }
            Err(err) => {
                log::debug!("{}: PROXY header: {err}; closing", self.addr);
                admission.count_header_failed();
                Err(err)
            }
        }
    }

    /// Count this client against `max_per_address`; false if its address is full.
    pub(super) fn take_address(&mut self) -> bool {
        let config = &self.shared.config;
        let (Some(group), Some(max)) = (
            rules::per_address::group(config, self.addr),
            config.max_per_address,
        ) else {
            return true;
        };
        if !self.shared.live.admission.try_take(group, max) {
            return false;
        }
        self.group = Some(group);
        true
    }

    /// Give back what `take_address` counted.
    pub(super) fn release_address(&mut self) {
        if let Some(group) = self.group.take() {
            self.shared.live.admission.release(group);
        }
    }

    /// Turn the client away as a full server does: the busy reply, its input read, FIN.
    pub(super) fn refuse(&mut self) -> Finished {
        log::debug!("refusing {}: its address is at max_per_address", self.addr);
        self.shared.live.count_refused();
        self.shared
            .live
            .add_published(self.shared.index, |stats| stats.refused += 1);
        if self.peer.stream.set_nonblocking(true).is_ok() {
            rules::refuse(&self.peer.stream, self.shared.handler.busy_reply());
        }
        Finished {
            reason: CloseReason::Shutdown,
            bytes_in: 0,
            bytes_out: 0,
            refused: true,
        }
    }
}
