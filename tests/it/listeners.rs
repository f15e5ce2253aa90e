//! Listeners of every kind, served by both models and by several workers: Unix socket
//! paths (with their stale, live and busy files), TCP and Unix in one server, an address
//! another server holds, sockets handed in by the embedder, and what a handler sees of a
//! Unix peer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tcp_reactor::protocols::Echo;
use tcp_reactor::{Context, Handler, ListenAddr, Listener, Model, PeerAddr, Running, Server};

const MODELS: [Model; 2] = [Model::Reactor, Model::Threads];

/// A fresh directory for socket files, removed at the end of the test.
struct TempDir(tempfile::TempDir);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tcp-reactor-listeners-{name}-"))
            .tempdir()
            .expect("create a temporary directory");
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.path().join(file)
    }
}

/// Echo `message` over any stream and check every byte comes back.
fn echo_round<S: Read + Write>(stream: &mut S, message: &[u8]) {
    stream.write_all(message).expect("send");
    let mut back = vec![0; message.len()];
    stream.read_exact(&mut back).expect("echo");
    assert_eq!(back, message);
}

fn unix_client(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).expect("connect to the Unix socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

fn tcp_client(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect over TCP");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

/// Many clients at once on a Unix socket, each echoing several messages.
fn echo_many_unix(path: &Path, clients: usize) {
    let mut streams: Vec<UnixStream> = (0..clients).map(|_| unix_client(path)).collect();
    for round in 0..5 {
        for (index, stream) in streams.iter_mut().enumerate() {
            echo_round(stream, format!("client {index} round {round}\n").as_bytes());
        }
    }
}

fn tcp_addr(running: &Running) -> SocketAddr {
    running
        .listen_addrs()
        .iter()
        .find_map(|addr| match addr {
            ListenAddr::Tcp(addr) => Some(*addr),
            _ => None,
        })
        .expect("a TCP listener")
}

#[test]
fn unix_socket_echo_in_both_models_with_one_and_several_workers() {
    let dir = TempDir::new("echo");
    for model in MODELS {
        for workers in [1, 3] {
            let path = dir.path(&format!("{model:?}-{workers}.sock"));
            let running = Server::new(Echo)
                .model(model)
                .workers(workers)
                .listen([Listener::unix(&path)])
                .expect("listen on a Unix socket");
            assert_eq!(
                running.listen_addrs(),
                [ListenAddr::Unix(Some(path.clone()))]
            );
            echo_many_unix(&path, 30);
            // Several workers poll one queue: whoever wakes first takes the client.
            eprintln!(
                "{model:?}, {workers} workers on one Unix socket: accepted by worker {:?}",
                running.accepted_by_worker()
            );
            let stats = running.stop().expect("stop");
            assert_eq!(stats.accepted, 30, "{model:?} with {workers} workers");
            assert!(
                !path.exists(),
                "{model:?}: the socket file is removed on a graceful stop"
            );
        }
    }
}

#[test]
fn one_server_serves_tcp_and_unix_listeners_together() {
    let dir = TempDir::new("mixed");
    for model in MODELS {
        let path = dir.path(&format!("{model:?}.sock"));
        let running = Server::new(Echo)
            .model(model)
            .workers(2)
            .listen([
                Listener::tcp("127.0.0.1:0".parse().unwrap()),
                Listener::unix(&path),
                Listener::tcp("127.0.0.1:0".parse().unwrap()),
            ])
            .expect("listen on three listeners");
        let addrs = running.listen_addrs().to_vec();
        assert_eq!(addrs.len(), 3);
        let (ListenAddr::Tcp(first), ListenAddr::Tcp(third)) = (&addrs[0], &addrs[2]) else {
            panic!("unexpected addresses {addrs:?}");
        };
        assert_ne!(first, third);
        let mut tcp_a = tcp_client(*first);
        let mut unix = unix_client(&path);
        let mut tcp_b = tcp_client(*third);
        for round in 0..10 {
            echo_round(&mut tcp_a, format!("a{round}").as_bytes());
            echo_round(&mut unix, format!("u{round}").as_bytes());
            echo_round(&mut tcp_b, format!("b{round}").as_bytes());
        }
        drop((tcp_a, unix, tcp_b));
        let stats = running.stop().expect("stop");
        assert_eq!(stats.accepted, 3, "{model:?}");
    }
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_is_never_taken() {
    let dir = TempDir::new("stale");
    let path = dir.path("app.sock");
    // A server that died leaves its file behind: bound, then closed without unlinking.
    drop(UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());
    let running = Server::new(Echo)
        .listen([Listener::unix(&path).mode(0o660)])
        .expect("a stale file is replaced");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "--unix-mode applies to the file");
    echo_round(&mut unix_client(&path), b"after the stale file");

    // A second server on the same path must fail, and leave the first one serving.
    let err = Server::new(Echo)
        .listen([Listener::unix(&path)])
        .expect_err("a live socket must not be stolen");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains("address in use"), "{err}");
    echo_round(&mut unix_client(&path), b"the first server still serves");

    // A path that is not a socket is left alone.
    let plain = dir.path("plain.txt");
    std::fs::write(&plain, "data").expect("write");
    let err = Server::new(Echo)
        .listen([Listener::unix(&plain)])
        .expect_err("a regular file is not replaced");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(std::fs::read_to_string(&plain).expect("read"), "data");

    running.stop().expect("stop");
    assert!(!path.exists());
}

#[test]
fn a_unix_socket_whose_live_server_has_a_full_queue_is_in_use_at_once() {
    use socket2::{Domain, SockAddr, Socket, Type};
    let dir = TempDir::new("busy");
    let path = dir.path("busy.sock");
    // A live server that never accepts, its queue full: a blocking connect would wait.
    let busy = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
    busy.bind(&SockAddr::unix(&path).unwrap()).expect("bind");
    busy.listen(0).expect("listen");
    let mut queued = Vec::new();
    loop {
        let client = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
        client.set_nonblocking(true).expect("nonblocking");
        match client.connect(&SockAddr::unix(&path).unwrap()) {
            Ok(()) => queued.push(client),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(err) => panic!("filling the queue: {err}"),
        }
        assert!(queued.len() < 1000, "the queue never filled");
    }
    for model in MODELS {
        let (tx, rx) = std::sync::mpsc::channel();
        let target = path.clone();
        std::thread::spawn(move || {
            let result = Server::new(Echo)
                .model(model)
                .listen([Listener::unix(&target)]);
            let _ = tx.send(result.map(|running| running.stop()));
        });
        let outcome = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{model:?}: listen blocked on the busy socket"));
        let err = outcome.expect_err("a busy server's socket must not be taken");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("its queue is full"), "{err}");
        assert!(path.exists(), "the live server's file is left in place");
    }
}

#[test]
fn a_second_server_on_a_served_tcp_address_fails_whatever_the_worker_counts() {
    // The probe bound without `SO_REUSEPORT` before the per-worker sockets: a second server
    // does not silently join the first's `SO_REUSEPORT` group and take a share of the
    // clients.
    for model in MODELS {
        for (first, second) in [(1, 1), (1, 2), (2, 1), (2, 2), (4, 4), (1, 4), (4, 1)] {
            let running = Server::new(Echo)
                .model(model)
                .workers(first)
                .bind("127.0.0.1:0".parse().unwrap())
                .expect("bind");
            let addr = running.local_addr();
            let err = Server::new(Echo)
                .model(model)
                .workers(second)
                .bind(addr)
                .expect_err("a second server on a served address");
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::AddrInUse,
                "{model:?}, {first} then {second} workers: {err}"
            );
            echo_round(&mut tcp_client(addr), b"the first server still serves");
            running.stop().expect("stop");
        }
    }
    // The metrics endpoint likewise.
    let running = Server::new(Echo)
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("bind");
    let endpoint =
        tcp_reactor::metrics::serve("127.0.0.1:0".parse().unwrap(), running.live_stats())
            .expect("serve metrics");
    let err = tcp_reactor::metrics::serve(endpoint.local_addr(), running.live_stats())
        .expect_err("a second metrics endpoint on the same address");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    endpoint.stop();
    running.stop().expect("stop");
}

#[test]
fn listeners_handed_in_by_the_embedder_are_served_and_their_files_kept() {
    let dir = TempDir::new("handed");
    let path = dir.path("embedder.sock");
    for model in MODELS {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind TCP");
        let tcp_addr_bound = tcp.local_addr().expect("addr");
        let unix = UnixListener::bind(&path).expect("bind Unix");
        let running = Server::new(Echo)
            .model(model)
            .workers(2)
            .listen([Listener::from_tcp(tcp), Listener::from_unix(unix)])
            .expect("serve handed-in listeners");
        assert_eq!(tcp_addr(&running), tcp_addr_bound);
        echo_round(&mut tcp_client(tcp_addr_bound), b"tcp handed in");
        echo_many_unix(&path, 10);
        running.stop().expect("stop");
        assert!(path.exists(), "a file the embedder made is the embedder's");
        std::fs::remove_file(&path).expect("remove");
    }
}

#[test]
fn a_socket_that_is_not_listening_is_rejected() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let stream = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let err = Server::new(Echo)
        .listen([Listener::inherited(stream.into())])
        .expect_err("a connected socket is not a listener");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

/// Records the peer address each connection's handler saw, then echoes.
#[derive(Default)]
struct PeerRecorder(Mutex<Vec<PeerAddr>>);

impl Handler for PeerRecorder {
    type Session = ();

    fn open(&self, ctx: &mut Context<'_>) {
        self.0.lock().unwrap().push(ctx.peer_addr());
    }

    fn data(&self, _session: &mut (), ctx: &mut Context<'_>, input: &[u8]) -> usize {
        ctx.write(input);
        input.len()
    }
}

#[test]
fn a_unix_peer_is_named_by_its_process() {
    let dir = TempDir::new("peer");
    for model in MODELS {
        let path = dir.path(&format!("{model:?}.sock"));
        let recorder = Arc::new(PeerRecorder::default());
        let running = Server::from_arc(Arc::clone(&recorder))
            .model(model)
            .listen([
                Listener::unix(&path),
                Listener::tcp("127.0.0.1:0".parse().unwrap()),
            ])
            .expect("listen");
        let mut unix = unix_client(&path);
        echo_round(&mut unix, b"who am I");
        let mut tcp = tcp_client(tcp_addr(&running));
        echo_round(&mut tcp, b"and I");
        let tcp_local = tcp.local_addr().unwrap();
        drop((unix, tcp));
        running.stop().expect("stop");
        let seen = recorder.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{model:?}");
        let unix_peer = seen[0].as_unix().expect("a Unix peer");
        assert_eq!(unix_peer.pid, Some(std::process::id()), "{model:?}");
        assert_eq!(
            seen[0].to_string(),
            format!(
                "unix:pid={},uid={}",
                std::process::id(),
                unix_peer.uid.unwrap()
            )
        );
        assert_eq!(seen[1], PeerAddr::Tcp(tcp_local), "{model:?}");
    }
}

#[test]
fn workers_share_one_unix_queue_under_concurrent_clients() {
    let dir = TempDir::new("share");
    for model in MODELS {
        let path = dir.path(&format!("{model:?}.sock"));
        let running = Server::new(Echo)
            .model(model)
            .workers(4)
            .listen([Listener::unix(&path)])
            .expect("listen");
        let clients: Vec<_> = (0..8)
            .map(|client| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for n in 0..200 {
                        let mut stream = unix_client(&path);
                        echo_round(&mut stream, format!("{client}/{n}").as_bytes());
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().expect("client thread");
        }
        let by_worker = running.accepted_by_worker();
        // Every worker polls the one queue; which one takes a client is the kernel's
        // wake-up order, reported here, not asserted.
        eprintln!("{model:?}, 4 workers, 1600 Unix clients: accepted by worker {by_worker:?}");
        assert_eq!(by_worker.iter().sum::<u64>(), 1600);
        running.stop().expect("stop");
    }
}

/// Open `n` connections to `addr` as fast as one thread can (each connect completes in the
/// kernel, before any worker accepts), wait until `running` has accepted them all, and
/// return the per-worker counts.
fn burst(running: &Running, addr: SocketAddr, n: u64) -> Vec<u64> {
    let before = running.accepted();
    let clients: Vec<TcpStream> = (0..n).map(|_| tcp_client(addr)).collect();
    assert!(
        fixtures::wait_until(Duration::from_secs(20), || running.accepted() >= before + n),
        "only {} of {n} accepted",
        running.accepted() - before
    );
    drop(clients);
    running.accepted_by_worker()
}

#[test]
fn a_burst_of_connects_reaches_every_worker() {
    // Each worker accepts from a `SO_REUSEPORT` socket of its own, and the kernel chooses a
    // client's socket by a hash of its address and port, not by which worker wakes first:
    // the spread does not depend on scheduling or load. With 200 clients over 4 sockets a
    // worker's share is Binomial(200, 1/4), mean 50; fewer than 10 has a probability
    // below 1e-13. (One shared socket gave [196, 4, 0, 0]: the first worker awake drains it.)
    for model in MODELS {
        let running = Server::new(Echo)
            .model(model)
            .workers(4)
            .bind("127.0.0.1:0".parse().unwrap())
            .expect("bind");
        let by_worker = burst(&running, running.local_addr(), 200);
        eprintln!(
            "{model:?}, 4 workers, a burst of 200 connects: accepted by worker {by_worker:?}"
        );
        assert_eq!(by_worker.iter().sum::<u64>(), 200, "{by_worker:?}");
        assert!(
            by_worker.iter().all(|&n| n >= 10),
            "{model:?}: every worker takes a share of a burst: {by_worker:?}"
        );
        // The metrics endpoint reports the same per-worker counts.
        let text = tcp_reactor::metrics::render(&running.live_stats().snapshot());
        for (worker, n) in by_worker.iter().enumerate() {
            let sample = format!("tcp_reactor_accepted_total{{worker=\"{worker}\"}} {n}");
            assert!(text.contains(&sample), "{sample} missing from:\n{text}");
        }
        running.stop().expect("stop");
    }
}

#[test]
fn inherited_per_worker_sockets_are_all_served_whatever_the_new_worker_count() {
    // A successor given a predecessor's per-worker sockets serves every one of them (a
    // `SO_REUSEPORT` socket left unserved would strand the clients the kernel queues in
    // it), and binds more when it runs more workers.
    for model in MODELS {
        for (before, after) in [(2, 3), (3, 1), (4, 4)] {
            let old = Server::new(Echo)
                .model(model)
                .workers(before)
                .bind("127.0.0.1:0".parse().unwrap())
                .expect("bind");
            let addr = old.local_addr();
            let fds = old.listener_fds().expect("descriptors");
            assert_eq!(fds.len(), before, "one socket per worker");
            let new = Server::new(Echo)
                .model(model)
                .workers(after)
                .listen(fds.into_iter().map(Listener::inherited))
                .expect("serve the inherited sockets");
            assert_eq!(new.listen_addrs(), [ListenAddr::Tcp(addr)], "one address");
            assert_eq!(new.listener_fds().expect("fds").len(), before.max(after));
            old.stop_handle().stop_accepting();
            assert!(fixtures::wait_until(Duration::from_secs(10), || !old.is_accepting()));
            // Every connect now reaches the new server, whichever socket the kernel picks.
            let by_worker = burst(&new, addr, 200);
            eprintln!("{model:?}, {before} -> {after} workers: accepted by worker {by_worker:?}");
            assert_eq!(
                by_worker.iter().sum::<u64>(),
                200,
                "{model:?}: {by_worker:?}"
            );
            assert!(by_worker.iter().all(|&n| n > 0), "{model:?}: {by_worker:?}");
            echo_round(&mut tcp_client(addr), b"served by the successor");
            old.stop().expect("stop the old server");
            new.stop().expect("stop the new server");
        }
    }
}

#[test]
fn an_address_held_by_another_program_is_refused_with_or_without_so_reuseport() {
    use socket2::{Domain, Socket, Type};
    // Another program's listener: a plain one (redis), and one in a `SO_REUSEPORT` group of
    // its own (nginx `reuseport`), which our per-worker sockets could otherwise join.
    for reuse_port in [false, true] {
        let other = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        other.set_reuse_address(true).expect("SO_REUSEADDR");
        other.set_reuse_port(reuse_port).expect("SO_REUSEPORT");
        other
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .expect("bind");
        other.listen(16).expect("listen");
        let addr = other.local_addr().unwrap().as_socket().unwrap();
        for model in MODELS {
            for workers in [1, 2, 4] {
                let err = Server::new(Echo)
                    .model(model)
                    .workers(workers)
                    .bind(addr)
                    .expect_err("an address another program listens on");
                assert_eq!(
                    err.kind(),
                    std::io::ErrorKind::AddrInUse,
                    "SO_REUSEPORT {reuse_port}, {model:?}, {workers} workers: {err}"
                );
            }
        }
    }
}
