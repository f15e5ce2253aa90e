//! The PROXY protocol header parser (`tcp_reactor::proxy_header::parse`), which both server
//! models call on a trusted client's first bytes as they arrive. Invariants besides "no
//! panic": every prefix's verdict is stable as bytes are appended (a prefix that needs
//! more never hides an error or a different header, an error stays one, a complete header
//! stays the same header); "need more" only below the header size limit; a complete
//! header lies inside the input and within the limits of its version; and a header the
//! encoder writes from addresses the fuzzer picks parses back to the same client.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use tcp_reactor::proxy_header::{MAX_HEADER, Parsed, SendProxy, V1_MAX, encode, parse};

fuzz_target!(|input: &[u8]| {
    let whole = parse(input);
    for cut in 0..=input.len() {
        let prefix = parse(&input[..cut]);
        match &prefix {
            Ok(Parsed::NeedMore) => assert!(cut < MAX_HEADER, "need more at {cut} bytes"),
            Ok(Parsed::Complete(header)) => {
                assert_eq!(&whole, &prefix, "a complete header changed with more bytes");
                assert!(header.len <= cut && header.len <= MAX_HEADER);
                if input[0] == b'P' {
                    assert!(header.len <= V1_MAX);
                    assert_eq!(&input[header.len - 2..header.len], b"\r\n");
                }
            }
            Err(_) => assert!(
                whole.is_err(),
                "an error at {cut} bytes, {whole:?} on all {} bytes",
                input.len()
            ),
        }
    }
    // The encoder's headers, from addresses and ports taken from the input.
    if input.len() >= 36 {
        let port = |at: usize| u16::from_be_bytes([input[at], input[at + 1]]);
        let v4 = |at: usize| {
            IpAddr::V4(Ipv4Addr::new(
                input[at],
                input[at + 1],
                input[at + 2],
                input[at + 3],
            ))
        };
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&input[16..32]);
        let v6 = IpAddr::V6(Ipv6Addr::from(octets));
        let client = if input[0] & 1 == 0 { v4(4) } else { v6 };
        let client = SocketAddr::new(client, port(32));
        let local = SocketAddr::new(v4(8), port(34));
        for version in [SendProxy::V1, SendProxy::V2] {
            let bytes = encode(version, client, local);
            let Ok(Parsed::Complete(header)) = parse(&bytes) else {
                panic!("{version:?} header of {client} does not parse: {bytes:?}");
            };
            assert_eq!(header.len, bytes.len());
            let source = header.source.expect("a PROXY header names its client");
            assert_eq!(source.ip().to_canonical(), client.ip().to_canonical());
            assert_eq!(source.port(), client.port());
        }
    }
});
