//! A connection's socket: reads into the shared buffer, writes of its output through the
//! transport, the connect's result, shutdowns. `sent` moves only here.

use super::*;

impl<S> Connection<S> {
    /// Whether a connect under way has finished, once the poll reported the socket.
    pub(crate) fn connect_result(&self) -> rules::Connect {
        match self.stream.take_error() {
            Ok(None) => {}
            Ok(Some(err)) | Err(err) => return rules::Connect::from_error(err),
        }
        match self.stream.is_connected() {
            Ok(_) => rules::Connect::Established,
            Err(err) if err.kind() == io::ErrorKind::NotConnected => rules::Connect::Pending,
            Err(err) => rules::Connect::Failed(err),
        }
    }

    /// Make the close a reset: with `SO_LINGER` 0, dropping the socket sends RST.
    pub(crate) fn set_reset_on_close(&self) {
        // Failure leaves an ordinary close: the peer still sees the connection end.
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(std::time::Duration::ZERO));
    }

    /// The TLS handshake is not finished.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.transport.is_handshaking()
    }

    /// Whether output queued during the TLS handshake may go now (asked once).
    #[inline]
    pub(crate) fn take_flush_due(&mut self) -> bool {
        self.transport.take_flush_due()
    }

    /// The unsent output, oldest byte first (for the live page's step mode).
    pub(crate) fn unsent(&self) -> &[u8] {
        &self.output[self.sent..]
    }

    /// True while reads wait: the handler paused them, or the budget parked them (the
    /// phase says when backpressure did). For the live page.
    pub(crate) fn reads_held(&self) -> bool {
        self.flow.reading_paused || self.budget_wait
    }

    /// Bytes queued and not yet written (plaintext the transport holds included).
    #[inline]
    pub(crate) fn pending(&self) -> usize {
        self.output.len() - self.sent + self.transport.unsent()
    }

    /// One `read` into `buf`, classified.
    #[inline]
    pub(crate) fn read_into(&mut self, buf: &mut [u8]) -> ReadOutcome {
        self.transport.read(&mut self.stream, buf)
    }

    /// Write queued output until it is all sent or the kernel buffer is full.
    /// Counts the calls and the bytes written in `stats`; `now` dates the progress of
    /// output other connections queued.
    pub(crate) fn flush(&mut self, stats: &mut Stats, now: Instant) -> FlushOutcome {
        let outcome = self.write_output(stats);
        self.foreign.settle(self.written, now);
        outcome
    }

    /// [`flush`](Connection::flush) before the foreign runs are credited.
    pub(super) fn write_output(&mut self, stats: &mut Stats) -> FlushOutcome {
        while self.sent < self.output.len() {
            stats.writes += 1;
            // `write` on a `MioStream` is `send(MSG_NOSIGNAL)`: a reset peer yields EPIPE
            // instead of raising SIGPIPE in the (possibly embedding) process.
            match self
                .transport
                .write(&mut self.stream, &self.output[self.sent..])
            {
                Ok(0) => return FlushOutcome::Failed(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    self.written += n as u64;
                    stats.bytes_out += n as u64;
                }
                // Not an error: wait for the writable edge. Drop what was sent once it is
                // half the buffer (amortised O(1) per byte), so output that never fully
                // drains does not keep every byte ever sent.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if self.sent >= self.output.len() / 2 {
                        self.output.drain(..self.sent);
                        self.sent = 0;
                    }
                    return FlushOutcome::Blocked;
                }
                // Interrupted before anything was written: retry.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return FlushOutcome::Failed(err),
            }
        }
        self.output.clear();
        self.sent = 0;
        if self.output.capacity() > KEEP_OUTPUT_CAPACITY {
            self.output = Vec::new();
        }
        self.push_transport()
    }

    /// Write what the transport still holds (TLS records); plain sockets hold nothing.
    #[inline]
    pub(super) fn push_transport(&mut self) -> FlushOutcome {
        match self.transport.push(&mut self.stream) {
            Ok(true) => FlushOutcome::Done,
            Ok(false) => FlushOutcome::Blocked,
            Err(err) => FlushOutcome::Failed(err),
        }
    }

    /// Send `bytes` now, when nothing else is queued; whatever the kernel does not take is
    /// queued in `output` for the next writable edge. Counts the calls and the bytes
    /// written in `stats`.
    pub(crate) fn send(&mut self, bytes: &[u8], stats: &mut Stats) -> FlushOutcome {
        debug_assert_eq!(self.pending(), 0, "send would reorder queued output");
        let mut done = 0;
        while done < bytes.len() {
            stats.writes += 1;
            match self.transport.write(&mut self.stream, &bytes[done..]) {
                Ok(0) => return FlushOutcome::Failed(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done += n;
                    self.written += n as u64;
                    stats.bytes_out += n as u64;
                }
                // The kernel buffer is full: keep the rest for the writable edge.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.output.extend_from_slice(&bytes[done..]);
                    return FlushOutcome::Blocked;
                }
                // Interrupted before anything was written: retry.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return FlushOutcome::Failed(err),
            }
        }
        self.push_transport()
    }

    /// Shut down our sending side: the peer sees EOF after the bytes already sent (and,
    /// over TLS, after `close_notify`).
    pub(super) fn shutdown_write(&mut self) {
        self.close_notify();
        // Failure means the peer is already gone; reading will report it.
        let _ = self.stream.shutdown_write();
    }

    /// End the transport's stream gracefully before a close (TLS `close_notify`).
    #[inline]
    pub(crate) fn close_notify(&mut self) {
        self.transport.close_notify(&mut self.stream);
    }
}
