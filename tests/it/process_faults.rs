//! Faults that need the server in its own process: its memory under floods (VmRSS and
//! VmHWM), its CPU time while out of file descriptors, and its survival of SIGPIPE when an
//! embedding program has restored the signal's default action.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use fixtures::client::{connect, connect_small_rcvbuf, echo_roundtrip};
use fixtures::handlers::{BigReply, big_reply};
use fixtures::process::{ServerProcess, model_arg, stat};
use fixtures::{PATIENCE, for_each_model, wait_until};
use socket2::SockRef;
use tcp_reactor::Model;

for_each_model!(
    never_reading_writers_leave_server_memory_bounded,
    slow_steady_reader_of_a_flood_leaves_server_memory_bounded,
    descriptor_exhaustion_pauses_accepting_without_spinning_and_recovers,
    embedded_server_survives_peers_resetting_during_writes_with_sigpipe_at_default,
);

/// The log line a model writes when `accept` runs out of descriptors.
fn backoff_log(model: Model) -> &'static str {
    match model {
        Model::Reactor => "pausing accept",
        Model::Threads => "retrying in",
        other => panic!("no expectation written for {other:?}"),
    }
}

/// Write `chunk` to nonblocking `stream` for `span` (or until `cap` bytes), sleeping a
/// little whenever the kernel refuses more. Returns the bytes written.
fn push_for(stream: &mut TcpStream, span: Duration, cap: usize) -> usize {
    let chunk = vec![b'f'; 64 * 1024];
    let start = Instant::now();
    let mut sent = 0;
    while sent < cap && start.elapsed() < span {
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5))
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => panic!("flood write failed: {err}"),
        }
    }
    sent
}

fn never_reading_writers_leave_server_memory_bounded(model: Model) {
    const FLOODERS: usize = 20;
    const HIGH_WATER: usize = 256 * 1024;
    const READ_CHUNK: usize = 64 * 1024;
    let server = ServerProcess::spawn(
        &[
            "--high-water",
            "262144",
            "--low-water",
            "65536",
            "--linger",
            "0.5",
            "--model",
            model_arg(model),
        ],
        None,
    );
    let before = server.status();
    let addr = server.addr;
    let floods: Vec<_> = (0..FLOODERS)
        .map(|_| {
            thread::spawn(move || {
                let mut flooder = connect_small_rcvbuf(addr, 16 * 1024);
                flooder.set_nonblocking(true).expect("nonblocking");
                let sent = push_for(&mut flooder, Duration::from_secs(2), 256 << 20);
                (flooder, sent)
            })
        })
        .collect();
    // Served meanwhile.
    let mut other = connect(addr);
    for i in 0..50 {
        echo_roundtrip(&mut other, format!("meanwhile {i}\n").as_bytes());
    }
    let floods: Vec<(TcpStream, usize)> = floods
        .into_iter()
        .map(|t| t.join().expect("flooder"))
        .collect();
    let pushed: usize = floods.iter().map(|(_, sent)| sent).sum();
    let during = server.status();
    echo_roundtrip(&mut other, b"after the flood\n");
    drop(floods);
    drop(other);
    let growth_kib = during.hwm_kib.saturating_sub(before.hwm_kib);
    eprintln!(
        "{model:?}: {FLOODERS} never-reading writers pushed {} MiB in 2 s; server VmRSS {} -> {} KiB, \
         VmHWM {} -> {} KiB (growth {growth_kib} KiB; bound {} KiB per flooder by high water \
         + read chunks)",
        pushed >> 20,
        before.rss_kib,
        during.rss_kib,
        before.hwm_kib,
        during.hwm_kib,
        (HIGH_WATER + 2 * READ_CHUNK) / 1024
    );
    // Per flooder: pending output up to high water plus a read chunk, a read chunk of
    // buffered input; plus 8 MiB for the allocator's own slack.
    let bound_kib = (FLOODERS * (HIGH_WATER + 2 * READ_CHUNK) / 1024 + 8 * 1024) as u64;
    assert!(
        growth_kib <= bound_kib,
        "server memory grew by {growth_kib} KiB (bound {bound_kib} KiB)"
    );
    let stats = server.stop();
    assert_eq!(stat(&stats, "accepted"), FLOODERS as u64 + 1);
    assert_eq!(stat(&stats, "closed"), FLOODERS as u64 + 1);
}

/// Write to `stream` from a thread for `span`, as fast as the kernel takes it; the thread
/// returns the bytes written. Blocking writes with a short timeout: the socket is shared
/// with a reader, so it cannot be made nonblocking for the writer alone.
fn spawn_writer(stream: &TcpStream, span: Duration) -> thread::JoinHandle<usize> {
    let mut writer = stream.try_clone().expect("clone");
    writer
        .set_write_timeout(Some(Duration::from_millis(100)))
        .expect("write timeout");
    thread::spawn(move || {
        let chunk = vec![b'f'; 64 * 1024];
        let start = Instant::now();
        let mut sent = 0usize;
        while start.elapsed() < span {
            match writer.write(&chunk) {
                Ok(n) => sent += n,
                // The timeout: the server is not reading just now.
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => panic!("writes failed: {err}"),
            }
        }
        sent
    })
}

fn slow_steady_reader_of_a_flood_leaves_server_memory_bounded(model: Model) {
    // The client reads, but slower than it writes: the server's output never drains to
    // zero, it pauses and resumes between the water marks for the whole run.
    let server = ServerProcess::spawn(
        &[
            "--high-water",
            "262144",
            "--low-water",
            "65536",
            "--linger",
            "0.5",
            "--model",
            model_arg(model),
        ],
        None,
    );
    let before = server.status();
    let mut client = connect_small_rcvbuf(server.addr, 32 * 1024);
    let pushing = spawn_writer(&client, Duration::from_secs(3));
    let mut buf = vec![0u8; 16 * 1024];
    let mut read = 0usize;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        match client.read(&mut buf) {
            Ok(0) => panic!("the server closed a slow reader"),
            Ok(n) => read += n,
            Err(err) => panic!("slow reader: {err}"),
        }
        thread::sleep(Duration::from_millis(1));
    }
    let pushed = pushing.join().expect("writer");
    let during = server.status();
    let growth_kib = during.hwm_kib.saturating_sub(before.hwm_kib);
    eprintln!(
        "{model:?} slow steady reader: pushed {} MiB, read back {} MiB in 3 s; server VmHWM {} -> {} \
         KiB (growth {growth_kib} KiB)",
        pushed >> 20,
        read >> 20,
        before.hwm_kib,
        during.hwm_kib
    );
    assert!(
        read > 4 << 20,
        "the reader was served too little to tell ({read} bytes)"
    );
    // One connection's pending output is bounded by high water plus a read chunk; what
    // was already sent must not be kept.
    assert!(
        growth_kib <= 8 * 1024,
        "server memory grew by {growth_kib} KiB for one slow reader (it read {} MiB)",
        read >> 20
    );
    drop(client);
    server.stop();
}

/// Clients that each sent one message and wait for its echo.
#[derive(Debug)]
struct Crowd {
    /// Nonblocking client sockets.
    clients: Vec<TcpStream>,
    /// What each sent.
    messages: Vec<Vec<u8>>,
    /// What each has received so far.
    replies: Vec<Vec<u8>>,
}

impl Crowd {
    /// Connect `n` clients (the kernel completes each handshake into the listen backlog,
    /// accepted or not) and send each its message.
    #[track_caller]
    fn connect(addr: SocketAddr, n: usize) -> Crowd {
        let messages: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("client {i:03}\n").into_bytes())
            .collect();
        let clients = messages
            .iter()
            .map(|message| {
                let mut client = connect(addr);
                client.write_all(message).expect("write");
                client.set_nonblocking(true).expect("nonblocking");
                client
            })
            .collect();
        Crowd {
            clients,
            replies: vec![Vec::new(); n],
            messages,
        }
    }

    /// Read whatever each client has, without blocking.
    #[track_caller]
    fn collect(&mut self) {
        let mut buf = [0u8; 256];
        for (client, reply) in self.clients.iter_mut().zip(self.replies.iter_mut()) {
            loop {
                match client.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => reply.extend_from_slice(&buf[..n]),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => panic!("client read failed: {err}"),
                }
            }
        }
    }

    /// True if client `i` got its whole echo.
    fn is_served(&self, i: usize) -> bool {
        self.replies[i] == self.messages[i]
    }

    /// Clients served so far (after a `collect`).
    fn served(&self) -> Vec<usize> {
        (0..self.clients.len())
            .filter(|&i| self.is_served(i))
            .collect()
    }

    /// Collect until exactly `n` are served, or the timeout; true if they were.
    fn wait_served(&mut self, n: usize) -> bool {
        wait_until(PATIENCE, || {
            self.collect();
            self.served().len() == n
        })
    }
}

/// Wait until the server reports running out of descriptors (inherited descriptors count
/// against the limit too, so the log line, not a count, says when it is out), then until
/// the number of clients served holds still for longer than a back-off; returns it.
#[track_caller]
fn wait_exhausted(server: &ServerProcess, model: Model, crowd: &mut Crowd) -> usize {
    let exhausted = wait_until(PATIENCE, || server.log_lines_with(backoff_log(model)) > 0);
    assert!(
        exhausted,
        "the server never ran out of descriptors ({} open)",
        server.open_fds()
    );
    let (mut last, mut since) = (usize::MAX, Instant::now());
    let settled = wait_until(PATIENCE, || {
        crowd.collect();
        let served = crowd.served().len();
        if served != last {
            (last, since) = (served, Instant::now());
        }
        since.elapsed() > Duration::from_millis(700)
    });
    assert!(
        settled,
        "clients kept being served while out of descriptors"
    );
    last
}

fn descriptor_exhaustion_pauses_accepting_without_spinning_and_recovers(model: Model) {
    const NOFILE: u64 = 64;
    const CLIENTS: usize = 100;
    const LEAVING: usize = 50;
    let server = ServerProcess::spawn(
        &[
            "--max-connections",
            "1000",
            "--linger",
            "0.5",
            "--model",
            model_arg(model),
        ],
        Some(NOFILE),
    );
    let base = server.open_fds();
    let listening = server.open_sockets();
    let mut crowd = Crowd::connect(server.addr, CLIENTS);
    let capacity = wait_exhausted(&server, model, &mut crowd);
    // Every accepted client holds one descriptor, and was served.
    assert_eq!(capacity, server.open_sockets() - listening, "{model:?}");
    assert!(capacity < CLIENTS && capacity + base >= NOFILE as usize - 1);
    // Exhausted: accept fails with EMFILE. The server must not retry in a loop.
    let exhausted_since = Instant::now();
    let cpu = server.cpu_share_over(Duration::from_millis(1500));
    crowd.collect();
    assert_eq!(crowd.served().len(), capacity, "nobody else got in");
    assert!(
        cpu < 0.20,
        "{:.0}% of a core while out of descriptors",
        cpu * 100.0
    );
    if model == Model::Reactor {
        // The reactor logs an episode once; the threads model logs each retry.
        assert_eq!(
            server.log_lines_with("pausing accept"),
            1,
            "one line per episode"
        );
    }
    // Half of the served leave: the clients waiting in the backlog (which raise no new
    // readiness event) are accepted after the back-off and get their echo.
    let waiting = CLIENTS - capacity;
    for i in crowd.served().into_iter().take(LEAVING) {
        crowd.clients[i].shutdown(Shutdown::Both).expect("leave");
    }
    assert!(
        crowd.wait_served(CLIENTS),
        "{} of {waiting} waiting clients served after descriptors freed",
        crowd.served().len() - capacity
    );
    let exhausted_for = exhausted_since.elapsed();
    if model == Model::Reactor {
        assert_eq!(server.log_lines_with("file descriptors available again"), 1);
    }
    drop(crowd);
    let stats = server.stop();
    let attempts = stat(&stats, "fd exhausted");
    eprintln!(
        "{model:?} fd exhaustion (RLIMIT_NOFILE {NOFILE}, {base} fds at start): {capacity} of {CLIENTS} \
         served, CPU {:.1}% of a core while exhausted; {attempts} failed accepts over \
         {exhausted_for:?} (one per 500 ms back-off); {waiting} waiting clients served after \
         {LEAVING} left; accepted {}",
        cpu * 100.0,
        stat(&stats, "accepted")
    );
    assert_eq!(stat(&stats, "accepted"), CLIENTS as u64);
    assert_eq!(stat(&stats, "closed"), CLIENTS as u64);
    // A failed accept per back-off period, not a loop (+2: the first failure, the last try).
    let max_attempts = exhausted_for.as_millis() as u64 / 500 + 2;
    assert!(
        (1..=max_attempts).contains(&attempts),
        "{attempts} failed accepts"
    );
}

/// Environment variable that makes [`sigpipe_child`] act: `reactor` or `threads` (serve
/// under that model) or `control`.
const CHILD_MODE: &str = "TCP_REACTOR_SIGPIPE_CHILD";

/// Start this test binary again, running only [`sigpipe_child`] in `mode`.
fn spawn_child(
    mode: &str,
) -> (
    std::process::Child,
    SocketAddr,
    BufReader<std::process::ChildStdout>,
) {
    let exe = std::env::current_exe().expect("test binary path");
    // The child's test name as libtest knows it: this module's path without the crate.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let name = format!("{module}::sigpipe_child");
    let mut child = Command::new(exe)
        .args(["--ignored", "--exact", &name, "--nocapture"])
        .env(CHILD_MODE, mode)
        .env("RUST_LOG", "tcp_reactor=debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let addr = loop {
        line.clear();
        if stdout.read_line(&mut line).expect("child stdout") == 0 {
            panic!("the child exited before printing its address");
        }
        if let Some(addr) = line.trim().strip_prefix("addr ") {
            break addr.parse().expect("child address");
        }
    };
    (child, addr, stdout)
}

/// Wait (bounded) for `child` to exit.
fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let mut status = None;
    let exited = wait_until(Duration::from_secs(15), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        panic!("the child did not exit");
    }
    status.expect("status")
}

#[test]
fn restored_sigpipe_kills_a_plain_write_to_a_reset_peer_control() {
    // The control experiment: with SIGPIPE at its default, a plain write(2) to a peer that
    // reset after half-closing kills the process. This is what the server must survive.
    let (mut child, addr, _stdout) = spawn_child("control");
    let mut client = connect(addr);
    client.write_all(b"x").expect("write");
    client.shutdown(Shutdown::Write).expect("half-close");
    thread::sleep(Duration::from_millis(100));
    SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(client);
    let status = wait_exit(&mut child);
    assert_eq!(
        status.signal(),
        Some(libc::SIGPIPE),
        "the control child was not killed by SIGPIPE: {status}"
    );
}

/// Size of the reply the SIGPIPE child sends to every client.
const SIGPIPE_REPLY: usize = 16 << 20;

/// One hostile client of the SIGPIPE test: ask for a reply bigger than the kernel buffers
/// can hold, half-close, then reset while the server is still writing it. The server's TCP
/// has our FIN by then (state CLOSE_WAIT, whether or not the server read it), so the reset
/// makes its next write fail with EPIPE, not ECONNRESET: the error that raises SIGPIPE
/// unless the write says MSG_NOSIGNAL.
fn half_close_then_reset(addr: SocketAddr) {
    let client = connect_small_rcvbuf(addr, 8 * 1024);
    (&client).write_all(b"go").expect("write");
    client.shutdown(Shutdown::Write).expect("half-close");
    // Time for the server to start writing; the reply cannot drain meanwhile.
    thread::sleep(Duration::from_millis(50));
    SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
}

fn embedded_server_survives_peers_resetting_during_writes_with_sigpipe_at_default(model: Model) {
    const HOSTILE: usize = 64;
    let (mut child, addr, mut stdout) = spawn_child(model_arg(model));
    let stderr = child.stderr.take().expect("stderr");
    let log = thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .filter(|line| line.contains("Broken pipe"))
            .count()
    });
    let threads: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                for _ in (t..HOSTILE).step_by(4) {
                    half_close_then_reset(addr);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("hostile clients");
    }
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "the embedding process died: {:?}",
        child.try_wait()
    );
    let mut client = connect(addr);
    client.write_all(b"still alive?").expect("write");
    let mut reply = vec![0; SIGPIPE_REPLY];
    client.read_exact(&mut reply).expect("the whole reply");
    assert!(
        reply == big_reply(SIGPIPE_REPLY),
        "the reply arrived intact"
    );
    drop(client);
    drop(child.stdin.take());
    let status = wait_exit(&mut child);
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let epipes = log.join().expect("log reader");
    let stats = fixtures::process::parse_stats(&rest);
    let resets = stat(&stats, "reset");
    let epipe_note = match model {
        Model::Reactor => format!("{epipes} writes failed with EPIPE (debug log)"),
        Model::Threads => "EPIPEs not logged by this model".to_string(),
        other => panic!("no expectation written for {other:?}"),
    };
    eprintln!(
        "{model:?}, SIGPIPE at SIG_DFL in the embedding process: {HOSTILE} peers reset \
         during writes, {epipe_note}, {resets} connections closed as reset; the process \
         survived ({status})"
    );
    assert!(
        status.success() && status.signal().is_none(),
        "the child ended with {status}"
    );
    if model == Model::Reactor {
        // The reactor logs each failed write; the threads model does not (counted with
        // `strace -f -e trace=sendto`: its writes fail with EPIPE here too).
        assert!(epipes > 0, "no write hit EPIPE, so the test proved nothing");
    }
    assert!(resets > 0);
}

/// Not a test of its own: the child process of the two SIGPIPE tests above, which start
/// this binary with `--ignored --exact process_faults::sigpipe_child`.
#[test]
#[ignore = "child process of the SIGPIPE tests; they run it"]
fn sigpipe_child() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    // What an embedding program (or one using `-Zon-broken-pipe=kill`) may do: restore
    // SIGPIPE's default action, which is to terminate the process.
    // SAFETY: setting a signal disposition to SIG_DFL installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    match mode.as_str() {
        "reactor" => child_server(Model::Reactor),
        "threads" => child_server(Model::Threads),
        _ => child_control(),
    }
}

/// Serve a big reply to each client under `model` until stdin closes, then print the stats.
fn child_server(model: Model) {
    let _ = env_logger::builder().try_init();
    let config = tcp_reactor::Config::default()
        .with_max_output(64 << 20)
        .with_linger(Duration::from_secs(2));
    let running = tcp_reactor::Server::new(BigReply::new(SIGPIPE_REPLY))
        .config(config)
        .model(model)
        .bind(fixtures::server::loopback())
        .expect("bind");
    println!("addr {}", running.local_addr());
    let _ = io::stdout().flush();
    let _ = io::stdin().read_to_end(&mut Vec::new());
    let stats = running.stop().expect("stop");
    println!("{stats}");
}

/// Accept one client, read to its EOF, wait for its reset, then write with plain write(2).
fn child_control() {
    let listener = std::net::TcpListener::bind(fixtures::server::loopback()).expect("bind");
    println!("addr {}", listener.local_addr().expect("addr"));
    let _ = io::stdout().flush();
    let (mut stream, _) = listener.accept().expect("accept");
    let _ = stream.read_to_end(&mut Vec::new());
    thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        // write(2) itself, without the MSG_NOSIGNAL that std's socket writes add.
        let _ = nix::unistd::write(&stream, b"y");
        thread::sleep(Duration::from_millis(50));
    }
    println!("survived");
}
