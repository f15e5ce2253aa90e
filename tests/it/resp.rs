//! The `resp` protocol over real sockets on 127.0.0.1, under every model: each command,
//! pipelined batches, inline commands, errors that keep the client, broken framing that
//! closes it, and one store shared by every connection and worker.

use std::net::TcpStream;

use fixtures::client::{connect, expect_eof, expect_reply, recv_exact, recv_to_end, send};
use fixtures::for_each_model;
use fixtures::server::{start, start_server};
use tcp_reactor::protocols::{RESP_OOM, RESP_STORE_ENTRY_OVERHEAD, Resp};
use tcp_reactor::{Config, Model, Server};

/// Encode a command as a RESP multibulk array.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut wire = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        wire.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        wire.extend_from_slice(arg);
        wire.extend_from_slice(b"\r\n");
    }
    wire
}

/// Send one command and check its reply.
#[track_caller]
fn call(stream: &mut TcpStream, args: &[&[u8]], want: &[u8]) {
    send(stream, &command(args));
    expect_reply(stream, want);
}

fn each_command_gets_its_reply(model: Model) {
    let server = start(Resp::default(), model);
    let mut s = connect(server.local_addr());
    call(&mut s, &[b"PING"], b"+PONG\r\n");
    call(&mut s, &[b"PING", b"hey"], b"$3\r\nhey\r\n");
    call(&mut s, &[b"ECHO", b"a b"], b"$3\r\na b\r\n");
    call(&mut s, &[b"GET", b"k"], b"$-1\r\n");
    call(&mut s, &[b"SET", b"k", b"value"], b"+OK\r\n");
    call(&mut s, &[b"GET", b"k"], b"$5\r\nvalue\r\n");
    call(&mut s, &[b"EXISTS", b"k", b"missing", b"k"], b":2\r\n");
    call(&mut s, &[b"INCR", b"counter"], b":1\r\n");
    call(&mut s, &[b"INCR", b"counter"], b":2\r\n");
    call(&mut s, &[b"DEL", b"k", b"counter", b"missing"], b":2\r\n");
    call(&mut s, &[b"GET", b"k"], b"$-1\r\n");
    call(
        &mut s,
        &[b"CONFIG", b"GET", b"save"],
        b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n",
    );
    call(&mut s, &[b"COMMAND", b"DOCS"], b"*0\r\n");
    call(&mut s, &[b"QUIT"], b"+OK\r\n");
    expect_eof(&mut s);
}

fn pipelined_batch_gets_every_reply_in_order(model: Model) {
    let server = start(Resp::default(), model);
    let mut s = connect(server.local_addr());
    let mut batch = Vec::new();
    let mut want = Vec::new();
    for n in 0..1000 {
        let key = format!("key:{n}");
        let value = format!("value-{n}");
        batch.extend(command(&[b"SET", key.as_bytes(), value.as_bytes()]));
        batch.extend(command(&[b"GET", key.as_bytes()]));
        batch.extend_from_slice(b"PING\r\n");
        want.extend_from_slice(b"+OK\r\n");
        want.extend_from_slice(format!("${}\r\n{value}\r\n+PONG\r\n", value.len()).as_bytes());
    }
    send(&mut s, &batch);
    expect_reply(&mut s, &want);
}

fn large_value_round_trips(model: Model) {
    let server = start(Resp::default(), model);
    let mut s = connect(server.local_addr());
    let value: Vec<u8> = (0..200_000u32).map(|n| (n % 251) as u8).collect();
    call(&mut s, &[b"SET", b"big", &value], b"+OK\r\n");
    let mut want = format!("${}\r\n", value.len()).into_bytes();
    want.extend_from_slice(&value);
    want.extend_from_slice(b"\r\n");
    call(&mut s, &[b"GET", b"big"], &want);
}

fn inline_commands_work(model: Model) {
    let server = start(Resp::default(), model);
    let mut s = connect(server.local_addr());
    send(&mut s, b"PING\r\n");
    expect_reply(&mut s, b"+PONG\r\n");
    send(&mut s, b"set greeting hello\nget greeting\r\n");
    expect_reply(&mut s, b"+OK\r\n$5\r\nhello\r\n");
}

fn errors_keep_the_client(model: Model) {
    let server = start(Resp::default(), model);
    let mut s = connect(server.local_addr());
    call(
        &mut s,
        &[b"FLUSHEVERYTHING", b"now"],
        b"-ERR unknown command 'FLUSHEVERYTHING', with args beginning with: 'now' \r\n",
    );
    call(
        &mut s,
        &[b"GET"],
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    call(
        &mut s,
        &[b"SET", b"k", b"v", b"EXPIRES", b"1"],
        b"-ERR syntax error\r\n",
    );
    call(&mut s, &[b"SET", b"k", b"v"], b"+OK\r\n");
    call(
        &mut s,
        &[b"INCR", b"k"],
        b"-ERR value is not an integer or out of range\r\n",
    );
    call(&mut s, &[b"PING"], b"+PONG\r\n");
}

fn broken_framing_gets_protocol_error_then_close(model: Model) {
    let server = start(Resp::default(), model);
    for (bad, error) in [
        (&b"*abc\r\n"[..], "invalid multibulk length"),
        (b"*1\r\n$xyz\r\n", "invalid bulk length"),
        (b"*1\r\n$-3\r\n", "invalid bulk length"),
        (b"*2\r\n$4\r\nECHO\r\n+hi\r\n", "expected '$', got '+'"),
    ] {
        let mut s = connect(server.local_addr());
        call(&mut s, &[b"PING"], b"+PONG\r\n");
        send(&mut s, bad);
        expect_reply(
            &mut s,
            format!("-ERR Protocol error: {error}\r\n").as_bytes(),
        );
        expect_eof(&mut s);
    }
}

fn store_is_shared_between_connections(model: Model) {
    let server = start(Resp::default(), model);
    let mut writer = connect(server.local_addr());
    let mut reader = connect(server.local_addr());
    call(&mut writer, &[b"SET", b"shared", b"1"], b"+OK\r\n");
    call(&mut reader, &[b"INCR", b"shared"], b":2\r\n");
    call(&mut writer, &[b"GET", b"shared"], b"$1\r\n2\r\n");
}

/// `INFO memory`'s `used_memory`.
#[track_caller]
fn used_memory(stream: &mut TcpStream) -> u64 {
    send(stream, &command(&[b"INFO", b"memory"]));
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n") {
        head.extend(recv_exact(stream, 1));
    }
    let len: usize = String::from_utf8_lossy(&head[1..head.len() - 2])
        .parse()
        .expect("INFO replies with a bulk string");
    let text = String::from_utf8(recv_exact(stream, len + 2)).expect("INFO is text");
    text.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no used_memory in {text:?}"))
}

/// With `Resp::with_max_store`, a write that would take the store past the bound gets
/// redis's `-OOM` error and changes nothing; reads, `DEL` and writes that do not grow the
/// store go on working, and the store never holds more than the bound.
fn a_bounded_store_refuses_writes_past_it_and_serves_the_rest(model: Model) {
    let value = vec![b'v'; 10_000];
    let entry = 6 + value.len() as u64 + RESP_STORE_ENTRY_OVERHEAD;
    // Ten keys, and less room than even a counter takes.
    let bound = 10 * entry + 50;
    let server = start(Resp::default().with_max_store(bound), model);
    let mut s = connect(server.local_addr());
    for n in 0..10 {
        let key = format!("key:{n:02}");
        call(&mut s, &[b"SET", key.as_bytes(), &value], b"+OK\r\n");
    }
    assert_eq!(used_memory(&mut s), 10 * entry);
    // Full: a new key, a longer value, a new counter are refused.
    call(&mut s, &[b"SET", b"key:10", &value], RESP_OOM);
    call(&mut s, &[b"SET", b"key:00", &[b'w'; 20_000]], RESP_OOM);
    call(&mut s, &[b"INCR", b"counter"], RESP_OOM);
    call(
        &mut s,
        &[b"EXISTS", b"key:10", b"counter", b"key:09"],
        b":1\r\n",
    );
    // Reads go on, as do writes that do not grow it.
    let mut want = b"$10000\r\n".to_vec();
    want.extend_from_slice(&value);
    want.extend_from_slice(b"\r\n");
    call(&mut s, &[b"GET", b"key:03"], &want);
    call(&mut s, &[b"SET", b"key:03", &[b'w'; 10_000]], b"+OK\r\n");
    call(&mut s, &[b"SET", b"key:04", b"short"], b"+OK\r\n");
    // DEL makes room again.
    call(&mut s, &[b"DEL", b"key:05", b"key:06"], b":2\r\n");
    call(&mut s, &[b"SET", b"key:10", &value], b"+OK\r\n");
    call(&mut s, &[b"INCR", b"counter"], b":1\r\n");
    assert!(used_memory(&mut s) <= bound);
    // Another connection sees the same store and the same bound (there is room for
    // about two keys now, not for a value three times as large).
    let mut other = connect(server.local_addr());
    call(&mut other, &[b"SET", b"key:11", &[b'v'; 30_000]], RESP_OOM);
    call(&mut other, &[b"SET", b"key:11", &value], b"+OK\r\n");
    let bound = bound.to_string();
    let want = format!("*2\r\n$9\r\nmaxmemory\r\n${}\r\n{bound}\r\n", bound.len());
    call(
        &mut other,
        &[b"CONFIG", b"GET", b"maxmemory"],
        want.as_bytes(),
    );
}

for_each_model!(
    a_bounded_store_refuses_writes_past_it_and_serves_the_rest,
    each_command_gets_its_reply,
    pipelined_batch_gets_every_reply_in_order,
    large_value_round_trips,
    inline_commands_work,
    errors_keep_the_client,
    broken_framing_gets_protocol_error_then_close,
    store_is_shared_between_connections,
    a_full_server_says_max_clients_reached,
    counters_flushes_and_select_answer_as_redis_does,
    inline_quotes_split_as_redis_does,
    a_bulk_is_bounded_by_its_setting_and_a_4_mib_value_passes,
    set_options_answer_as_redis_does,
    keys_expire_on_access_and_by_the_timer_sweep,
    hello_info_and_command_answer_what_clients_ask,
);

fn hello_info_and_command_answer_what_clients_ask(model: Model) {
    let server = start(Resp::default(), model);
    let mut s = connect(server.local_addr());
    call(
        &mut s,
        &[b"HELLO", b"3"],
        b"-NOPROTO sorry, this protocol version is not supported.\r\n",
    );
    call(
        &mut s,
        &[b"HELLO", b"two"],
        b"-ERR Protocol version is not an integer or out of range\r\n",
    );
    send(&mut s, &command(&[b"HELLO", b"2", b"SETNAME", b"me"]));
    let head = b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n\
                 $5\r\nproto\r\n:2\r\n$2\r\nid\r\n";
    expect_reply(&mut s, head);
    let id = recv_to_crlf(&mut s);
    assert!(id.starts_with(b":"), "{id:?}");
    expect_reply(
        &mut s,
        b"$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n\
          $7\r\nmodules\r\n*0\r\n",
    );
    call(&mut s, &[b"COMMAND", b"DOCS"], b"*0\r\n");
    send(&mut s, &command(&[b"COMMAND", b"COUNT"]));
    let count = recv_to_crlf(&mut s);
    assert!(count.starts_with(b":") && count != b":0\r\n", "{count:?}");
    call(
        &mut s,
        &[b"COMMAND", b"FLY"],
        b"-ERR unknown subcommand 'FLY'. Try COMMAND HELP.\r\n",
    );
    send(&mut s, &command(&[b"INFO", b"server"]));
    let len = recv_to_crlf(&mut s);
    let len: usize = std::str::from_utf8(&len[1..len.len() - 2])
        .unwrap()
        .parse()
        .unwrap();
    let text = String::from_utf8(recv_exact(&mut s, len + 2)).unwrap();
    assert!(
        text.starts_with("# Server\r\nredis_version:7.0.15\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nuptime_in_seconds:"), "{text}");
    assert!(!text.contains("# Memory"), "{text}");
    call(&mut s, &[b"PING"], b"+PONG\r\n");
}

fn set_options_answer_as_redis_does(model: Model) {
    let server = start(Resp::default(), model);
    let mut s = connect(server.local_addr());
    call(&mut s, &[b"SET", b"k", b"1", b"XX"], b"$-1\r\n");
    call(&mut s, &[b"SET", b"k", b"1", b"NX"], b"+OK\r\n");
    call(&mut s, &[b"SET", b"k", b"2", b"NX"], b"$-1\r\n");
    call(&mut s, &[b"SET", b"k", b"3", b"xx", b"get"], b"$1\r\n1\r\n");
    call(&mut s, &[b"SET", b"new", b"v", b"GET"], b"$-1\r\n");
    call(&mut s, &[b"GET", b"k"], b"$1\r\n3\r\n");
    for bad in [
        &[&b"SET"[..], b"k", b"v", b"NX", b"XX"][..],
        &[b"SET", b"k", b"v", b"EX", b"10", b"PX", b"100"],
        &[b"SET", b"k", b"v", b"EX", b"10", b"KEEPTTL"],
        &[b"SET", b"k", b"v", b"EX"],
        &[b"SET", b"k", b"v", b"FOREVER"],
    ] {
        call(&mut s, bad, b"-ERR syntax error\r\n");
    }
    call(
        &mut s,
        &[b"SET", b"k", b"v", b"EX", b"ten"],
        b"-ERR value is not an integer or out of range\r\n",
    );
    for bad in [&b"0"[..], b"-5", b"9223372036854775807"] {
        call(
            &mut s,
            &[b"SET", b"k", b"v", b"EX", bad],
            b"-ERR invalid expire time in 'set' command\r\n",
        );
    }
    call(&mut s, &[b"SET", b"k", b"v", b"EX", b"100"], b"+OK\r\n");
    call(&mut s, &[b"TTL", b"k"], b":100\r\n");
    call(&mut s, &[b"SET", b"k", b"w", b"KEEPTTL"], b"+OK\r\n");
    call(&mut s, &[b"TTL", b"k"], b":100\r\n");
    call(&mut s, &[b"INCR", b"n"], b":1\r\n");
    call(&mut s, &[b"PEXPIRE", b"n", b"50000"], b":1\r\n");
    call(&mut s, &[b"INCR", b"n"], b":2\r\n");
    send(&mut s, &command(&[b"PTTL", b"n"]));
    let reply = String::from_utf8(recv_to_crlf(&mut s)).unwrap();
    let left: i64 = reply[1..reply.len() - 2].parse().unwrap();
    assert!(
        left > 40_000 && left <= 50_000,
        "PTTL after INCR: {reply:?}"
    );
    call(&mut s, &[b"SET", b"k", b"plain"], b"+OK\r\n");
    call(&mut s, &[b"TTL", b"k"], b":-1\r\n");
    call(&mut s, &[b"TTL", b"missing"], b":-2\r\n");
    call(&mut s, &[b"EXPIRE", b"missing", b"10"], b":0\r\n");
    call(&mut s, &[b"EXPIRE", b"k", b"10", b"XX"], b":0\r\n");
    call(&mut s, &[b"EXPIRE", b"k", b"10", b"NX"], b":1\r\n");
    call(&mut s, &[b"EXPIRE", b"k", b"5", b"GT"], b":0\r\n");
    call(&mut s, &[b"EXPIRE", b"k", b"5", b"LT"], b":1\r\n");
    call(
        &mut s,
        &[b"EXPIRE", b"k", b"5", b"SOON"],
        b"-ERR Unsupported option SOON\r\n",
    );
    call(&mut s, &[b"PERSIST", b"k"], b":1\r\n");
    call(&mut s, &[b"PERSIST", b"k"], b":0\r\n");
    call(&mut s, &[b"TTL", b"k"], b":-1\r\n");
    // A time in the past deletes the key, as in redis.
    call(&mut s, &[b"EXPIRE", b"k", b"-1"], b":1\r\n");
    call(&mut s, &[b"EXISTS", b"k"], b":0\r\n");
}

/// Read one reply line, up to and including its CRLF.
fn recv_to_crlf(stream: &mut TcpStream) -> Vec<u8> {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        line.extend(recv_exact(stream, 1));
    }
    line
}

fn keys_expire_on_access_and_by_the_timer_sweep(model: Model) {
    let server = start(Resp::default(), model);
    let mut s = connect(server.local_addr());
    // On access: a key read after its deadline is gone, whether or not a sweep ran.
    call(&mut s, &[b"SET", b"soon", b"v", b"PX", b"50"], b"+OK\r\n");
    std::thread::sleep(std::time::Duration::from_millis(60));
    call(&mut s, &[b"GET", b"soon"], b"$-1\r\n");
    // By the sweep: 1000 keys never read again leave the store (DBSIZE counts keys that
    // expired but are not removed yet, as redis's does).
    let mut batch = Vec::new();
    for n in 0..1000 {
        batch.extend(command(&[
            b"SET",
            format!("k{n}").as_bytes(),
            b"v",
            b"PX",
            b"100",
        ]));
    }
    batch.extend(command(&[b"SET", b"stays", b"v"]));
    send(&mut s, &batch);
    expect_reply(&mut s, &b"+OK\r\n".repeat(1001));
    call(&mut s, &[b"DBSIZE"], b":1001\r\n");
    // The client that set them goes: the sweep is another connection's job then.
    drop(s);
    let mut other = connect(server.local_addr());
    call(&mut other, &[b"PING"], b"+PONG\r\n");
    let swept = fixtures::wait_until(std::time::Duration::from_secs(10), || {
        send(&mut other, &command(&[b"DBSIZE"]));
        recv_to_crlf(&mut other) == b":1\r\n"
    });
    assert!(swept, "expired keys were not swept within 10 s");
    call(&mut other, &[b"GET", b"stays"], b"$1\r\nv\r\n");
}

fn a_bulk_is_bounded_by_its_setting_and_a_4_mib_value_passes(model: Model) {
    let value: Vec<u8> = (0..4u32 << 20).map(|n| (n % 253) as u8).collect();
    // The library's input cap must let the command in: 4 MiB and its framing.
    let config = Config::default().with_max_input(5 << 20);
    let server = start_server(Server::new(Resp::default()), model, config.clone());
    let mut s = connect(server.local_addr());
    call(&mut s, &[b"SET", b"big", &value], b"+OK\r\n");
    let mut want = format!("${}\r\n", value.len()).into_bytes();
    want.extend_from_slice(&value);
    want.extend_from_slice(b"\r\n");
    call(&mut s, &[b"GET", b"big"], &want);
    // redis answers `*1\r\n$4\r\nPINGxx` as PING: the bytes after a bulk are not read.
    send(&mut s, b"*1\r\n$4\r\nPINGxx");
    expect_reply(&mut s, b"+PONG\r\n");

    let server = start_server(
        Server::new(Resp::default().with_max_bulk(1024)),
        model,
        config,
    );
    let mut s = connect(server.local_addr());
    call(&mut s, &[b"SET", b"k", &[b'x'; 1024]], b"+OK\r\n");
    send(&mut s, &command(&[b"SET", b"k", &[b'x'; 1025]]));
    expect_reply(&mut s, b"-ERR Protocol error: invalid bulk length\r\n");
    expect_eof(&mut s);
}

fn inline_quotes_split_as_redis_does(model: Model) {
    let server = start(Resp::default(), model);
    let mut s = connect(server.local_addr());
    send(
        &mut s,
        b"SET k \"a b\\x41\\n\"\r\nGET k\r\nset k2 'x y'\nget k2\n",
    );
    expect_reply(&mut s, b"+OK\r\n$5\r\na bA\n\r\n+OK\r\n$3\r\nx y\r\n");
    send(&mut s, b"set \"\"\"test-key\"\"\" test-value\r\nPING\r\n");
    expect_reply(
        &mut s,
        b"-ERR Protocol error: unbalanced quotes in request\r\n",
    );
    expect_eof(&mut s);
}

fn counters_flushes_and_select_answer_as_redis_does(model: Model) {
    let server = start(Resp::default(), model);
    let mut s = connect(server.local_addr());
    let not_integer = b"-ERR value is not an integer or out of range\r\n";
    call(&mut s, &[b"INCRBY", b"n", b"10"], b":10\r\n");
    call(&mut s, &[b"DECR", b"n"], b":9\r\n");
    call(&mut s, &[b"DECRBY", b"n", b"4"], b":5\r\n");
    call(&mut s, &[b"INCRBY", b"n", b"1.5"], not_integer);
    call(&mut s, &[b"SET", b"k", b"v"], b"+OK\r\n");
    call(&mut s, &[b"DBSIZE"], b":2\r\n");
    // A second client sees the flush: one store.
    let mut other = connect(server.local_addr());
    call(&mut other, &[b"FLUSHALL"], b"+OK\r\n");
    call(&mut s, &[b"DBSIZE"], b":0\r\n");
    call(&mut s, &[b"GET", b"n"], b"$-1\r\n");
    call(&mut s, &[b"SET", b"k", b"v"], b"+OK\r\n");
    call(&mut s, &[b"FLUSHDB", b"SYNC"], b"+OK\r\n");
    call(&mut s, &[b"EXISTS", b"k"], b":0\r\n");
    for index in [&b"abc"[..], b"00", b" 0", b"4294967296", b"1e3"] {
        call(&mut s, &[b"SELECT", index], not_integer);
    }
    call(
        &mut s,
        &[b"SELECT", b"1"],
        b"-ERR DB index is out of range\r\n",
    );
    call(&mut s, &[b"SELECT", b"0"], b"+OK\r\n");
    call(
        &mut s,
        &[b"B\x07AD\r\n\0hidden", b"a\tb"],
        b"-ERR unknown command 'B\x07AD  ', with args beginning with: 'a\tb' \r\n",
    );
    call(&mut s, &[b"PING"], b"+PONG\r\n");
}

fn a_full_server_says_max_clients_reached(model: Model) {
    let config = Config::default().with_max_connections(1);
    let server = start_server(Server::new(Resp::default()), model, config);
    let mut first = connect(server.local_addr());
    call(&mut first, &[b"PING"], b"+PONG\r\n");
    let mut refused = connect(server.local_addr());
    assert_eq!(
        recv_to_end(&mut refused),
        b"-ERR max number of clients reached\r\n"
    );
    call(&mut first, &[b"PING"], b"+PONG\r\n");
}

#[test]
fn store_is_shared_across_reactor_workers() {
    let server = start_server(
        Server::new(Resp::default()).workers(2),
        Model::Reactor,
        Config::default(),
    );
    // Every connection increments one counter; whichever worker serves it, they all see
    // one store, so the replies are exactly 1, 2, 3, … Connections come one at a time until
    // both workers have served some (they share one listening socket: whichever wakes
    // first accepts).
    let mut streams: Vec<TcpStream> = Vec::new();
    let mut per_worker = server.accepted_by_worker();
    while streams.len() < 64 || per_worker.contains(&0) {
        assert!(
            streams.len() < 1000,
            "one worker never accepts: {per_worker:?}"
        );
        let mut s = connect(server.local_addr());
        send(&mut s, &command(&[b"INCR", b"hits"]));
        let mut reply = Vec::new();
        while !reply.ends_with(b"\r\n") {
            reply.extend(recv_exact(&mut s, 1));
        }
        streams.push(s);
        assert_eq!(
            String::from_utf8_lossy(&reply),
            format!(":{}\r\n", streams.len()),
            "accepted by worker {per_worker:?}"
        );
        per_worker = server.accepted_by_worker();
    }
}
