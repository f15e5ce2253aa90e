//! What a nonblocking connection's bytes travel through between its buffers and its
//! socket: the socket itself, or a TLS session over it. The reactor's connections and the
//! load generator's use it.
//!
//! Everything above this sees plaintext: the handler, the output queue, the caps, the
//! high-water mark and the timers. The calls mirror a nonblocking socket's (read some,
//! write some, shut down the sending side) and are generic over the stream, so any
//! `Read + Write` socket type can carry either transport. Plaintext calls compile to the
//! socket call alone.

use std::io::{self, Read, Write};

#[cfg(feature = "tls")]
use crate::io::tls::TlsSession;
use crate::rules::{self, ReadOutcome};

/// A connection's transport.
#[derive(Debug)]
pub(crate) enum Transport {
    /// Bytes go to the socket as they are.
    Plain,
    /// Bytes are sealed into TLS records (boxed: the plaintext case stays small).
    #[cfg(feature = "tls")]
    Tls(Box<TlsSession>),
}

impl Transport {
    /// One read of plaintext into `buf`, classified.
    #[inline]
    pub(crate) fn read<S: Read + Write>(&mut self, stream: &mut S, buf: &mut [u8]) -> ReadOutcome {
        match self {
            Transport::Plain => rules::read_once(stream, buf),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.read(stream, buf),
        }
    }

    /// One write of plaintext; returns how much was taken.
    #[inline]
    pub(crate) fn write<S: Read + Write>(
        &mut self,
        stream: &mut S,
        bytes: &[u8],
    ) -> io::Result<usize> {
        match self {
            Transport::Plain => stream.write(bytes),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.write(stream, bytes),
        }
    }

    /// Plaintext bytes taken by `write` that have not reached the socket yet (TLS records
    /// waiting for room); 0 for a plain socket.
    #[inline]
    pub(crate) fn unsent(&self) -> usize {
        match self {
            Transport::Plain => 0,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.unsent(),
        }
    }

    /// Write what `unsent` counts. Ok(true) once nothing is left.
    pub(crate) fn push<S: Read + Write>(&mut self, stream: &mut S) -> io::Result<bool> {
        match self {
            Transport::Plain => {
                let _ = stream;
                Ok(true)
            }
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.push_records(stream),
        }
    }

    /// True once after something below unblocked output queued above (the TLS handshake
    /// completed): the connection should flush.
    #[inline]
    pub(crate) fn take_flush_due(&mut self) -> bool {
        match self {
            Transport::Plain => false,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.take_flush_due(),
        }
    }

    /// True while a handshake has not completed.
    pub(crate) fn is_handshaking(&self) -> bool {
        match self {
            Transport::Plain => false,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.is_handshaking(),
        }
    }

    /// The transport's own end of a graceful close, before the socket's FIN or close: TLS
    /// sends `close_notify`; a plain socket has nothing to say.
    #[inline]
    pub(crate) fn close_notify<S: Read + Write>(&mut self, stream: &mut S) {
        match self {
            Transport::Plain => {
                let _ = stream;
            }
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.close_notify(stream),
        }
    }
}
