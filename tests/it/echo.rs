//! Echo under load and under stress: every byte comes back, in order, whatever the client
//! does, under both models.

use std::io::Read;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use fixtures::client::{connect, finish_sending, recv_exact, recv_to_end, send};
use fixtures::for_each_model;
use fixtures::server::{serve, start, start_server, wait_connections};
use rand::{Rng, SeedableRng, rngs::StdRng};
use socket2::SockRef;
use tcp_reactor::protocols::Echo;
use tcp_reactor::{CloseReason, Config, Model, Server};

for_each_model!(
    every_byte_comes_back_in_order_to_two_hundred_concurrent_clients,
    a_megabyte_reaches_a_slow_reader_intact_through_backpressure,
    a_half_closed_client_still_receives_its_whole_reply,
    live_connection_count_returns_to_zero_after_clients_leave,
    a_client_reset_mid_stream_disturbs_no_one_else,
    graceful_stop_closes_every_client_and_stats_add_up,
    two_workers_share_the_port_and_stop_together,
    a_four_megabyte_burst_followed_by_silence_is_fully_echoed,
);

/// Clients connected at once in the concurrency test.
const CLIENTS: usize = 200;

/// Send `payload` in random chunks from one thread while reading the echo on another;
/// return what came back.
fn echo_in_random_chunks(stream: TcpStream, payload: Vec<u8>, seed: u64) -> Vec<u8> {
    let mut writer = stream.try_clone().expect("clone the client socket");
    let expected = payload.len();
    let sender = thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut rest = &payload[..];
            while !rest.is_empty() {
                let chunk = rng.random_range(1..=rest.len().min(4096));
                send(&mut writer, &rest[..chunk]);
                rest = &rest[chunk..];
            }
        })
        .expect("spawn a sender");
    let mut reader = stream;
    let echoed = recv_exact(&mut reader, expected);
    sender.join().expect("the sender finished");
    echoed
}

fn every_byte_comes_back_in_order_to_two_hundred_concurrent_clients(model: Model) {
    let running = start(Echo, model);
    let addr = running.local_addr();
    let all_connected = Arc::new(Barrier::new(CLIENTS + 1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let all_connected = Arc::clone(&all_connected);
            thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let stream = connect(addr);
                    let mut rng = StdRng::seed_from_u64(i as u64);
                    let len = rng.random_range(1..=64 * 1024);
                    let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                    // Everyone is connected before anyone sends.
                    all_connected.wait();
                    let echoed = echo_in_random_chunks(stream, payload.clone(), i as u64 + 1000);
                    echoed == payload
                })
                .expect("spawn a client")
        })
        .collect();
    wait_connections(&running, CLIENTS as u64);
    all_connected.wait();
    let intact = clients
        .into_iter()
        .map(|client| client.join().expect("a client finished"))
        .filter(|&intact| intact)
        .count();
    assert_eq!(intact, CLIENTS, "clients whose echo came back intact");
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(stats.accepted, CLIENTS as u64);
    assert!(
        stats.peak_connections >= CLIENTS as u64,
        "peak {}",
        stats.peak_connections
    );
    assert_eq!(stats.bytes_in, stats.bytes_out, "echo writes what it reads");
}

fn a_megabyte_reaches_a_slow_reader_intact_through_backpressure(model: Model) {
    // With output capped well below the payload, only backpressure (reading no more
    // while the reply is not taken) lets the whole megabyte through.
    let config = Config::default()
        .with_high_water(64 * 1024)
        .with_low_water(16 * 1024)
        .with_max_output(256 * 1024);
    let running = serve(Echo, config, model);
    let stream = connect(running.local_addr());
    // Small client buffers keep the kernel from absorbing the whole payload.
    SockRef::from(&stream)
        .set_recv_buffer_size(16 * 1024)
        .expect("set SO_RCVBUF");
    SockRef::from(&stream)
        .set_send_buffer_size(16 * 1024)
        .expect("set SO_SNDBUF");
    let payload: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut writer = stream.try_clone().expect("clone the client socket");
    let sent = payload.clone();
    let sender = thread::spawn(move || send(&mut writer, &sent));
    let mut reader = stream;
    let mut echoed = Vec::with_capacity(payload.len());
    let mut buf = [0u8; 4096];
    while echoed.len() < payload.len() {
        let n = reader.read(&mut buf).expect("the echo keeps coming");
        assert!(n > 0, "the server closed after {} bytes", echoed.len());
        echoed.extend_from_slice(&buf[..n]);
        // A slow reader: the server must wait for it, not buffer without bound.
        thread::sleep(Duration::from_micros(500));
    }
    sender.join().expect("the sender finished");
    assert!(echoed == payload, "the echo differs from the payload");
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(
        stats.closed_by(CloseReason::OutputLimit),
        0,
        "no output cap was hit"
    );
}

fn a_half_closed_client_still_receives_its_whole_reply(model: Model) {
    let running = start(Echo, model);
    let mut stream = connect(running.local_addr());
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let mut writer = stream.try_clone().expect("clone the client socket");
    let sent = payload.clone();
    let sender = thread::spawn(move || {
        send(&mut writer, &sent);
        // Done sending: the server reads 0 but must still deliver every queued byte.
        finish_sending(&writer);
    });
    let echoed = recv_to_end(&mut stream);
    sender.join().expect("the sender finished");
    assert_eq!(echoed.len(), payload.len(), "reply length");
    assert!(echoed == payload, "the reply differs from the payload");
    wait_connections(&running, 0);
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(
        stats.closed_by(CloseReason::Eof),
        1,
        "closed on EOF: {stats}"
    );
}

fn live_connection_count_returns_to_zero_after_clients_leave(model: Model) {
    let running = start(Echo, model);
    let mut clients: Vec<_> = (0..50).map(|_| connect(running.local_addr())).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let message = format!("client {i}");
        send(client, message.as_bytes());
        assert_eq!(recv_exact(client, message.len()), message.as_bytes());
    }
    wait_connections(&running, 50);
    drop(clients);
    wait_connections(&running, 0);
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(stats.accepted, 50);
    assert_eq!(
        stats.closed_total(),
        50,
        "every connection closed once: {stats}"
    );
}

fn a_client_reset_mid_stream_disturbs_no_one_else(model: Model) {
    let running = start(Echo, model);
    let mut steady = connect(running.local_addr());
    send(&mut steady, b"before");
    assert_eq!(recv_exact(&mut steady, 6), b"before");

    let mut rude = connect(running.local_addr());
    send(&mut rude, &[7u8; 100_000]);
    // Linger 0: closing sends RST instead of FIN, with echo still in flight.
    SockRef::from(&rude)
        .set_linger(Some(Duration::ZERO))
        .expect("set SO_LINGER 0");
    drop(rude);

    wait_connections(&running, 1);
    for round in 0..20 {
        let message = format!("round {round}");
        send(&mut steady, message.as_bytes());
        assert_eq!(recv_exact(&mut steady, message.len()), message.as_bytes());
    }
    drop(steady);
    wait_connections(&running, 0);
    let stats = running.stop().expect("the server stopped cleanly");
    assert_eq!(stats.closed_by(CloseReason::Reset), 1, "one reset: {stats}");
    assert_eq!(
        stats.closed_by(CloseReason::Eof),
        1,
        "one clean close: {stats}"
    );
}

fn graceful_stop_closes_every_client_and_stats_add_up(model: Model) {
    let running = start(Echo, model);
    let mut clients: Vec<_> = (0..10).map(|_| connect(running.local_addr())).collect();
    let mut sent = 0;
    for (i, client) in clients.iter_mut().enumerate() {
        let message = vec![i as u8; 1000 + i];
        send(client, &message);
        assert_eq!(recv_exact(client, message.len()), message);
        sent += message.len() as u64;
    }
    wait_connections(&running, 10);
    let stats = running.stop().expect("the server stopped cleanly");
    for client in &mut clients {
        // A clean EOF (not a reset), with nothing left over.
        assert!(recv_to_end(client).is_empty(), "no stray bytes after stop");
    }
    assert_eq!(stats.accepted, 10);
    assert_eq!(stats.refused, 0);
    assert_eq!(stats.closed_by(CloseReason::Shutdown), 10, "{stats}");
    assert_eq!(stats.closed_total(), stats.accepted, "{stats}");
    assert_eq!(stats.bytes_in, sent);
    assert_eq!(stats.bytes_out, sent);
    assert_eq!(stats.peak_connections, 10);
}

fn two_workers_share_the_port_and_stop_together(model: Model) {
    let running = start_server(Server::new(Echo).workers(2), model, Config::default());
    let mut clients: Vec<_> = (0..40).map(|_| connect(running.local_addr())).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let message = format!("worker test {i}");
        send(client, message.as_bytes());
        assert_eq!(recv_exact(client, message.len()), message.as_bytes());
    }
    wait_connections(&running, 40);
    let by_worker = running.accepted_by_worker();
    assert_eq!(by_worker.len(), 2);
    assert_eq!(by_worker.iter().sum::<u64>(), 40, "{by_worker:?}");
    let stats = running.stop().expect("both workers stopped cleanly");
    for client in &mut clients {
        assert!(recv_to_end(client).is_empty(), "a clean EOF after stop");
    }
    assert_eq!(stats.accepted, 40);
    assert_eq!(stats.closed_by(CloseReason::Shutdown), 40, "{stats}");
}

fn a_four_megabyte_burst_followed_by_silence_is_fully_echoed(model: Model) {
    // One write far above the read budget, then nothing: no new readiness edge comes
    // for the bytes left behind, so the server must come back for them by itself.
    let running = start(Echo, model);
    let stream = connect(running.local_addr());
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect();
    let mut writer = stream.try_clone().expect("clone the client socket");
    let sent = payload.clone();
    let sender = thread::spawn(move || send(&mut writer, &sent));
    let mut reader = stream;
    let echoed = recv_exact(&mut reader, payload.len());
    sender.join().expect("the sender finished");
    assert!(echoed == payload, "the echo differs from the payload");
}
