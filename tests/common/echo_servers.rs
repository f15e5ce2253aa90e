//! Small echo servers on 127.0.0.1 (port 0) that are deliberately simple, or deliberately
//! broken, to test the load generator against: none of them is tcp-reactor.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

/// What a fixture server does to the bytes it echoes.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// Echo every byte unchanged.
    Echo,
    /// Echo, but flip the bits of the byte at this offset of each connection's stream.
    FlipByteAt(u64),
    /// Echo this many bytes of each connection, then close it.
    CloseAfter(u64),
    /// Read everything, echo nothing.
    Swallow,
}

/// A blocking echo server on its own threads (one per client), for tests only.
/// Stops accepting when dropped.
#[derive(Debug)]
pub struct FixtureServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Raised on drop; the accept loop checks it after each accept.
    stop: Arc<AtomicBool>,
}

impl Drop for FixtureServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag (a failure means it is already gone).
        let _ = TcpStream::connect(self.addr);
    }
}

/// Start a fixture server with `behaviour` on 127.0.0.1, port 0.
#[track_caller]
pub fn fixture_server(behaviour: Behaviour) -> FixtureServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener
        .local_addr()
        .expect("local_addr of a bound listener");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    thread::spawn(move || {
        for stream in listener.incoming() {
            if flag.load(Ordering::SeqCst) {
                return;
            }
            if let Ok(stream) = stream {
                thread::spawn(move || serve(stream, behaviour));
            }
        }
    });
    FixtureServer { addr, stop }
}

/// Serve one client until it closes (or, for `CloseAfter`, until the limit).
fn serve(mut stream: TcpStream, behaviour: Behaviour) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    loop {
        let mut n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        match behaviour {
            Behaviour::Echo => {}
            Behaviour::FlipByteAt(at) => {
                if (offset..offset + n as u64).contains(&at) {
                    buf[(at - offset) as usize] ^= 0xFF;
                }
            }
            Behaviour::CloseAfter(limit) => {
                n = n.min((limit - offset.min(limit)) as usize);
            }
            Behaviour::Swallow => n = 0,
        }
        stream.write_all(&buf[..n])?;
        offset += n as u64;
        if let Behaviour::CloseAfter(limit) = behaviour
            && offset >= limit
        {
            return Ok(());
        }
    }
}

/// An address on 127.0.0.1 where nothing listens (a port that was just free).
#[track_caller]
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
}
