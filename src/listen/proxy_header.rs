//! The PROXY protocol (HAProxy's `doc/proxy-protocol.txt`, versions 1 and 2): which
//! sources are trusted to send a header, the framing of a header that may arrive in
//! pieces, and taking exactly the header's bytes off a socket.
//!
//! A balancer in front of the server opens the TCP connection itself, so the peer the
//! kernel reports is the balancer. With the PROXY protocol the balancer starts each
//! connection with one header naming the real client. Only sources listed with
//! `Config::with_proxy_protocol_from` are trusted to send one; from any other source
//! nothing is parsed.
//!
//! The header is read with `recv(MSG_PEEK)` and then taken with `recv` of exactly its
//! length, so the bytes after it stay in the kernel for TLS or the handler, and neither
//! model needs to hand leftovers over. The framing (how many bytes, and whether more are
//! needed) is here; the fields are parsed by the `ppp` crate. This module must not call
//! the handler or keep a connection of its own.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::str::FromStr;

use ppp::{v1, v2};

/// The v2 signature, the 12 bytes that start every binary header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v2 header's fixed part: signature, version and command, family, length.
const V2_FIXED: usize = 16;
/// The most a v1 header may take, CRLF included (the specification's 107 bytes).
pub const V1_MAX: usize = 107;
/// The most address and TLV bytes a v2 header may announce; a longer one is refused
/// unread. 216 bytes hold the largest address block (two Unix paths), and 300 more leave
/// room for the TLVs HAProxy sends (ALPN, authority, unique id, SSL details).
pub const V2_MAX_BODY: usize = 516;
/// The most bytes a header of either version may take.
pub const MAX_HEADER: usize = V2_FIXED + V2_MAX_BODY;

/// A block of addresses, `192.0.2.0/24` or `2001:db8::/32`; a bare address is a block of
/// one. IPv4 clients seen on a dual-stack socket (`::ffff:a.b.c.d`) match IPv4 blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The block's first address (host bits cleared).
    addr: IpAddr,
    /// How many leading bits must match.
    prefix: u8,
}

impl Cidr {
    /// The block of `prefix` leading bits of `addr`; `None` if `prefix` is longer than
    /// the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let addr = addr.to_canonical();
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then(|| Cidr {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// True if `ip` lies in this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

/// `ip` with every bit after the first `prefix` cleared.
pub(crate) fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = if prefix == 0 {
                0
            } else {
                bits & (u32::MAX << (32 - u32::from(prefix.min(32))))
            };
            IpAddr::V4(kept.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = if prefix == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - u32::from(prefix.min(128))))
            };
            IpAddr::V6(kept.into())
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?}: not an IP address or block (a.b.c.d/n, x::y/n)"))?;
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| format!("{s:?}: the prefix length is not a number"))?,
            None if addr.to_canonical().is_ipv4() => 32,
            None => 128,
        };
        Cidr::new(addr, prefix).ok_or_else(|| format!("{s:?}: the prefix is too long"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Its length in bytes: what to take off the socket.
    pub len: usize,
    /// The client's address; `None` keeps the connection's own peer (v2 `LOCAL`, a family
    /// without addresses, v1 `UNKNOWN`).
    pub source: Option<SocketAddr>,
}

/// What the bytes so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A header may still come: every byte so far belongs to it.
    NeedMore,
    /// A whole header.
    Complete(Header),
}

/// Why bytes are not a PROXY header. Each closes the connection they came on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Neither `PROXY ` nor the v2 signature.
    NotProxy,
    /// A v1 line with no CRLF within 107 bytes.
    V1TooLong,
    /// A v1 line that does not parse.
    V1(String),
    /// A v2 header announcing more address and TLV bytes than allowed.
    V2TooLong(usize),
    /// A v2 header that does not parse.
    V2(String),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::NotProxy => f.write_str("no PROXY header (neither v1 nor v2)"),
            HeaderError::V1TooLong => write!(f, "PROXY v1 line longer than {V1_MAX} bytes"),
            HeaderError::V1(why) => write!(f, "bad PROXY v1 header: {why}"),
            HeaderError::V2TooLong(n) => {
                write!(
                    f,
                    "PROXY v2 header announces {n} bytes (at most {V2_MAX_BODY})"
                )
            }
            HeaderError::V2(why) => write!(f, "bad PROXY v2 header: {why}"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Frame and parse the start of a connection's input as a PROXY header. Stable under
/// appending: `NeedMore` never turns into an error the bytes so far already showed, and
/// a verdict on a complete header does not change with what follows it.
pub fn parse(input: &[u8]) -> Result<Parsed, HeaderError> {
    let Some(&first) = input.first() else {
        return Ok(Parsed::NeedMore);
    };
    if first == V2_SIGNATURE[0] {
        parse_v2(input)
    } else {
        parse_v1(input)
    }
}

/// A v1 header: `PROXY TCP4|TCP6|UNKNOWN ...\r\n`, at most 107 bytes.
fn parse_v1(input: &[u8]) -> Result<Parsed, HeaderError> {
    const PREFIX: &[u8] = b"PROXY ";
    let seen = input.len().min(PREFIX.len());
    if input[..seen] != PREFIX[..seen] {
        return Err(HeaderError::NotProxy);
    }
    let window = &input[..input.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        return if input.len() >= V1_MAX {
            Err(HeaderError::V1TooLong)
        } else {
            Ok(Parsed::NeedMore)
        };
    };
    let len = cr + 2;
    if input.len() < len {
        return Ok(Parsed::NeedMore);
    }
    if len > V1_MAX {
        return Err(HeaderError::V1TooLong);
    }
    // The line ends in CRLF, whatever it holds: a CR followed by anything else is
    // malformed (ppp checks the ending only for the address families it reads).
    if input[cr + 1] != b'\n' {
        return Err(HeaderError::V1("a CR not followed by LF".into()));
    }
    let header = v1::Header::try_from(&input[..len]).map_err(|e| HeaderError::V1(e.to_string()))?;
    let source = match header.addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        v1::Addresses::Unknown => None,
    };
    Ok(Parsed::Complete(Header { len, source }))
}

/// A v2 header: signature, version and command, family and protocol, length, then the
/// addresses and TLVs (skipped).
fn parse_v2(input: &[u8]) -> Result<Parsed, HeaderError> {
    let seen = input.len().min(V2_SIGNATURE.len());
    if input[..seen] != V2_SIGNATURE[..seen] {
        return Err(HeaderError::V2("bad signature".into()));
    }
    if input.len() < V2_FIXED {
        return Ok(Parsed::NeedMore);
    }
    // Refuse an oversized header before waiting for its bytes.
    let body = usize::from(u16::from_be_bytes([input[14], input[15]]));
    if body > V2_MAX_BODY {
        return Err(HeaderError::V2TooLong(body));
    }
    let header = match v2::Header::try_from(input) {
        Ok(header) => header,
        Err(v2::ParseError::Incomplete(_) | v2::ParseError::Partial(..)) => {
            return Ok(Parsed::NeedMore);
        }
        Err(err) => return Err(HeaderError::V2(err.to_string())),
    };
    let source = match (header.command, header.addresses) {
        (v2::Command::Local, _) => None,
        (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        (v2::Command::Proxy, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => None,
    };
    Ok(Parsed::Complete(Header {
        len: V2_FIXED + body,
        source,
    }))
}

/// A header being read off one socket: the bytes already taken (all of them header).
#[derive(Debug)]
pub(crate) struct HeaderRead {
    /// Header bytes taken off the socket so far.
    taken: Vec<u8>,
}

impl HeaderRead {
    /// Nothing read yet.
    pub(crate) fn new() -> HeaderRead {
        HeaderRead { taken: Vec::new() }
    }

    /// Read what the socket has of the header. `Ok(None)`: more is needed and the socket
    /// has nothing now (a nonblocking socket) or its read timeout passed (a blocking one:
    /// `WouldBlock`/`TimedOut` are reported as errors there). `Ok(Some)`: the header is
    /// taken and the socket holds what follows it. An invalid header is `InvalidData`,
    /// an EOF before it is complete `UnexpectedEof`.
    pub(crate) fn advance(&mut self, socket: &impl AsFd) -> io::Result<Option<Header>> {
        let mut peeked = [0u8; MAX_HEADER];
        loop {
            let room = MAX_HEADER - self.taken.len();
            let n = match recv(socket, &mut peeked[..room], libc::MSG_PEEK) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "EOF before the PROXY header was complete",
                    ));
                }
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            let start = self.taken.len();
            self.taken.extend_from_slice(&peeked[..n]);
            let verdict = parse(&self.taken);
            let keep = match verdict {
                Ok(Parsed::Complete(header)) => header.len - start,
                // Every byte peeked belongs to the header: take them all.
                Ok(Parsed::NeedMore) => n,
                Err(err) => return Err(io::Error::new(io::ErrorKind::InvalidData, err)),
            };
            self.taken.truncate(start + keep);
            take(socket, keep)?;
            if let Ok(Parsed::Complete(header)) = verdict {
                return Ok(Some(header));
            }
        }
    }
}

/// Take exactly `n` bytes that a peek showed are waiting.
fn take(socket: &impl AsFd, n: usize) -> io::Result<()> {
    let mut sink = [0u8; MAX_HEADER];
    let mut left = n;
    while left > 0 {
        match recv(socket, &mut sink[..left], 0) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(got) => left -= got,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// `recv(2)` with `flags` into `buf`.
fn recv(socket: &impl AsFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    crate::io::sys::recv_flags(socket.as_fd(), buf, flags)
}

/// Which header `--send-proxy` writes before a proxied connection's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum SendProxy {
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

/// The header that tells an upstream that `client` connected to `local`.
pub fn encode(version: SendProxy, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (client, local) = (canonical(client), canonical(local));
    match version {
        SendProxy::V1 => match (client, local) {
            (SocketAddr::V4(c), SocketAddr::V4(l)) => format!(
                "PROXY TCP4 {} {} {} {}\r\n",
                c.ip(),
                l.ip(),
                c.port(),
                l.port()
            )
            .into_bytes(),
            (c, l) => {
                let v6 = |a: SocketAddr| match a.ip() {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                format!(
                    "PROXY TCP6 {} {} {} {}\r\n",
                    v6(c),
                    v6(l),
                    c.port(),
                    l.port()
                )
                .into_bytes()
            }
        },
        SendProxy::V2 => {
            let mut out = Vec::with_capacity(V2_FIXED + 36);
            out.extend_from_slice(V2_SIGNATURE);
            out.push(0x21); // version 2, PROXY
            match (client, local) {
                (SocketAddr::V4(c), SocketAddr::V4(l)) => {
                    out.push(0x11); // TCP over IPv4
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&c.ip().octets());
                    out.extend_from_slice(&l.ip().octets());
                    out.extend_from_slice(&c.port().to_be_bytes());
                    out.extend_from_slice(&l.port().to_be_bytes());
                }
                (c, l) => {
                    let v6 = |a: SocketAddr| match a.ip() {
                        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                        IpAddr::V6(v6) => v6.octets(),
                    };
                    out.push(0x21); // TCP over IPv6
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&v6(c));
                    out.extend_from_slice(&v6(l));
                    out.extend_from_slice(&c.port().to_be_bytes());
                    out.extend_from_slice(&l.port().to_be_bytes());
                }
            }
            out
        }
    }
}

/// The header for a client without an IP address (a Unix-socket client): v1 `UNKNOWN`,
/// v2 `LOCAL`; the receiver keeps the connection's own peer.
pub fn encode_unknown(version: SendProxy) -> Vec<u8> {
    match version {
        SendProxy::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        SendProxy::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            out.extend_from_slice(&[0x20, 0x00, 0, 0]);
            out
        }
    }
}

/// `addr` with an IPv4-mapped IPv6 address written as IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(input: &[u8]) -> Header {
        match parse(input) {
            Ok(Parsed::Complete(header)) => header,
            other => panic!("{input:?}: {other:?}"),
        }
    }

    #[test]
    fn both_versions_round_trip_and_every_prefix_needs_more() {
        let client: SocketAddr = "192.0.2.7:4711".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let client6: SocketAddr = "[2001:db8::7]:4711".parse().unwrap();
        for version in [SendProxy::V1, SendProxy::V2] {
            for (c, l) in [(client, local), (client6, local)] {
                let bytes = encode(version, c, l);
                let header = complete(&bytes);
                assert_eq!(header.len, bytes.len());
                assert_eq!(header.source, Some(c));
                for cut in 0..bytes.len() {
                    assert_eq!(
                        parse(&bytes[..cut]),
                        Ok(Parsed::NeedMore),
                        "{version:?} {cut}"
                    );
                }
                let mut more = bytes.clone();
                more.extend_from_slice(b"GET / HTTP/1.1\r\n");
                assert_eq!(complete(&more), header);
            }
        }
    }

    #[test]
    fn local_and_unknown_keep_the_real_peer() {
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(complete(&local).source, None);
        assert_eq!(complete(b"PROXY UNKNOWN\r\n").source, None);
        for version in [SendProxy::V1, SendProxy::V2] {
            let bytes = encode_unknown(version);
            assert_eq!(
                complete(&bytes),
                Header {
                    len: bytes.len(),
                    source: None
                }
            );
        }
    }

    #[test]
    fn bad_headers_are_named() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(HeaderError::NotProxy));
        // An UNKNOWN line must still end in CRLF (found by the fuzz target).
        assert!(matches!(
            parse(b"PROXY UNKNOWN x\r\x01\x00\n"),
            Err(HeaderError::V1(_))
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 junk\r\n"),
            Err(HeaderError::V1(_))
        ));
        assert_eq!(parse(&[b'P'; 1][..]), Ok(Parsed::NeedMore));
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(parse(&long), Err(HeaderError::V1TooLong));
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&big), Err(HeaderError::V2TooLong(0xffff)));
        assert!(matches!(parse(b"\r\n\r\nX"), Err(HeaderError::V2(_))));
    }

    #[test]
    fn blocks_contain_their_addresses() {
        let block: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(block.contains("10.1.200.3".parse().unwrap()));
        assert!(block.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!block.contains("10.2.0.1".parse().unwrap()));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(!one.contains("127.0.0.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }
}
