//! Default deadlines: an HTTP request head that stops arriving, or trickles in a byte at a
//! time, gets `408` and the connection is closed after the header timeout, while whole
//! requests arm no timer and a head completed in time is answered.

use std::time::{Duration, Instant};

use fixtures::client::{connect, expect_http_reply, recv_to_end, send, trickle_until_closed};
use fixtures::for_each_model;
use tcp_reactor::protocols::Http;
use tcp_reactor::protocols::{
    HTTP_HEADER_TIMEOUT as HEADER_TIMEOUT, HTTP_KEEPALIVE_TIMEOUT as KEEPALIVE_TIMEOUT,
};
use tcp_reactor::{Model, Server};

for_each_model!(
    a_stalled_request_head_gets_408_after_the_header_timeout,
    a_request_head_trickled_a_byte_at_a_time_gets_408_at_the_header_timeout,
    a_head_completed_in_pieces_within_the_timeout_is_answered,
);

/// The header timeout these tests use (the default is a minute).
const SHORT: Duration = Duration::from_millis(300);

/// Start an HTTP server with the short header timeout.
fn http_server(model: Model) -> tcp_reactor::Running {
    let http = Http::default().with_header_timeout(Some(SHORT));
    fixtures::server::start_server(Server::new(http), model, tcp_reactor::Config::default())
}

fn a_stalled_request_head_gets_408_after_the_header_timeout(model: Model) {
    let running = http_server(model);
    let mut client = connect(running.local_addr());
    let sent = Instant::now();
    send(&mut client, b"GET / HTTP/1.1\r\nHost: a\r\n");
    let reply = recv_to_end(&mut client);
    let waited = sent.elapsed();
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{reply}"
    );
    assert!(
        waited >= SHORT,
        "closed after {waited:?}, before the timeout"
    );
}

fn a_request_head_trickled_a_byte_at_a_time_gets_408_at_the_header_timeout(model: Model) {
    let running = http_server(model);
    let client = connect(running.local_addr());
    let mut head = b"GET / HTTP/1.1\r\nX-Padding: ".to_vec();
    head.extend_from_slice(&[b'a'; 300]);
    head.extend_from_slice(b"\r\nHost: a\r\n\r\n");
    // Every byte is read at once, but none moves the head's deadline.
    let trickled = trickle_until_closed(&client, &head, true);
    assert!(
        trickled.sent < head.len(),
        "answered only after the whole head ({} bytes) trickled in",
        head.len()
    );
    let reply = String::from_utf8_lossy(&trickled.received);
    assert!(
        reply.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{reply}"
    );
}

fn a_head_completed_in_pieces_within_the_timeout_is_answered(model: Model) {
    let running = http_server(model);
    let mut client = connect(running.local_addr());
    send(&mut client, b"GET / HTTP/1.1\r\n");
    std::thread::sleep(SHORT / 3);
    send(&mut client, b"Host: a\r\n\r\n");
    expect_http_reply(&mut client, &http_ok());
    // The timer was cancelled with the head: the connection outlives the timeout.
    std::thread::sleep(SHORT * 2);
    send(&mut client, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_http_reply(&mut client, &http_ok());
}

/// The reply `Http::default()` gives a keep-alive request.
fn http_ok() -> Vec<u8> {
    let body = tcp_reactor::protocols::HTTP_HELLO;
    let mut reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(body);
    reply
}

#[test]
fn defaults_are_nginx_like() {
    assert_eq!(HEADER_TIMEOUT, Duration::from_secs(60));
    assert_eq!(KEEPALIVE_TIMEOUT, Duration::from_secs(75));
}
