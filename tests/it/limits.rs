//! Limits and timers: a full server refuses cleanly, silent clients time out, unconsumed
//! input is capped, handler timers fire. Under both models.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use fixtures::client::{connect, finish_sending, recv_exact, recv_line, recv_to_end, send};
use fixtures::server::{serve, start, start_server, wait_connections};
use fixtures::{PATIENCE, eventually, for_each_model};
use tcp_reactor::protocols::{Chat, Echo};
use tcp_reactor::{CloseReason, Config, ConfigError, Context, Handler, Model, Server};

for_each_model!(
    a_full_server_refuses_with_the_busy_reply_and_keeps_serving,
    a_silent_client_is_closed_after_the_idle_timeout,
    input_the_handler_never_consumes_is_capped,
    input_waiting_behind_high_water_is_not_mistaken_for_the_input_cap,
    a_handler_timer_fires_and_can_close,
    a_closing_connection_whose_client_never_reads_is_dropped_after_linger,
    abort_discards_queued_output_and_closes_at_once,
    bytes_the_handler_never_consumes_do_not_count_as_activity,
    bind_refuses_a_config_that_cannot_work,
);

fn a_full_server_refuses_with_the_busy_reply_and_keeps_serving(model: Model) {
    let config = Config::default().with_max_connections(2);
    let chat = Arc::new(Chat::new());
    let running = start_server(Server::from_arc(Arc::clone(&chat)), model, config);
    let mut first = connect(running.local_addr());
    let mut second = connect(running.local_addr());
    eventually("two members", || chat.members() == 2);
    let mut third = connect(running.local_addr());
    assert_eq!(recv_to_end(&mut third), b"server full, try again later\n");
    drop(third);
    // The members still talk.
    send(&mut first, b"hi\n");
    assert!(recv_line(&mut second).ends_with("] hi"));
    drop(first);
    wait_connections(&running, 1);
    let mut fourth = connect(running.local_addr());
    eventually("a free place is taken", || chat.members() == 2);
    send(&mut fourth, b"in\n");
    assert!(recv_line(&mut second).ends_with("] in"));
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(stats.refused, 1, "{stats}");
    assert_eq!(stats.accepted, 3, "{stats}");
}

fn a_silent_client_is_closed_after_the_idle_timeout(model: Model) {
    let config = Config::default().with_idle_timeout(Some(Duration::from_millis(200)));
    let running = serve(Echo, config, model);
    let mut talker = connect(running.local_addr());
    let mut silent = connect(running.local_addr());
    // The talker keeps talking past the timeout and stays.
    for _ in 0..8 {
        send(&mut talker, b"ping");
        assert_eq!(recv_exact(&mut talker, 4), b"ping");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(recv_to_end(&mut silent).is_empty());
    send(&mut talker, b"still");
    assert_eq!(recv_exact(&mut talker, 5), b"still");
    drop(talker);
    wait_connections(&running, 0);
    let stats = running.stop().expect("the server stopped cleanly");
    assert!(stats.closed_by(CloseReason::IdleTimeout) >= 1, "{stats}");
}

fn input_the_handler_never_consumes_is_capped(model: Model) {
    let config = Config::default().with_max_input(8 * 1024);
    // A chat line limit above the input cap: the cap is what closes the client.
    let running = serve(Chat::with_max_line(1024 * 1024), config, model);
    let mut client = connect(running.local_addr());
    send(&mut client, &[b'z'; 20 * 1024]);
    assert!(
        recv_to_end(&mut client).is_empty(),
        "closed without a reply"
    );
    drop(client);
    wait_connections(&running, 0);
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(stats.closed_by(CloseReason::InputLimit), 1, "{stats}");
}

/// Answers each `\n`-terminated line, one per call, with [`Expand::REPLY`] bytes.
struct Expand;

impl Expand {
    /// Bytes written per line: more than the high-water mark of the test below.
    const REPLY: usize = 2048;
}

impl Handler for Expand {
    type Session = ();

    fn open(&self, _ctx: &mut Context<'_>) {}

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            return 0;
        };
        ctx.write(&[input[0]; Expand::REPLY]);
        end + 1
    }
}

/// Many short requests sent at once, each answered with more than the high-water mark:
/// feeding stops after each reply with the rest of the input buffered, above the input
/// cap. That input waits for output to drain, not for bytes: it is no partial frame the
/// handler cannot consume, and the client must get every reply.
fn input_waiting_behind_high_water_is_not_mistaken_for_the_input_cap(model: Model) {
    const LINES: usize = 400;
    let config = Config::default()
        .with_max_input(1024)
        .with_high_water(1024)
        .with_low_water(512);
    let running = serve(Expand, config, model);
    let mut client = connect(running.local_addr());
    let request: Vec<u8> = (0..LINES)
        .flat_map(|i| format!("{:07}\n", i % 10).into_bytes())
        .collect();
    assert!(request.len() > 3 * 1024, "the input exceeds the cap");
    send(&mut client, &request);
    finish_sending(&client);
    let replies = recv_to_end(&mut client);
    assert_eq!(
        replies.len(),
        LINES * Expand::REPLY,
        "{model:?}: every reply"
    );
    drop(client);
    wait_connections(&running, 0);
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(stats.closed_by(CloseReason::InputLimit), 0, "{stats}");
    assert_eq!(stats.closed_by(CloseReason::Eof), 1, "{stats}");
}

/// Writes `tick N` every 20 ms and closes after three ticks.
struct Ticker;

impl Handler for Ticker {
    type Session = u32;

    fn open(&self, ctx: &mut Context<'_>) -> u32 {
        ctx.set_timer(Duration::from_millis(20));
        0
    }

    fn data(&self, _ticks: &mut u32, _ctx: &mut Context<'_>, input: &[u8]) -> usize {
        input.len()
    }

    fn timer(&self, ticks: &mut u32, ctx: &mut Context<'_>) {
        *ticks += 1;
        ctx.write(format!("tick {ticks}\n").as_bytes());
        if *ticks == 3 {
            ctx.close();
        } else {
            ctx.set_timer(Duration::from_millis(20));
        }
    }
}

fn a_handler_timer_fires_and_can_close(model: Model) {
    let running = start(Ticker, model);
    let mut client = connect(running.local_addr());
    assert_eq!(recv_to_end(&mut client), b"tick 1\ntick 2\ntick 3\n");
    drop(client);
    wait_connections(&running, 0);
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(stats.closed_by(CloseReason::Handler), 1, "{stats}");
}

/// Answers any input with 8 MiB and closes.
struct Flood;

impl Handler for Flood {
    type Session = ();

    fn open(&self, _ctx: &mut Context<'_>) {}

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(&vec![b'f'; 8 * 1024 * 1024]);
        ctx.close();
        input.len()
    }
}

fn a_closing_connection_whose_client_never_reads_is_dropped_after_linger(model: Model) {
    let config = Config::default().with_linger(Duration::from_millis(200));
    let running = serve(Flood, config, model);
    let mut client = connect(running.local_addr());
    socket2::SockRef::from(&client)
        .set_recv_buffer_size(4096)
        .expect("set SO_RCVBUF");
    send(&mut client, b"go");
    // The client reads nothing: the server must give up on the reply after the linger
    // time without progress, not hold the connection forever.
    eventually("the connection came and went", || {
        running.accepted() == 1 && running.connections() == 0
    });
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(stats.closed_by(CloseReason::LingerTimeout), 1, "{stats}");
    assert!(stats.bytes_out < 8 * 1024 * 1024, "{stats}");
}

/// Writes a reply, then thinks better of it and aborts.
struct Regret;

impl Handler for Regret {
    type Session = ();

    fn open(&self, _ctx: &mut Context<'_>) {}

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(b"you should never see this");
        ctx.abort();
        input.len()
    }
}

fn abort_discards_queued_output_and_closes_at_once(model: Model) {
    let running = start(Regret, model);
    let mut client = connect(running.local_addr());
    send(&mut client, b"anything");
    let mut received = Vec::new();
    // Closed at once: EOF or reset, but never the discarded reply.
    let _ = client.read_to_end(&mut received);
    assert!(
        received.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&received)
    );
    drop(client);
    wait_connections(&running, 0);
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(stats.closed_by(CloseReason::Handler), 1, "{stats}");
    assert_eq!(stats.bytes_out, 0, "{stats}");
}

fn bytes_the_handler_never_consumes_do_not_count_as_activity(model: Model) {
    // A client trickling a line that never ends makes no progress: it times out although
    // bytes keep arriving.
    let config = Config::default().with_idle_timeout(Some(Duration::from_millis(300)));
    let running = serve(Chat::new(), config, model);
    let mut client = connect(running.local_addr());
    client
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("set a read timeout");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let closed = loop {
        assert!(started.elapsed() < PATIENCE, "never closed");
        if std::io::Write::write_all(&mut client, b"a").is_err() {
            break true;
        }
        match client.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => panic!("unexpected reply {:?}", &buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => {} // the read timeout: nothing yet, send another byte
        }
    };
    assert!(closed);
    drop(client);
    wait_connections(&running, 0);
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(stats.closed_by(CloseReason::IdleTimeout), 1, "{stats}");
}

/// An inconsistent `Config`, or no workers, is refused by `bind` with an error naming the
/// field, instead of being clamped into something that runs.
fn bind_refuses_a_config_that_cannot_work(model: Model) {
    let addr = "127.0.0.1:0".parse().expect("an address");
    let bind = |server: Server<Echo>| match server.model(model).bind(addr) {
        Ok(_) => panic!("a {model:?} server started with a bad configuration"),
        Err(err) => err,
    };
    let err = bind(Server::new(Echo).workers(0));
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(
        ConfigError::of(&err),
        Some(&ConfigError::Zero { field: "workers" })
    );
    let upside_down = Config::default().with_high_water(1000).with_low_water(2000);
    let err = bind(Server::new(Echo).config(upside_down));
    assert!(
        matches!(
            ConfigError::of(&err),
            Some(ConfigError::Exceeds {
                field: "low_water",
                limit: "high_water",
                ..
            })
        ),
        "{err}"
    );
    let no_reads = Config::default().with_read_chunk(0);
    let err = bind(Server::new(Echo).config(no_reads));
    assert_eq!(
        err.to_string(),
        "invalid configuration: read_chunk must be greater than zero"
    );
}
