//! A minimal HTTP endpoint for Prometheus: `GET /metrics` answered with [`render`] of a
//! fresh snapshot, on a listener and thread of its own, so scrapes never count against
//! `Config::max_connections` nor wait behind clients.
//!
//! One scrape at a time, each bounded by a read and write timeout: a Prometheus server
//! scrapes every few seconds, and a stuck scraper must not hold the thread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{CONTENT_TYPE, LiveStats, render};

/// How long a scraper may take to send its request or take the reply.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of a request read (the request line and headers of a scrape are short).
const MAX_REQUEST: usize = 8 * 1024;
/// How long a stop waits for the thread after each wake-up connection.
const WAKE_CHECK: Duration = Duration::from_millis(100);
/// Most wake-up connections a stop makes: 12 s, more than a scrape in progress may hold
/// the thread (`SCRAPE_TIMEOUT` to read, as long to write).
const WAKE_ATTEMPTS: u32 = 120;

/// The running metrics endpoint; dropping it (or [`stop`](MetricsServer::stop)) stops it.
#[derive(Debug)]
pub struct MetricsServer {
    /// Where it listens.
    local_addr: SocketAddr,
    /// Raised to stop the thread.
    stop: Arc<AtomicBool>,
    /// The serving thread.
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop serving and wait for the thread.
    pub fn stop(mut self) {
        self.shut();
    }

    /// Raise the flag, wake the blocking `accept` with a connection, join. After a binary
    /// upgrade the successor accepts from the same socket and may take the wake-up
    /// connection (it answers it as a scrape): wake again until this thread has ended.
    fn shut(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            for _ in 0..WAKE_ATTEMPTS {
                let _ = TcpStream::connect_timeout(&self.local_addr, SCRAPE_TIMEOUT);
                let waited = Instant::now();
                while !thread.is_finished() && waited.elapsed() < WAKE_CHECK {
                    thread::sleep(Duration::from_millis(1));
                }
                if thread.is_finished() {
                    break;
                }
            }
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Serve `GET /metrics` for `stats` on `addr` from a thread of its own.
///
/// ```no_run
/// use tcp_reactor::{Server, metrics, protocols::Echo};
///
/// let running = Server::new(Echo).bind("127.0.0.1:7000".parse().unwrap())?;
/// let endpoint = metrics::serve("127.0.0.1:9100".parse().unwrap(), running.live_stats())?;
/// println!("scrape http://{}/metrics", endpoint.local_addr());
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// The port is bound by [`bind`]; a binary upgrade hands the socket itself to the new
/// process, which serves it through [`serve_listener`].
pub fn serve(addr: SocketAddr, stats: LiveStats) -> io::Result<MetricsServer> {
    serve_listener(bind(addr)?, stats)
}

/// Serve `GET /metrics` for `stats` on `listener` (from [`bind`], or handed over by the
/// server this one upgraded) from a thread of its own.
pub fn serve_listener(listener: TcpListener, stats: LiveStats) -> io::Result<MetricsServer> {
    let local_addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = thread::Builder::new()
        .name("tcp-reactor-metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(err) = answer(stream, &stats) {
                            log::debug!("metrics scrape: {err}");
                        }
                    }
                    Err(err) => {
                        log::debug!("metrics accept: {err}");
                        // Out of descriptors or similar: do not spin.
                        thread::sleep(Duration::from_millis(100));
                    }
                }
                // Checked after answering: a scrape that a stop finds accepted is answered,
                // not reset (the socket may be a successor's too, and it was meant for it).
                if flag.load(Ordering::SeqCst) {
                    break;
                }
            }
        })?;
    Ok(MetricsServer {
        local_addr,
        stop,
        thread: Some(thread),
    })
}

/// Read one request and answer it: the metrics for `GET /metrics`, 404 otherwise.
fn answer(mut stream: TcpStream, stats: &LiveStats) -> io::Result<()> {
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    let mut request = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split(|&b| b == b'?').next().unwrap_or_default());
    let reply = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => {
            let body = render(&stats.snapshot());
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
        }
        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    };
    stream.write_all(reply.as_bytes())?;
    stream.flush()
}

/// A listening socket for the metrics endpoint on `addr`, with `SO_REUSEADDR` and without
/// `SO_REUSEPORT`: a second server on the same address fails with `AddrInUse`.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}
