//! Awkward but legal input: half-close, one-byte writes, random chunking, empty
//! connections, binary and invalid UTF-8 bytes; and serving over IPv6 loopback.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use fixtures::client::{
    connect, echo_roundtrip, pseudo_random_bytes, recv_to_end, send_and_half_close,
};
use fixtures::for_each_model;
use fixtures::handlers::{Lines, Recorded, decode_lines};
use fixtures::process::{ServeCommand, stat};
use fixtures::server::{config, serve, stop_checked, wait_connections};
use tcp_reactor::protocols::Echo;
use tcp_reactor::{CloseReason, Model, Server};

for_each_model!(
    half_close_still_delivers_the_whole_reply,
    one_byte_writes_are_echoed_in_order,
    randomly_chunked_writes_are_echoed_exactly,
    empty_connections_close_cleanly_with_nothing_sent,
    binary_and_invalid_utf8_input_is_echoed_exactly,
    binary_and_invalid_utf8_lines_are_framed_as_bytes,
    ipv6_loopback_serves_echo,
);

fn half_close_still_delivers_the_whole_reply(model: Model) {
    let server = serve(Echo, config(), model);
    let payload = pseudo_random_bytes(1, 4 << 20);
    let mut client = connect(server.local_addr());
    let back = send_and_half_close(&mut client, &payload);
    assert!(back == payload, "{model:?}: echo after half-close differs");
    // A framed protocol answers every complete line before the EOF; the partial
    // line after the last newline is dropped with the connection.
    let (lines, closes) = Recorded::new(Lines {
        one_per_call: false,
    });
    let line_server = serve(lines, config(), model);
    let mut client = connect(line_server.local_addr());
    let reply = send_and_half_close(&mut client, b"first\nsecond\npartial");
    assert_eq!(
        decode_lines(&reply),
        Some(vec![b"first".to_vec(), b"second".to_vec()])
    );
    assert!(closes.wait_for(CloseReason::Eof, 1, fixtures::PATIENCE));
    stop_checked(line_server);
    let stats = stop_checked(server);
    assert_eq!(stats.bytes_in, payload.len() as u64);
    assert_eq!(stats.bytes_out, payload.len() as u64);
}

fn one_byte_writes_are_echoed_in_order(model: Model) {
    let server = serve(Echo, config(), model);
    let mut client = connect(server.local_addr());
    client.set_nodelay(true).expect("nodelay");
    let payload = pseudo_random_bytes(2, 2000);
    // Half of them as lockstep roundtrips, half written back to back.
    for byte in &payload[..1000] {
        echo_roundtrip(&mut client, std::slice::from_ref(byte));
    }
    let mut writer = client.try_clone().expect("clone");
    let rest = payload[1000..].to_vec();
    let sending = thread::spawn(move || {
        for byte in rest {
            writer.write_all(&[byte]).expect("write one byte");
        }
        writer.shutdown(Shutdown::Write).expect("half-close");
    });
    let back = recv_to_end(&mut client);
    sending.join().expect("writer");
    assert!(back == payload[1000..], "{model:?}: one-byte echo differs");
    stop_checked(server);
}

fn randomly_chunked_writes_are_echoed_exactly(model: Model) {
    // Small reads, so chunk boundaries on both sides land everywhere.
    let config = config().with_read_chunk(1000).with_read_budget(3000);
    let server = serve(Echo, config, model);
    let payload = pseudo_random_bytes(3, 1 << 20);
    let sizes = pseudo_random_bytes(4, 4096);
    let mut client = connect(server.local_addr());
    client.set_nodelay(true).expect("nodelay");
    let mut writer = client.try_clone().expect("clone");
    let to_send = payload.clone();
    let sending = thread::spawn(move || {
        let mut offset = 0;
        for (i, size) in sizes.iter().cycle().enumerate() {
            if offset == to_send.len() {
                break;
            }
            let n = (*size as usize * 37 % 5000 + 1).min(to_send.len() - offset);
            writer
                .write_all(&to_send[offset..offset + n])
                .expect("write");
            offset += n;
            if i % 64 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        writer.shutdown(Shutdown::Write).expect("half-close");
    });
    let back = recv_to_end(&mut client);
    sending.join().expect("writer");
    assert!(back == payload, "{model:?}: chunked echo differs");
    stop_checked(server);
}

fn empty_connections_close_cleanly_with_nothing_sent(model: Model) {
    let (handler, closes) = Recorded::new(Echo);
    let server = serve(handler, config(), model);
    // Half-closes without a byte.
    let mut quiet = connect(server.local_addr());
    quiet.shutdown(Shutdown::Write).expect("half-close");
    assert!(recv_to_end(&mut quiet).is_empty());
    // Connects and closes at once, many times.
    for _ in 0..100 {
        drop(connect(server.local_addr()));
    }
    wait_connections(&server, 0);
    assert!(closes.wait_for(CloseReason::Eof, 101, fixtures::PATIENCE));
    let stats = stop_checked(server);
    assert_eq!(stats.accepted, 101);
    assert_eq!(stats.closed_by(CloseReason::Eof), 101, "{model:?}: {stats}");
    assert_eq!(stats.bytes_in, 0);
    assert_eq!(stats.bytes_out, 0);
}

/// Every byte value, NULs, and byte sequences that are not UTF-8: overlong encodings,
/// lone continuation bytes, UTF-16 surrogates, bytes 0xF8..0xFF, a truncated sequence.
fn hostile_bytes() -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..=255u8).cycle().take(256 * 16).collect();
    for bad in [
        &b"\xC0\x80"[..],
        b"\x80\x80\x80",
        b"\xED\xA0\x80",
        b"\xF8\x88\x80\x80\x80",
        b"\xFF\xFE\xFD",
        b"\0\0\0",
        b"\xE2\x82",
    ] {
        bytes.extend_from_slice(bad);
    }
    bytes
}

fn binary_and_invalid_utf8_input_is_echoed_exactly(model: Model) {
    let server = serve(Echo, config(), model);
    let payload = hostile_bytes();
    let mut client = connect(server.local_addr());
    echo_roundtrip(&mut client, &payload);
    let back = send_and_half_close(&mut client, &payload);
    assert!(back == payload, "{model:?}");
    stop_checked(server);
}

fn binary_and_invalid_utf8_lines_are_framed_as_bytes(model: Model) {
    let server = serve(Lines { one_per_call: true }, config(), model);
    let mut input = hostile_bytes();
    input.push(b'\n');
    let mut client = connect(server.local_addr());
    let reply = send_and_half_close(&mut client, &input);
    let expected = fixtures::handlers::reference_lines(&input);
    assert_eq!(decode_lines(&reply), Some(expected), "{model:?}");
    stop_checked(server);
}

/// True if `::1` can be bound here (IPv6 loopback configured).
fn ipv6_loopback_available() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

fn ipv6_loopback_serves_echo(model: Model) {
    if !ipv6_loopback_available() {
        eprintln!("SKIPPED ipv6_loopback_serves_echo: ::1 is not configured on this machine");
        return;
    }
    let v6: SocketAddr = "[::1]:0".parse().expect("address");
    let running = Server::new(Echo)
        .config(config())
        .model(model)
        .bind(v6)
        .expect("bind [::1]:0");
    let addr = running.local_addr();
    assert!(addr.is_ipv6(), "{model:?}: bound {addr}");
    let mut client = TcpStream::connect(addr).expect("connect over IPv6");
    fixtures::client::set_timeouts(&client, fixtures::PATIENCE);
    assert!(client.peer_addr().expect("peer").is_ipv6());
    echo_roundtrip(&mut client, b"over ::1\n");
    let back = send_and_half_close(&mut client, &pseudo_random_bytes(5, 256 * 1024));
    assert_eq!(back, pseudo_random_bytes(5, 256 * 1024));
    drop(client);
    wait_connections(&running, 0);
    let stats = stop_checked(running);
    assert_eq!(stats.accepted, 1);
}

#[test]
fn ipv6_loopback_is_served_by_the_command_line() {
    if !ipv6_loopback_available() {
        eprintln!("SKIPPED: ::1 is not configured on this machine");
        return;
    }
    let server = match ServeCommand::default().addr("[::1]:0").spawn() {
        Ok(server) => server,
        Err(err) => panic!("cannot start tcp-reactor serve on [::1]:0: {err}"),
    };
    assert!(server.addr.is_ipv6());
    let mut client = connect(server.addr);
    echo_roundtrip(&mut client, b"cli over ::1\n");
    drop(client);
    let stats = server.stop();
    assert_eq!(stat(&stats, "accepted"), 1);
}
