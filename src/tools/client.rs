//! The tutorial's client: connect, send one message, print the reply, close.
//!
//! Prompts for whatever was not given (server IP, port, message), exactly as the original
//! tutorial's client asks on stdin. Blocking std::net: one socket, one exchange. It also
//! owns [`Target`], the `HOST:PORT` or `unix:PATH` that both the client and the load
//! generator connect to.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The most reply bytes read, as in the tutorial's `recv(1024)`.
pub const MAX_REPLY: usize = 1024;

/// How long to wait for the first reply byte.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(5);
/// After the first bytes, how long a pause means the reply is complete.
const QUIET_TIMEOUT: Duration = Duration::from_millis(300);

/// Where a client connects: a TCP server by address or host name, or a Unix socket; the
/// same spellings `serve --addr` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// `HOST:PORT`: an IPv4 address, an IPv6 address in brackets (`[::1]:8866`), or a host
    /// name (`localhost:8866`), resolved when connecting.
    Tcp {
        /// The address or name, without brackets.
        host: String,
        /// The port.
        port: u16,
    },
    /// `unix:PATH`: a Unix stream socket.
    Unix(PathBuf),
}

impl Target {
    /// The socket addresses of a TCP target, in the resolver's order (a name may have
    /// several, e.g. `::1` and `127.0.0.1` for `localhost`); empty for a Unix socket.
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        let Target::Tcp { host, port } = self else {
            return Ok(Vec::new());
        };
        let addrs: Vec<SocketAddr> = (host.as_str(), *port)
            .to_socket_addrs()
            .map_err(|err| io::Error::new(err.kind(), format!("cannot resolve {host}: {err}")))?
            .collect();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no address for {host}"),
            ));
        }
        Ok(addrs)
    }

    /// The name a TLS server's certificate must carry: the host name as given, `localhost`
    /// for a loopback address or a Unix socket, else the IP address.
    pub fn tls_name(&self) -> String {
        match self {
            Target::Tcp { host, .. } => match host.parse::<IpAddr>() {
                Ok(ip) if ip.is_loopback() => "localhost".to_string(),
                Ok(ip) => ip.to_string(),
                Err(_) => host.clone(),
            },
            Target::Unix(_) => "localhost".to_string(),
        }
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Self {
        Target::Tcp {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl FromStr for Target {
    type Err = String;

    /// `unix:PATH`, or `HOST:PORT` with an IPv4 address, a bracketed IPv6 address or a
    /// host name.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path (unix:PATH)".to_string());
            }
            return Ok(Target::Unix(PathBuf::from(path)));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Target::from(addr));
        }
        let expected =
            "expected HOST:PORT (127.0.0.1:8866, [::1]:8866, localhost:8866) or unix:PATH";
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!("no port in {s:?}: {expected}"));
        };
        let Ok(port) = port.parse::<u16>() else {
            return Err(format!("invalid port {port:?} in {s:?}: {expected}"));
        };
        // A name never holds ':'; an IPv6 address must be written in brackets.
        if host.is_empty() || host.contains([':', '[', ']', '/']) {
            return Err(format!("invalid host {host:?} in {s:?}: {expected}"));
        }
        Ok(Target::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Tcp { host, port } => write!(f, "{host}:{port}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Ask for the server address (IP or host name, then port) on `output`, reading answers
/// from `input`. An empty IP means 127.0.0.1; an answer `unix:PATH` needs no port.
pub fn prompt_addr(input: &mut impl BufRead, output: &mut impl Write) -> io::Result<Target> {
    let ip = prompt(input, output, "server ip: ")?;
    if ip.starts_with("unix:") {
        return ip.parse().map_err(invalid);
    }
    let port = prompt(input, output, "server port: ")?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(format!("invalid port {port:?}")))?;
    let host = if ip.is_empty() { "127.0.0.1" } else { &ip };
    Ok(Target::Tcp {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    })
}

/// Ask for the message to send.
pub fn prompt_message(input: &mut impl BufRead, output: &mut impl Write) -> io::Result<String> {
    prompt(input, output, "message: ")
}

/// Connect to `target`, send `message`, and return the reply: up to [`MAX_REPLY`] bytes,
/// ending early when the server closes or falls quiet.
///
/// An empty message sends no bytes. Sending nothing and waiting would wait for a reply
/// to nothing; instead the client shuts down its sending side, which is what the server
/// sees (its read returns 0: the tutorial's sign that the client has gone), and returns
/// what the server sends before it closes, usually nothing.
pub fn exchange(target: &Target, message: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = connect(target)?;
    stream.write_all(message)?;
    if message.is_empty() {
        stream.shutdown(Shutdown::Write)?;
    }
    let socket = stream.try_clone()?;
    receive(&mut stream, &socket, target)
}

/// Like [`exchange`], over TLS (feature `tls`): the server's certificate is verified
/// against `config`'s roots for the name `server_name`, and the handshake must complete
/// within the first-byte timeout. An empty message sends TLS's `close_notify` and then
/// shuts down the sending side.
#[cfg(feature = "tls")]
pub fn exchange_tls(
    target: &Target,
    server_name: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
    message: &[u8],
) -> io::Result<Vec<u8>> {
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    let session = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
    let socket = connect(target)?;
    let under = socket.try_clone()?;
    under.set_read_timeout(Some(FIRST_BYTE_TIMEOUT))?;
    let mut stream = rustls::StreamOwned::new(session, socket);
    stream.write_all(message)?;
    // Flushing completes the handshake, even when there is nothing to send.
    stream.flush()?;
    if message.is_empty() {
        stream.conn.send_close_notify();
        stream.flush()?;
        under.shutdown(Shutdown::Write)?;
    }
    receive(&mut stream, &under, target)
}

/// A connected client socket: TCP or Unix.
#[derive(Debug)]
enum Socket {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix stream connection.
    Unix(UnixStream),
}

impl Socket {
    /// A second handle on the same socket (to set its timeouts while it is borrowed).
    fn try_clone(&self) -> io::Result<Socket> {
        Ok(match self {
            Socket::Tcp(s) => Socket::Tcp(s.try_clone()?),
            Socket::Unix(s) => Socket::Unix(s.try_clone()?),
        })
    }

    /// How long one read may wait.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_read_timeout(timeout),
            Socket::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    /// Shut down one or both directions.
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.shutdown(how),
            Socket::Unix(s) => s.shutdown(how),
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush(),
            Socket::Unix(s) => s.flush(),
        }
    }
}

/// Connect to `target`: each address a host name resolves to in turn, each within the
/// first-byte timeout, until one accepts.
fn connect(target: &Target) -> io::Result<Socket> {
    let failed =
        |err: io::Error| io::Error::new(err.kind(), format!("cannot connect to {target}: {err}"));
    if let Target::Unix(path) = target {
        return UnixStream::connect(path).map(Socket::Unix).map_err(failed);
    }
    let mut last = None;
    for addr in target.resolve()? {
        match TcpStream::connect_timeout(&addr, FIRST_BYTE_TIMEOUT) {
            Ok(stream) => return Ok(Socket::Tcp(stream)),
            Err(err) => last = Some(err),
        }
    }
    Err(failed(
        last.unwrap_or_else(|| io::Error::other("no address")),
    ))
}

/// Read the reply from `stream` until the server closes or goes quiet; `socket` is the
/// socket under it, whose read timeout bounds each wait.
fn receive(stream: &mut impl Read, socket: &Socket, target: &Target) -> io::Result<Vec<u8>> {
    socket.set_read_timeout(Some(FIRST_BYTE_TIMEOUT))?;
    let mut reply = vec![0; MAX_REPLY];
    let mut filled = 0;
    while filled < MAX_REPLY {
        match stream.read(&mut reply[filled..]) {
            // The server closed: the reply is complete.
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                socket.set_read_timeout(Some(QUIET_TIMEOUT))?;
            }
            // Quiet after some bytes: take what came. Quiet before any: report it.
            Err(err) if is_timeout(&err) && filled > 0 => break,
            Err(err) if is_timeout(&err) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no reply from {target} within {FIRST_BYTE_TIMEOUT:?}"),
                ));
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // A reset after the reply arrived still leaves us the reply.
            Err(_) if filled > 0 => break,
            Err(err) => return Err(err),
        }
    }
    reply.truncate(filled);
    Ok(reply)
}

/// Print `label`, read one line, trim it.
fn prompt(input: &mut impl BufRead, output: &mut impl Write, label: &str) -> io::Result<String> {
    output.write_all(label.as_bytes())?;
    output.flush()?;
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Err(invalid(format!(
            "no answer to {:?} (end of input)",
            label.trim()
        )));
    }
    Ok(line.trim().to_string())
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::Target;
    use std::path::PathBuf;

    #[test]
    fn targets_parse_and_print_as_written() {
        for (text, shown) in [
            ("127.0.0.1:8866", "127.0.0.1:8866"),
            ("[::1]:8866", "[::1]:8866"),
            ("localhost:8866", "localhost:8866"),
            ("unix:/run/x.sock", "unix:/run/x.sock"),
        ] {
            let target: Target = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(target.to_string(), shown);
        }
        assert_eq!(
            "unix:rel/x.sock".parse::<Target>(),
            Ok(Target::Unix(PathBuf::from("rel/x.sock")))
        );
    }

    #[test]
    fn targets_without_a_port_or_path_are_refused() {
        for bad in [
            "localhost",
            "localhost:",
            "localhost:99999",
            ":8866",
            "::1:8866",
            "unix:",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn the_tls_name_is_the_host_name_or_localhost_on_loopback() {
        let name = |s: &str| s.parse::<Target>().map(|t| t.tls_name());
        assert_eq!(name("127.0.0.1:1"), Ok("localhost".to_string()));
        assert_eq!(name("[::1]:1"), Ok("localhost".to_string()));
        assert_eq!(name("10.1.2.3:1"), Ok("10.1.2.3".to_string()));
        assert_eq!(name("example.org:1"), Ok("example.org".to_string()));
        assert_eq!(name("unix:/x"), Ok("localhost".to_string()));
    }
}
