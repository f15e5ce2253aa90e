//! Holding many idle connections open, to measure what an idle client costs a server.
//!
//! Each connection is opened, proves that the server serves it with one tiny echo, and then
//! stays silent until the [`IdleConnections`] is dropped. This module must not send
//! anything after that first echo.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// The byte each connection echoes once to prove the server has taken it.
const PING: u8 = b'i';

/// Open connections, silent after their first echo. Dropping this closes them all.
#[derive(Debug)]
pub struct IdleConnections {
    /// Connections that connected and echoed their ping.
    streams: Vec<TcpStream>,
    /// Connections that failed to connect or to echo in time.
    failed: usize,
}

impl IdleConnections {
    /// Connections held open (each echoed its ping).
    pub fn held(&self) -> usize {
        self.streams.len()
    }

    /// Connections that failed to connect or echo before the timeout.
    pub fn failed(&self) -> usize {
        self.failed
    }
}

/// Where one connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Connect in progress.
    Connecting,
    /// Ping sent, waiting for its echo.
    Pinged,
    /// Echo received: idle from now on.
    Idle,
    /// Failed.
    Failed,
}

/// Open `n` connections to the echo server at `addr`, each echoing one byte, within
/// `timeout`. Connections still unfinished at the timeout count as failed.
pub fn open(addr: SocketAddr, n: usize, timeout: Duration) -> io::Result<IdleConnections> {
    super::ensure_descriptors(n)?;
    let deadline = Instant::now() + timeout;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<(TcpStream, Stage)> = Vec::with_capacity(n);
    let mut pending = 0usize;
    for i in 0..n {
        // A connect that fails at once (no ports or descriptors left) is just a failure.
        let Ok(mut stream) = TcpStream::connect(addr) else {
            continue;
        };
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push((stream, Stage::Connecting));
        pending += 1;
    }
    while pending > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match poll.poll(&mut events, Some(deadline - now)) {
            Ok(()) => {}
            // A signal: poll again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            let Some((stream, stage)) = conns.get_mut(event.token().0) else {
                continue;
            };
            let before = *stage;
            *stage = advance(stream, before);
            if matches!(*stage, Stage::Idle | Stage::Failed) && before != *stage {
                pending -= 1;
            }
        }
    }
    let total = n;
    let streams: Vec<TcpStream> = conns
        .into_iter()
        .filter(|(_, s)| *s == Stage::Idle)
        .map(|(t, _)| t)
        .collect();
    Ok(IdleConnections {
        failed: total - streams.len(),
        streams,
    })
}

/// Move one connection forward after a readiness event.
fn advance(stream: &mut TcpStream, stage: Stage) -> Stage {
    match stage {
        Stage::Connecting => match connected(stream) {
            Ok(true) => match stream.write(&[PING]) {
                Ok(1) => Stage::Pinged,
                // One byte into an empty, fresh socket buffer: anything else is a failure.
                _ => Stage::Failed,
            },
            Ok(false) => Stage::Connecting,
            Err(_) => Stage::Failed,
        },
        Stage::Pinged => {
            let mut byte = [0u8; 1];
            match stream.read(&mut byte) {
                Ok(1) if byte[0] == PING => Stage::Idle,
                // Not there yet (or a signal): wait for the next event.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    Stage::Pinged
                }
                // EOF, a wrong byte or an error: this connection is not served.
                _ => Stage::Failed,
            }
        }
        done => done,
    }
}

/// Whether a nonblocking connect has completed (`Err` if it failed).
fn connected(stream: &TcpStream) -> io::Result<bool> {
    if let Some(err) = stream.take_error()? {
        return Err(err);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}
