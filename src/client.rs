//! The tutorial's client: connect, send one message, print the reply, close.
//!
//! Prompts for whatever was not given (server IP, port, message), exactly as the original
//! tutorial's client asks on stdin. Blocking std::net: one socket, one exchange.

use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The most reply bytes read, as in the tutorial's `recv(1024)`.
pub const MAX_REPLY: usize = 1024;

/// How long to wait for the first reply byte.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(5);
/// After the first bytes, how long a pause means the reply is complete.
const QUIET_TIMEOUT: Duration = Duration::from_millis(300);

/// Ask for the server address (IP, then port) on `output`, reading answers from `input`.
pub fn prompt_addr(input: &mut impl BufRead, output: &mut impl Write) -> io::Result<SocketAddr> {
    let ip = prompt(input, output, "server ip: ")?;
    let port = prompt(input, output, "server port: ")?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(format!("invalid port {port:?}")))?;
    let ip = if ip.is_empty() { "127.0.0.1" } else { &ip };
    (ip, port)
        .to_socket_addrs()
        .map_err(|err| invalid(format!("invalid address {ip:?}: {err}")))?
        .next()
        .ok_or_else(|| invalid(format!("no address for {ip:?}")))
}

/// Ask for the message to send.
pub fn prompt_message(input: &mut impl BufRead, output: &mut impl Write) -> io::Result<String> {
    prompt(input, output, "message: ")
}

/// Connect to `addr`, send `message`, and return the reply: up to [`MAX_REPLY`] bytes,
/// ending early when the server closes or falls quiet.
pub fn exchange(addr: SocketAddr, message: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = connect(addr)?;
    stream.write_all(message)?;
    let socket = stream.try_clone()?;
    receive(&mut stream, &socket, addr)
}

/// Like [`exchange`], over TLS (feature `tls`): the server's certificate is verified
/// against `config`'s roots for the name `server_name`, and the handshake must complete
/// within the first-byte timeout.
#[cfg(feature = "tls")]
pub fn exchange_tls(
    addr: SocketAddr,
    server_name: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
    message: &[u8],
) -> io::Result<Vec<u8>> {
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    let session = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
    let tcp = connect(addr)?;
    let socket = tcp.try_clone()?;
    socket.set_read_timeout(Some(FIRST_BYTE_TIMEOUT))?;
    let mut stream = rustls::StreamOwned::new(session, tcp);
    stream.write_all(message)?;
    stream.flush()?;
    receive(&mut stream, &socket, addr)
}

/// Connect within the first-byte timeout.
fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, FIRST_BYTE_TIMEOUT)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot connect to {addr}: {err}")))
}

/// Read the reply from `stream` until the server closes or goes quiet; `socket` is the
/// TCP socket under it, whose read timeout bounds each wait.
fn receive(stream: &mut impl Read, socket: &TcpStream, addr: SocketAddr) -> io::Result<Vec<u8>> {
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
                    format!("no reply from {addr} within {FIRST_BYTE_TIMEOUT:?}"),
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
