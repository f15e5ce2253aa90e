//! The `http` protocol over real sockets on 127.0.0.1, under every model: keep-alive,
//! pipelining, `Connection: close`, HTTP/1.0, request bodies (sized and chunked), the
//! `Date` line, `Host` checks, versions, malformed and oversized requests, `CONNECT`, and
//! connections spread over several workers.

use fixtures::client::{connect, expect_eof, expect_http_reply, recv_to_end, send};
use fixtures::for_each_model;
use fixtures::server::{start, start_server};
use tcp_reactor::protocols::HTTP_MAX_HEAD as MAX_HEAD;
use tcp_reactor::protocols::Http;
use tcp_reactor::{Config, Model, Server};

const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, world!\n";
const OK_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n";
const OK_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\
Connection: close\r\n\r\nHello, world!\n";
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

fn keep_alive_serves_many_requests_on_one_connection(model: Model) {
    let server = start(Http::default(), model);
    let mut stream = connect(server.local_addr());
    for n in 0..200 {
        send(
            &mut stream,
            format!("GET /page/{n} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
        );
        expect_http_reply(&mut stream, OK);
    }
}

fn pipelined_requests_are_answered_in_order(model: Model) {
    let server = start(Http::default(), model);
    let mut stream = connect(server.local_addr());
    let mut batch = Vec::new();
    let mut want = Vec::new();
    for n in 0..300 {
        if n % 3 == 0 {
            batch.extend_from_slice(b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n");
            want.extend_from_slice(OK_HEAD);
        } else {
            batch.extend_from_slice(GET);
            want.extend_from_slice(OK);
        }
    }
    send(&mut stream, &batch);
    expect_http_reply(&mut stream, &want);
    // Still open afterwards.
    send(&mut stream, GET);
    expect_http_reply(&mut stream, OK);
}

fn connection_close_is_answered_then_closed(model: Model) {
    let server = start(Http::default(), model);
    let mut stream = connect(server.local_addr());
    send(&mut stream, GET);
    expect_http_reply(&mut stream, OK);
    send(
        &mut stream,
        b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    );
    expect_http_reply(&mut stream, OK_CLOSE);
    expect_eof(&mut stream);
}

fn http10_closes_unless_keep_alive(model: Model) {
    let server = start(Http::default(), model);
    let mut stream = connect(server.local_addr());
    send(
        &mut stream,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    expect_http_reply(
        &mut stream,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\
Connection: keep-alive\r\n\r\nHello, world!\n",
    );
    send(&mut stream, b"GET / HTTP/1.0\r\n\r\n");
    expect_http_reply(&mut stream, OK_CLOSE);
    expect_eof(&mut stream);
}

fn request_body_sent_in_pieces_is_skipped(model: Model) {
    let server = start(Http::default(), model);
    let mut stream = connect(server.local_addr());
    send(
        &mut stream,
        b"POST /form HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n01234",
    );
    send(&mut stream, b"56789");
    expect_http_reply(&mut stream, OK);
    send(&mut stream, GET);
    expect_http_reply(&mut stream, OK);
}

fn expect_continue_gets_100_before_the_body_is_sent(model: Model) {
    let server = start(Http::default(), model);
    let mut stream = connect(server.local_addr());
    send(
        &mut stream,
        b"PUT /up HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    expect_http_reply(&mut stream, b"HTTP/1.1 100 Continue\r\n\r\n");
    send(&mut stream, b"hello");
    expect_http_reply(&mut stream, OK);
}

/// Send `request` on a fresh connection and expect exactly `refusal`, then EOF.
#[track_caller]
fn expect_refused(model: Model, request: &[u8], refusal: &[u8]) {
    let server = start(Http::default(), model);
    let mut stream = connect(server.local_addr());
    send(&mut stream, request);
    expect_http_reply(&mut stream, refusal);
    expect_eof(&mut stream);
}

fn malformed_request_gets_400_then_close(model: Model) {
    expect_refused(
        model,
        b"GET / HTTP/1.1\r\nHost: test\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\
Connection: close\r\n\r\nBad Request\n",
    );
}

fn oversized_head_gets_431_then_close(model: Model) {
    let mut head = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    head.resize(MAX_HEAD + 100, b'x');
    expect_refused(
        model,
        &head,
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n\
Content-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n",
    );
}

fn connect_gets_501_then_close_and_no_tunnel(model: Model) {
    expect_refused(
        model,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        b"HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\n\
Content-Length: 16\r\nConnection: close\r\n\r\nNot Implemented\n",
    );
}

const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 12\r\nConnection: close\r\n\r\nBad Request\n";

fn every_reply_carries_a_current_date(model: Model) {
    let server = start(Http::default(), model);
    let mut stream = connect(server.local_addr());
    send(&mut stream, GET);
    let reply = fixtures::client::recv_exact(&mut stream, OK.len() + 37);
    let text = String::from_utf8_lossy(&reply);
    let date = text
        .split("\r\n")
        .find_map(|line| line.strip_prefix("Date: "))
        .unwrap_or_else(|| panic!("no Date: {text}"));
    let when = httpdate::parse_http_date(date).unwrap_or_else(|err| panic!("{date}: {err}"));
    let skew = match std::time::SystemTime::now().duration_since(when) {
        Ok(age) => age,
        Err(ahead) => ahead.duration(),
    };
    assert!(skew.as_secs() < 60, "Date {date} is off by {skew:?}");
}

fn host_is_required_once_and_valid(model: Model) {
    for request in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h/path\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
    ] {
        expect_refused(model, request, BAD_REQUEST);
    }
    let server = start(Http::default(), model);
    let mut stream = connect(server.local_addr());
    send(&mut stream, b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    expect_http_reply(&mut stream, OK);
}

fn versions_and_targets_get_nginxs_answers(model: Model) {
    // 1.2 is served as 1.1 (RFC 9110, 2.5).
    let server = start(Http::default(), model);
    let mut stream = connect(server.local_addr());
    send(&mut stream, b"GET / HTTP/1.2\r\nHost: test\r\n\r\n");
    expect_http_reply(&mut stream, OK);
    expect_refused(
        model,
        b"GET / HTTP/2.0\r\nHost: test\r\n\r\n",
        b"HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: text/plain\r\n\
Content-Length: 27\r\nConnection: close\r\n\r\nHTTP Version Not Supported\n",
    );
    let mut long = b"GET /".to_vec();
    long.resize(10 * 1024, b'a');
    long.extend_from_slice(b" HTTP/1.1\r\nHost: test\r\n\r\n");
    expect_refused(
        model,
        &long,
        b"HTTP/1.1 414 URI Too Long\r\nContent-Type: text/plain\r\n\
Content-Length: 13\r\nConnection: close\r\n\r\nURI Too Long\n",
    );
    expect_refused(model, b"GET * HTTP/1.1\r\nHost: test\r\n\r\n", BAD_REQUEST);
    send(&mut stream, b"OPTIONS * HTTP/1.1\r\nHost: test\r\n\r\n");
    expect_http_reply(&mut stream, OK);
}

fn chunked_request_bodies_are_decoded(model: Model) {
    let server = start(Http::default(), model);
    let mut stream = connect(server.local_addr());
    send(
        &mut stream,
        b"POST /up HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhel",
    );
    send(
        &mut stream,
        b"lo\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n",
    );
    send(&mut stream, b"X-Check: 1\r\n\r\n");
    expect_http_reply(&mut stream, OK);
    // A body in one piece with a pipelined request behind it.
    send(
        &mut stream,
        b"PUT / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: test\r\n\r\n",
    );
    expect_http_reply(&mut stream, &[OK, OK].concat());
    // A framing error: 400, then close.
    send(
        &mut stream,
        b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
    );
    expect_http_reply(&mut stream, BAD_REQUEST);
    expect_eof(&mut stream);
}

for_each_model!(
    every_reply_carries_a_current_date,
    host_is_required_once_and_valid,
    versions_and_targets_get_nginxs_answers,
    chunked_request_bodies_are_decoded,
    connect_gets_501_then_close_and_no_tunnel,
    keep_alive_serves_many_requests_on_one_connection,
    pipelined_requests_are_answered_in_order,
    connection_close_is_answered_then_closed,
    http10_closes_unless_keep_alive,
    request_body_sent_in_pieces_is_skipped,
    expect_continue_gets_100_before_the_body_is_sent,
    malformed_request_gets_400_then_close,
    oversized_head_gets_431_then_close,
    a_full_server_answers_503,
);

fn a_full_server_answers_503(model: Model) {
    let config = Config::default().with_max_connections(1);
    let server = start_server(Server::new(Http::default()), model, config);
    let mut first = connect(server.local_addr());
    send(&mut first, GET);
    expect_http_reply(&mut first, OK);
    let mut refused = connect(server.local_addr());
    assert_eq!(
        String::from_utf8_lossy(&recv_to_end(&mut refused)),
        String::from_utf8_lossy(tcp_reactor::protocols::HTTP_BUSY)
    );
    assert!(tcp_reactor::protocols::HTTP_BUSY.starts_with(b"HTTP/1.1 503 "));
    send(&mut first, GET);
    expect_http_reply(&mut first, OK);
}

#[test]
fn connections_spread_over_two_reactor_workers() {
    let server = start_server(
        Server::new(Http::default()).workers(2),
        Model::Reactor,
        Config::default(),
    );
    // Both workers poll the one listening socket and each client wakes both: whichever
    // accepts first takes it. Clients arriving one at a time reach both workers (a burst
    // may all go to one, so the test does not make one).
    let mut streams = Vec::new();
    let mut per_worker = server.accepted_by_worker();
    while streams.len() < 64 || per_worker.contains(&0) {
        assert!(
            streams.len() < 1000,
            "one worker never accepts: {per_worker:?}"
        );
        let mut stream = connect(server.local_addr());
        send(&mut stream, GET);
        expect_http_reply(&mut stream, OK);
        streams.push(stream);
        per_worker = server.accepted_by_worker();
    }
    assert_eq!(
        per_worker.iter().sum::<u64>(),
        streams.len() as u64,
        "{per_worker:?}"
    );
    eprintln!(
        "{} clients one at a time: accepted by worker {per_worker:?}",
        streams.len()
    );
}
