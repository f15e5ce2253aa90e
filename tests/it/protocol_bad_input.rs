//! Hostile bytes against the shipped protocols: invalid UTF-8, NULs and over-long lines to
//! `seed` and `chat`. Both treat input as bytes; neither may panic, and one bad client
//! must not disturb the others.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use fixtures::client::{connect, recv_to_end};
use fixtures::handlers::Recorded;
use fixtures::server::{config, serve, stop_checked};
use fixtures::{PATIENCE, for_each_model};
use tcp_reactor::protocols::{Chat, SEED_REPLY, Seed};
use tcp_reactor::{CloseReason, Model, Running};

for_each_model!(
    seed_answers_invalid_utf8_with_its_reply_and_closes,
    chat_relays_invalid_utf8_lines_byte_for_byte,
    chat_closes_a_client_with_an_over_long_line_and_the_room_carries_on,
);

/// Bytes that are not UTF-8, with NULs and a CR LF ending.
const BAD_LINE: &[u8] = b"\xff\xfe \xc0\x80 \xed\xa0\x80 \0nul\0 \xe2\x82\r\n";

fn seed_answers_invalid_utf8_with_its_reply_and_closes(model: Model) {
    let (handler, closes) = Recorded::new(Seed);
    let server = serve(handler, config(), model);
    let mut client = connect(server.local_addr());
    client.write_all(BAD_LINE).expect("write");
    assert_eq!(recv_to_end(&mut client), SEED_REPLY, "{model:?}");
    // Nothing at all, then EOF: no reply, a clean close.
    let mut quiet = connect(server.local_addr());
    quiet.shutdown(Shutdown::Write).expect("half-close");
    assert!(recv_to_end(&mut quiet).is_empty(), "{model:?}");
    assert!(closes.wait_for(CloseReason::Handler, 1, PATIENCE));
    assert!(closes.wait_for(CloseReason::Eof, 1, PATIENCE));
    stop_checked(server);
}

/// Read one `\n`-terminated line as raw bytes (newline included).
#[track_caller]
fn read_raw_line(stream: &mut TcpStream) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        stream.read_exact(&mut byte).expect("a whole line");
        line.push(byte[0]);
    }
    line
}

/// Wait until the server has `n` members connected.
#[track_caller]
fn wait_members(server: &Running, n: u64) {
    fixtures::server::wait_connections(server, n);
}

fn chat_relays_invalid_utf8_lines_byte_for_byte(model: Model) {
    let server = serve(Chat::new(), config(), model);
    let mut sender = connect(server.local_addr());
    let mut listener = connect(server.local_addr());
    wait_members(&server, 2);
    sender.write_all(BAD_LINE).expect("write");
    let line = read_raw_line(&mut listener);
    // `[<id>] ` then the bytes as sent, the CR dropped.
    let close = line.iter().position(|&b| b == b']').expect("an id prefix");
    assert_eq!(line[0], b'[');
    assert_eq!(&line[close..close + 2], b"] ");
    let mut expected = BAD_LINE[..BAD_LINE.len() - 2].to_vec();
    expected.push(b'\n');
    assert_eq!(&line[close + 2..], &expected[..], "{model:?}");
    stop_checked(server);
}

fn chat_closes_a_client_with_an_over_long_line_and_the_room_carries_on(model: Model) {
    let (handler, closes) = Recorded::new(Chat::with_max_line(1024));
    let server = serve(handler, config(), model);
    let mut hostile = connect(server.local_addr());
    let mut a = connect(server.local_addr());
    let mut b = connect(server.local_addr());
    wait_members(&server, 3);
    // An endless line of bytes that are not UTF-8.
    hostile.write_all(&[0xFF; 4096]).expect("write");
    let reply = recv_to_end(&mut hostile);
    assert!(
        reply.starts_with(b"error: line too long"),
        "{model:?}: {:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(closes.wait_for(CloseReason::Handler, 1, PATIENCE));
    a.write_all(b"still here\n").expect("write");
    let line = read_raw_line(&mut b);
    assert!(line.ends_with(b"] still here\n"), "{model:?}");
    stop_checked(server);
}
