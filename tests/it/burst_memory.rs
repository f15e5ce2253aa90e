//! Memory after a burst: the server (in its own process, so its `/proc` figures are its
//! own) gives back what a burst took once the burst is over. The case is a chat fan-out,
//! one member sending 64 KiB of bare `\n` (65,536 empty lines) to a room of members, which
//! queues millions of short messages in a single callback batch. Once every member has
//! read everything, with everyone still connected, and again once all have left, resident
//! memory must be back near where it started.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use fixtures::client::connect;
use fixtures::eventually;
use fixtures::process::{ServerProcess, model_arg};
use tcp_reactor::Model;

/// Members of the room, the sender included.
const MEMBERS: usize = 100;
/// Bare newlines the sender sends at once: each is an empty line for every other member.
const BURST: usize = 64 * 1024;
/// How far above its baseline the server's VmRSS may stay once the burst is over.
///
/// Measured with this scenario (debug build): with trimming, the server stays within
/// about 1 MiB of its baseline once the members have read everything, and once all have
/// left, whatever the mark (with a mark of 4 GiB the burst peaks at VmHWM 171 MiB under
/// the reactor, 95 MiB under threads, and still falls back). Without trimming, the reactor
/// kept 130 MiB, even after everyone left, and the threads model 65 MiB while the sender
/// stayed connected. 16 MiB leaves room for the allocator's own slack and still fails the
/// old code four times over.
const KEEP_BOUND_KIB: u64 = 16 * 1024;
/// Longest a member may wait for its next bytes: the fan-out of a debug build on a busy
/// machine is slow.
const READ_PATIENCE: Duration = Duration::from_secs(60);

/// Read from `member` until `lines` empty chat lines (`[id] `) have arrived; returns the
/// bytes read. Other lines are the join probes: the first one marks the member `joined`.
fn read_lines(mut member: TcpStream, lines: usize, joined: &AtomicUsize) -> usize {
    // Delivering millions of short lines through 100 client threads takes a while on a
    // loaded machine: give each read a minute rather than the fixtures' default.
    member
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("set a read timeout");
    let mut buf = vec![0u8; 64 * 1024];
    let (mut seen, mut total, mut probed) = (0, 0, false);
    // The line read so far is empty ("[id] " and nothing else) if it ends in "] ".
    let mut tail = [0u8; 2];
    while seen < lines {
        match member.read(&mut buf) {
            Ok(0) => panic!("EOF after {seen} of {lines} lines"),
            Ok(n) => {
                total += n;
                for &byte in &buf[..n] {
                    if byte != b'\n' {
                        tail = [tail[1], byte];
                        continue;
                    }
                    if &tail == b"] " {
                        seen += 1;
                    } else if !probed {
                        probed = true;
                        joined.fetch_add(1, Ordering::SeqCst);
                    }
                    tail = [0; 2];
                }
            }
            Err(err) => panic!("read failed after {seen} of {lines} lines: {err}"),
        }
    }
    total
}

/// The burst under default flags: the high-water mark bounds each callback batch, and the
/// buffers are trimmed after it.
fn chat_burst_memory_falls_back_once_members_leave(model: Model) {
    chat_burst(model, &[]);
}

/// The burst with a high-water mark so high that one batch queues the whole fan-out
/// (over 100 MiB): only the trimming of the buffers gives that memory back. The output cap
/// may not be below the mark; each member's share (about 1 MiB) is far below either.
fn chat_burst_memory_falls_back_even_when_one_batch_takes_it_all(model: Model) {
    let mark = "4294967296";
    chat_burst(model, &["--high-water", mark, "--max-output", mark]);
}

/// One member of a chat room of [`MEMBERS`] sends [`BURST`] bare newlines; check the
/// server's resident memory once everyone has read them, and once everyone has left.
fn chat_burst(model: Model, flags: &[&str]) {
    // One burst at a time: four rooms of 100 members with a reader thread each, run at
    // once on two cores, measure the scheduler more than the server.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let mut args = vec!["--protocol", "chat", "--model", model_arg(model)];
    args.extend_from_slice(flags);
    let server = ServerProcess::spawn(&args, None);
    let idle_sockets = server.open_sockets();
    let mut members: Vec<TcpStream> = (0..MEMBERS).map(|_| connect(server.addr)).collect();
    for member in &members {
        member
            .set_read_timeout(Some(READ_PATIENCE))
            .expect("set a read timeout");
    }
    eventually("every member connected", || {
        server.open_sockets() == idle_sockets + MEMBERS
    });

    let mut sender = members.remove(0);
    let joined = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = members
        .into_iter()
        .map(|member| {
            let joined = Arc::clone(&joined);
            thread::spawn(move || read_lines(member, BURST, &joined))
        })
        .collect();
    // An accepted socket is not yet a member: under threads, a member joins the room when
    // its own thread runs `Handler::open`, which a loaded machine may delay past the
    // accept. Probe until every member has heard one.
    eventually("every member joined the room", || {
        sender.write_all(b"probe\n").expect("send a probe");
        thread::sleep(Duration::from_millis(50));
        joined.load(Ordering::SeqCst) == MEMBERS - 1
    });
    let baseline = server.status();
    sender.write_all(&[b'\n'; BURST]).expect("send the burst");
    let received: usize = readers
        .into_iter()
        .map(|reader| reader.join().expect("a member got every line"))
        .sum();
    // The last member may get its last line just before the sender's batch is trimmed.
    thread::sleep(Duration::from_millis(300));
    let idle = server.status();
    drop(sender);
    eventually("every member left", || {
        server.open_sockets() == idle_sockets
    });
    // Let the last closes finish (the threads model joins its client threads lazily).
    thread::sleep(Duration::from_millis(300));
    let after = server.status();

    eprintln!(
        "{model:?} {flags:?}: {MEMBERS} members, {BURST} bare newlines from one, {} MiB delivered; \
         server VmRSS baseline {} KiB, after the burst {} KiB (VmHWM {} KiB), after all left \
         {} KiB",
        received >> 20,
        baseline.rss_kib,
        idle.rss_kib,
        idle.hwm_kib,
        after.rss_kib
    );
    let kept = idle.rss_kib.saturating_sub(baseline.rss_kib);
    assert!(
        kept <= KEEP_BOUND_KIB,
        "server kept {kept} KiB above its baseline once the burst was read, everyone still \
         connected (bound {KEEP_BOUND_KIB} KiB)"
    );
    let kept = after.rss_kib.saturating_sub(baseline.rss_kib);
    assert!(
        kept <= KEEP_BOUND_KIB,
        "server kept {kept} KiB above its baseline after every client left (bound {KEEP_BOUND_KIB} KiB)"
    );
    server.stop();
}

/// Under the reactor.
mod reactor {
    use tcp_reactor::Model::Reactor;

    #[test]
    fn chat_burst_memory_falls_back_once_members_leave() {
        super::chat_burst_memory_falls_back_once_members_leave(Reactor);
    }

    #[test]
    fn chat_burst_memory_falls_back_even_when_one_batch_takes_it_all() {
        super::chat_burst_memory_falls_back_even_when_one_batch_takes_it_all(Reactor);
    }
}

/// Under the thread-per-client model.
mod threads {
    use tcp_reactor::Model::Threads;

    #[test]
    fn chat_burst_memory_falls_back_once_members_leave() {
        super::chat_burst_memory_falls_back_once_members_leave(Threads);
    }

    #[test]
    fn chat_burst_memory_falls_back_even_when_one_batch_takes_it_all() {
        super::chat_burst_memory_falls_back_even_when_one_batch_takes_it_all(Threads);
    }
}
