//! The high-water mark bounds output for every feeding path, under both models: a client
//! that sends many small requests with large replies at once, and does not read, holds at
//! most the mark plus one reply; output a callback queues for other connections (a chat
//! fan-out) is bounded the same way. Nothing is lost: once the clients read, every reply
//! arrives, in order.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use fixtures::client::{connect, recv_exact, send};
use fixtures::for_each_model;
use fixtures::handlers::big_reply;
use fixtures::server::serve;
use tcp_reactor::{Config, ConnId, Context, Handler, Model};

/// High-water mark of these tests: small, so that a few replies pass it.
const HIGH_WATER: usize = 256 * 1024;
/// One reply: a quarter of the mark, so a read's worth of requests answered at once
/// passes it many times over.
const REPLY: usize = 64 * 1024;
/// Requests sent at once (9 bytes each).
const REQUESTS: usize = 1000;

/// Config of these tests: the mark above, default caps.
fn config() -> Config {
    Config::default()
        .with_high_water(HIGH_WATER)
        .with_low_water(HIGH_WATER / 4)
        .with_linger(Duration::from_secs(2))
}

/// Answers each line `NNNNNNNN\n` with [`REPLY`] bytes: the line's 8 digits, then a fixed
/// pattern. Records the largest pending output seen right after a reply is written.
#[derive(Debug, Clone)]
struct LineToBigReply {
    /// The reply's tail after the 8 digits.
    tail: Arc<Vec<u8>>,
    /// Largest `Context::pending_output` after a write.
    max_pending: Arc<AtomicUsize>,
}

impl Handler for LineToBigReply {
    type Session = ();

    fn open(&self, _ctx: &mut Context<'_>) {}

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&byte| byte == b'\n') else {
            return 0;
        };
        ctx.write(&input[..end.min(8)]);
        ctx.write(&self.tail);
        self.max_pending
            .fetch_max(ctx.pending_output(), Ordering::Relaxed);
        end + 1
    }
}

/// Request `i` as sent: 8 digits and a newline.
fn request(i: usize) -> String {
    format!("{i:08}\n")
}

/// One client sends [`REQUESTS`] requests at once and reads nothing for a while; another
/// client is served meanwhile; then the first reads every reply, in order.
fn many_requests_without_reading_hold_at_most_high_water_plus_one_reply(model: Model) {
    let max_pending = Arc::new(AtomicUsize::new(0));
    let handler = LineToBigReply {
        tail: Arc::new(big_reply(REPLY - 8)),
        max_pending: Arc::clone(&max_pending),
    };
    let running = serve(handler, config(), model);
    let addr = running.local_addr();

    let mut greedy = connect(addr);
    let batch: String = (0..REQUESTS).map(request).collect();
    send(&mut greedy, batch.as_bytes());
    // Give the server time to take in the whole batch while the client does not read.
    thread::sleep(Duration::from_millis(300));

    let mut other = connect(addr);
    send(&mut other, request(7).as_bytes());
    let reply = recv_exact(&mut other, REPLY);
    assert_eq!(
        &reply[..8],
        b"00000007",
        "the other client is served meanwhile"
    );

    let tail = big_reply(REPLY - 8);
    for i in 0..REQUESTS {
        let reply = recv_exact(&mut greedy, REPLY);
        assert_eq!(
            &reply[..8],
            format!("{i:08}").as_bytes(),
            "reply {i} arrives in order"
        );
        assert!(reply[8..] == tail[..], "reply {i} arrives intact");
    }
    let max = max_pending.load(Ordering::Relaxed);
    eprintln!(
        "{model:?}: {REQUESTS} requests of {REPLY} B replies sent at once; largest pending \
         output {max} B (high water {HIGH_WATER} B)"
    );
    assert!(
        max <= HIGH_WATER + REPLY,
        "pending output reached {max} bytes, above high water ({HIGH_WATER}) + one reply ({REPLY})"
    );
    drop(running);
}

/// Bytes of each fan-out message.
const MESSAGE: usize = 1024;
/// Members that receive.
const LISTENERS: usize = 3;
/// Lines the speaker sends at once.
const LINES: usize = 2000;

/// A room: each line from a member goes to every other member, padded to [`MESSAGE`]
/// bytes. Records the largest `Context::queued_for_others` seen after a fan-out.
#[derive(Debug, Clone, Default)]
struct PaddedRoom {
    /// Who is connected.
    members: Arc<Mutex<BTreeSet<ConnId>>>,
    /// Largest output a callback batch had queued for others.
    max_queued: Arc<AtomicUsize>,
}

impl Handler for PaddedRoom {
    type Session = ();

    fn open(&self, ctx: &mut Context<'_>) {
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members.insert(ctx.id());
    }

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&byte| byte == b'\n') else {
            return 0;
        };
        let mut message = input[..end].to_vec();
        message.resize(MESSAGE - 1, b'.');
        message.push(b'\n');
        let members: Vec<ConnId> = {
            let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
            members.iter().copied().collect()
        };
        let me = ctx.id();
        for to in members.into_iter().filter(|&to| to != me) {
            ctx.send_to(to, &message);
        }
        self.max_queued
            .fetch_max(ctx.queued_for_others(), Ordering::Relaxed);
        end + 1
    }

    fn close(&self, _session: (), id: ConnId, _reason: tcp_reactor::CloseReason) {
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members.remove(&id);
    }
}

/// One member sends [`LINES`] lines at once to the others: what a callback batch queues
/// for them stays within the mark plus one fan-out, and every member gets every line in
/// order.
fn fan_out_of_many_lines_at_once_is_bounded_per_batch(model: Model) {
    let room = PaddedRoom::default();
    let max_queued = Arc::clone(&room.max_queued);
    let members = Arc::clone(&room.members);
    let running = serve(room, config(), model);
    let addr = running.local_addr();

    let listeners: Vec<TcpStream> = (0..LISTENERS).map(|_| connect(addr)).collect();
    let mut speaker = connect(addr);
    fixtures::eventually("every member joined", || {
        members.lock().unwrap_or_else(PoisonError::into_inner).len() == LISTENERS + 1
    });
    let readers: Vec<_> = listeners
        .into_iter()
        .map(|stream| {
            thread::spawn(move || {
                let mut lines = BufReader::new(stream);
                let mut line = String::new();
                for i in 0..LINES {
                    line.clear();
                    if let Err(err) = lines.read_line(&mut line) {
                        panic!("line {i}: {err}");
                    }
                    assert_eq!(line.len(), MESSAGE, "line {i} arrives whole");
                    assert!(
                        line.starts_with(&format!("{i:08}.")),
                        "line {i} arrives in order: {:?}",
                        &line[..16.min(line.len())]
                    );
                }
            })
        })
        .collect();
    let batch: String = (0..LINES).map(|i| format!("{i:08}\n")).collect();
    send(&mut speaker, batch.as_bytes());
    for reader in readers {
        if reader.join().is_err() {
            panic!("a member did not get every line");
        }
    }
    let max = max_queued.load(Ordering::Relaxed);
    // One fan-out: a message per listener plus its index entry.
    let one_call = LISTENERS * (MESSAGE + 16);
    eprintln!(
        "{model:?}: {LINES} lines sent at once to {LISTENERS} members; largest output \
         queued for others by one batch {max} B (high water {HIGH_WATER} B)"
    );
    assert!(
        max <= HIGH_WATER + one_call,
        "a batch queued {max} bytes for others, above high water ({HIGH_WATER}) + one fan-out ({one_call})"
    );
    let mut rest = Vec::new();
    speaker
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("set a read timeout");
    // The speaker gets nothing of its own lines back.
    let _ = speaker.read_to_end(&mut rest);
    assert!(rest.is_empty(), "the speaker got {} bytes", rest.len());
    drop(running);
}

for_each_model!(
    many_requests_without_reading_hold_at_most_high_water_plus_one_reply,
    fan_out_of_many_lines_at_once_is_bounded_per_batch,
);
