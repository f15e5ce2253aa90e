//! Property tests of the reactor's framing contract over a real socket: whatever the
//! bytes and however they are cut (by the client's writes and the server's reads), a
//! handler that consumes only complete `\n` lines sees exactly the lines a plain
//! split on `\n` finds, in order, each once; and echo returns every byte.

use std::io::Write;
use std::net::Shutdown;
use std::thread;

use fixtures::client::{connect, recv_to_end};
use fixtures::handlers::{Lines, Recorded, decode_lines, reference_lines};
use fixtures::server::{MODELS, config, serve, stop_checked};
use proptest::prelude::*;
use tcp_reactor::protocols::Echo;
use tcp_reactor::{CloseReason, Config};

/// Bytes with newlines common enough to make many short lines, empty lines included.
fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![3 => Just(b'\n'), 1 => Just(b'\r'), 12 => any::<u8>()],
        0..3000,
    )
}

/// Send `input` cut into `cuts` (cycled), half-close, and return the whole reply.
fn send_chunked(addr: std::net::SocketAddr, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut client = connect(addr);
    client.set_nodelay(true).expect("nodelay");
    let mut writer = client.try_clone().expect("clone");
    let input = input.to_vec();
    let cuts = cuts.to_vec();
    let sending = thread::spawn(move || {
        let mut offset = 0;
        for &cut in cuts.iter().cycle() {
            if offset >= input.len() {
                break;
            }
            let end = (offset + cut).min(input.len());
            writer.write_all(&input[offset..end]).expect("write");
            offset = end;
        }
        writer.shutdown(Shutdown::Write).expect("half-close");
    });
    let reply = recv_to_end(&mut client);
    sending.join().expect("writer");
    reply
}

/// Server-side reads as small as `read_chunk`, and a budget that forces revisits.
fn small_reads(read_chunk: usize) -> Config {
    config()
        .with_read_chunk(read_chunk)
        .with_read_budget(read_chunk * 3)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn line_framing_matches_a_plain_split_on_newline(
        input in line_bytes(),
        cuts in prop::collection::vec(1usize..200, 1..20),
        read_chunk in 1usize..64,
        one_per_call in any::<bool>(),
    ) {
        for &model in MODELS {
            let (handler, closes) = Recorded::new(Lines { one_per_call });
            let server = serve(handler, small_reads(read_chunk), model);
            let reply = send_chunked(server.local_addr(), &input, &cuts);
            let framed = decode_lines(&reply);
            prop_assert_eq!(framed, Some(reference_lines(&input)));
            let stats = stop_checked(server);
            prop_assert_eq!(stats.bytes_in, input.len() as u64);
            prop_assert_eq!(closes.all(), vec![CloseReason::Eof]);
        }
    }

    #[test]
    fn echo_returns_every_byte_however_it_is_cut(
        input in prop::collection::vec(any::<u8>(), 0..20_000),
        cuts in prop::collection::vec(1usize..3000, 1..20),
        read_chunk in 1usize..4096,
    ) {
        for &model in MODELS {
            let server = serve(Echo, small_reads(read_chunk), model);
            let reply = send_chunked(server.local_addr(), &input, &cuts);
            prop_assert!(reply == input, "echo differs");
            let stats = stop_checked(server);
            prop_assert_eq!(stats.bytes_out, input.len() as u64);
        }
    }
}
