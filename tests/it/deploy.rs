//! The `serve` binary as deployments run it: socket activation (`LISTEN_FDS`, simulated
//! and through `systemd-socket-activate`), the pid file, the SIGUSR2 binary upgrade —
//! under steady load, repeated, failing, stopped half-way, after a move-away deploy — and
//! the operator's mistakes start-up must catch: an address already served, a planted pid
//! file link, a busy Unix socket.
//!
//! Every server here is its own process (its children too), so the test can watch pids,
//! send signals and count what each client saw.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const SERVER_BIN: &str = env!("CARGO_BIN_EXE_tcp-reactor");

/// A fresh directory, removed at the end of the test.
struct TempDir(tempfile::TempDir);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tcp-reactor-deploy-{name}-"))
            .tempdir()
            .expect("create a temporary directory");
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.path().join(file)
    }
}

/// The log lines of a server and of every process it starts (they share its stderr).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn collect(&self, pipe: impl Read + Send + 'static) -> JoinHandle<()> {
        let lines = Arc::clone(&self.0);
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    }

    fn count(&self, needle: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }

    /// Wait until a line containing `needle` has been logged `times` times.
    #[track_caller]
    fn wait_for(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.count(needle) < times {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Start `program args` with stdout discarded and stderr collected into `log`.
fn spawn_logged(command: &mut Command, log: &Log) -> Child {
    command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start the server");
    log.collect(child.stderr.take().expect("stderr"));
    child
}

/// Echo one message over `stream`; the error says what went wrong.
fn echo<S: Read + Write>(stream: &mut S, message: &[u8]) -> Result<(), Failure> {
    stream.write_all(message).map_err(Failure::from_io)?;
    let mut back = vec![0; message.len()];
    let mut got = 0;
    while got < back.len() {
        match stream.read(&mut back[got..]) {
            Ok(0) => return Err(Failure::Short),
            Ok(n) => got += n,
            Err(err) => return Err(Failure::from_io(err)),
        }
    }
    if back != message {
        return Err(Failure::Wrong);
    }
    Ok(())
}

/// What went wrong for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Failure {
    /// The connection was refused.
    Refused,
    /// The connection was reset (or the pipe broken).
    Reset,
    /// EOF before the whole echo came back.
    Short,
    /// Bytes came back that were not sent.
    Wrong,
    /// No reply in time.
    Timeout,
    /// Anything else.
    Other,
}

impl Failure {
    fn from_io(err: io::Error) -> Failure {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => Failure::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => Failure::Reset,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Timeout,
            io::ErrorKind::UnexpectedEof => Failure::Short,
            _ => Failure::Other,
        }
    }
}

fn connect_tcp(addr: SocketAddr) -> Result<TcpStream, Failure> {
    let stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(Failure::from_io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(Failure::from_io)?;
    Ok(stream)
}

fn connect_unix(path: &Path) -> Result<UnixStream, Failure> {
    let stream = UnixStream::connect(path).map_err(Failure::from_io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(Failure::from_io)?;
    Ok(stream)
}

/// A free TCP port on loopback (bound and released; the kernel will not hand it out
/// again at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("find a free port")
        .port()
}

/// Read the pid file, if it holds a pid.
fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[track_caller]
fn wait_for_pid_file(path: &Path, not: Option<u32>) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(pid) = read_pid(path)
            && Some(pid) != not
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "the pid file never named a new process"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill only sends a signal.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        io::Error::last_os_error()
    );
}

/// Make this test process the reaper of orphaned descendants, so that each old server
/// (whose parent has already exited) can be waited for here.
fn become_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag on this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
}

/// Wait for process `pid` (a child or an adopted orphan) to exit, at most `limit`.
fn wait_exit(pid: u32, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG on a pid; `status` is a valid out-pointer.
        let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if rc == pid as libc::pid_t {
            return Some(start.elapsed());
        }
        if rc < 0 && !Path::new(&format!("/proc/{pid}")).exists() {
            // Not ours to wait for, and gone.
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(2));
    }
    None
}

/// Spawn `tcp-reactor serve ARGS` with `listener` as descriptor 3, and the activation
/// variables set by a shell that then execs the server (so `$$` is the server's pid).
fn spawn_activated(listener: &impl AsRawFd, listen_pid: &str, args: &[&str], log: &Log) -> Child {
    let fd = listener.as_raw_fd();
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(format!(
            "LISTEN_FDS=1 LISTEN_PID={listen_pid} exec \"$0\" serve \"$@\""
        ))
        .arg(SERVER_BIN)
        .args(args);
    // SAFETY: dup2 and fcntl only, between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec: clear it by hand in that case.
            let placed = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if placed < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spawn_logged(&mut command, log)
}

#[test]
fn a_listening_descriptor_passed_as_fd_3_is_served_instead_of_addr() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let log = Log::default();
    let unused = format!("127.0.0.1:{}", free_port());
    // `$$` is expanded by the shell, whose pid the server keeps through exec.
    let mut server = spawn_activated(&listener, "$$", &["--addr", &unused], &log);
    drop(listener);
    log.wait_for("socket activation", 1);
    let mut client = connect_tcp(addr).expect("connect to the activated socket");
    echo(&mut client, b"activated").expect("echo");
    assert!(
        TcpStream::connect(&unused).is_err(),
        "--addr must not be bound when LISTEN_FDS names the process"
    );
    signal(server.id(), libc::SIGTERM);
    server.wait().expect("wait");
}

#[test]
fn a_wrong_listen_pid_is_ignored() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let activation_addr = listener.local_addr().unwrap();
    let log = Log::default();
    let own = format!("127.0.0.1:{}", free_port());
    let mut server = spawn_activated(&listener, "1", &["--addr", &own], &log);
    log.wait_for("ignoring LISTEN_FDS", 1);
    // It binds --addr instead, and serves there.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = loop {
        match connect_tcp(own.parse().unwrap()) {
            Ok(client) => break client,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Err(failure) => panic!("--addr not served: {failure:?}\n{}", log.text()),
        }
    };
    echo(&mut client, b"own address").expect("echo");
    // The descriptor meant for another process is not served: a client there gets no echo.
    let mut ignored = connect_tcp(activation_addr).expect("queued by the kernel");
    ignored
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert_eq!(echo(&mut ignored, b"x"), Err(Failure::Timeout));
    signal(server.id(), libc::SIGTERM);
    server.wait().expect("wait");
}

#[test]
fn systemd_socket_activate_starts_a_server_that_serves_its_socket() {
    let tool = "/usr/bin/systemd-socket-activate";
    if !Path::new(tool).exists() {
        eprintln!(
            "SKIPPED: {tool} is not installed (Debian package `systemd`); .ci/run installs it"
        );
        return;
    }
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = Log::default();
    let mut activator = spawn_logged(
        Command::new(tool)
            .args(["-l", &addr.to_string(), SERVER_BIN, "serve"])
            .args(["--addr", "127.0.0.1:1"]),
        &log,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = loop {
        match connect_tcp(addr) {
            Ok(client) => break client,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Err(failure) => panic!("{failure:?}\n{}", log.text()),
        }
    };
    echo(&mut client, b"via systemd-socket-activate").expect("echo");
    log.wait_for("socket activation", 1);
    signal(activator.id(), libc::SIGTERM);
    activator.wait().expect("wait");
}

/// What the load saw during the upgrades.
#[derive(Debug, Default)]
struct Tally {
    /// Connections that completed their echoes.
    served: AtomicU64,
    /// Echo round trips completed.
    echoes: AtomicU64,
    /// Metrics scrapes answered.
    scrapes: AtomicU64,
    /// Failures by kind.
    failures: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn fail(&self, failure: Failure, what: &str) {
        *self
            .failures
            .lock()
            .unwrap()
            .entry(format!("{failure:?} ({what})"))
            .or_default() += 1;
    }
}

/// Short connections: connect, echo one message, close; until `stop`.
fn short_clients(
    addr: SocketAddr,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut n = seed;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            n += 1;
            let message = format!("short {seed} {n} {}\n", "x".repeat((n % 200) as usize));
            let result = connect_tcp(addr).and_then(|mut s| echo(&mut s, message.as_bytes()));
            match result {
                Ok(()) => {
                    tally.served.fetch_add(1, Ordering::Relaxed);
                    tally.echoes.fetch_add(1, Ordering::Relaxed);
                }
                Err(failure) => tally.fail(failure, "short tcp"),
            }
        }
    })
}

/// Long-lived clients on the Unix socket: echo every few milliseconds for `life`, close,
/// reconnect; until `stop`.
fn long_clients(
    path: PathBuf,
    life: Duration,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let mut stream = match connect_unix(&path) {
                Ok(stream) => stream,
                Err(failure) => {
                    tally.fail(failure, "long unix connect");
                    continue;
                }
            };
            let born = Instant::now();
            let mut round = 0u64;
            let mut ok = true;
            while born.elapsed() < life {
                round += 1;
                let message = format!("long {seed} {round}\n");
                if let Err(failure) = echo(&mut stream, message.as_bytes()) {
                    tally.fail(failure, "long unix");
                    ok = false;
                    break;
                }
                tally.echoes.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(5));
            }
            if ok {
                tally.served.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

/// Scrapes of the metrics endpoint, one every few milliseconds; until `stop`.
fn scraper(addr: SocketAddr, tally: Arc<Tally>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match scrape(addr) {
                Ok(()) => {
                    tally.scrapes.fetch_add(1, Ordering::Relaxed);
                }
                Err(failure) => tally.fail(failure, "metrics scrape"),
            }
            thread::sleep(Duration::from_millis(5));
        }
    })
}

/// One `GET /metrics`, which must be answered 200 with the metrics.
fn scrape(addr: SocketAddr) -> Result<(), Failure> {
    let mut stream = connect_tcp(addr)?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: tcp-reactor\r\nConnection: close\r\n\r\n")
        .map_err(Failure::from_io)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).map_err(Failure::from_io)?;
    let text = String::from_utf8_lossy(&reply);
    if !text.starts_with("HTTP/1.1 200 OK") || !text.contains("tcp_reactor_connections_open") {
        return Err(if reply.is_empty() {
            Failure::Short
        } else {
            Failure::Wrong
        });
    }
    Ok(())
}

fn upgrade_under_load(model: &str) {
    become_subreaper();
    let dir = TempDir::new(&format!("upgrade-{model}"));
    let pid_file = dir.path("server.pid");
    let socket = dir.path("server.sock");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = Log::default();
    let mut first = spawn_logged(
        Command::new(SERVER_BIN).args([
            "serve",
            "--model",
            model,
            "--workers",
            "2",
            "--addr",
            &addr.to_string(),
            "--addr",
            &format!("unix:{}", socket.display()),
            "--metrics",
            &metrics.to_string(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--drain-timeout",
            "5",
        ]),
        &log,
    );
    let mut pid = wait_for_pid_file(&pid_file, None);
    assert_eq!(pid, first.id());

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for seed in 0..4 {
        load.push(short_clients(
            addr,
            Arc::clone(&tally),
            Arc::clone(&stop),
            seed * 1_000_000,
        ));
    }
    for seed in 0..8 {
        let life = Duration::from_millis(600 + 100 * seed);
        load.push(long_clients(
            socket.clone(),
            life,
            Arc::clone(&tally),
            Arc::clone(&stop),
            seed,
        ));
    }
    // The metrics socket is handed over with the listeners: scrapes never fail either.
    load.push(scraper(metrics, Arc::clone(&tally), Arc::clone(&stop)));
    thread::sleep(Duration::from_millis(500));

    const UPGRADES: usize = 4;
    let mut exits = Vec::new();
    for _ in 0..UPGRADES {
        let old = pid;
        let asked = Instant::now();
        signal(old, libc::SIGUSR2);
        pid = wait_for_pid_file(&pid_file, Some(old));
        let handed = asked.elapsed();
        let exited = wait_exit(old, Duration::from_secs(15));
        let exited =
            exited.unwrap_or_else(|| panic!("old server {old} did not exit\n{}", log.text()));
        exits.push((old, pid, handed, handed + exited));
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "the new server {pid} runs"
        );
        // Let the new server carry the load alone for a moment.
        thread::sleep(Duration::from_millis(300));
    }
    // Reaped above by pid already: this only settles the `Child`.
    let _ = first.wait();
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().expect("a load thread");
    }

    signal(pid, libc::SIGTERM);
    let last_exit = wait_exit(pid, Duration::from_secs(15));
    assert!(last_exit.is_some(), "the last server did not stop");
    assert!(
        read_pid(&pid_file).is_none(),
        "the last server removes its pid file"
    );
    assert!(!socket.exists(), "the last server removes its socket file");

    let failures = tally.failures.lock().unwrap().clone();
    eprintln!(
        "upgrade under load ({model}): {UPGRADES} upgrades; {} connections served, {} echoes, {} scrapes; failures {failures:?}",
        tally.served.load(Ordering::Relaxed),
        tally.echoes.load(Ordering::Relaxed),
        tally.scrapes.load(Ordering::Relaxed)
    );
    for (old, new, handed, exited) in &exits {
        eprintln!(
            "  old {old} -> new {new}: pid file after {:.0} ms, old exited {:.0} ms after SIGUSR2",
            handed.as_secs_f64() * 1e3,
            exited.as_secs_f64() * 1e3
        );
    }
    assert!(
        failures.is_empty(),
        "client failures: {failures:?}\n{}",
        log.text()
    );
    assert!(tally.served.load(Ordering::Relaxed) > 100, "the load ran");
    assert!(
        tally.scrapes.load(Ordering::Relaxed) > 20,
        "the scraper ran"
    );
    assert_eq!(log.count("upgrade failed"), 0, "{}", log.text());
}

#[test]
fn the_reactor_upgrades_under_load_without_losing_a_connection() {
    upgrade_under_load("reactor");
}

#[test]
fn the_threads_model_upgrades_under_load_without_losing_a_connection() {
    upgrade_under_load("threads");
}

#[test]
fn a_failed_upgrade_leaves_the_old_server_serving() {
    become_subreaper();
    let dir = TempDir::new("failed");
    let exe = dir.path("tcp-reactor");
    std::fs::copy(SERVER_BIN, &exe).expect("copy the binary");
    let pid_file = dir.path("server.pid");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = Log::default();
    let mut server = spawn_logged(
        Command::new(&exe).args([
            "serve",
            "--addr",
            &addr.to_string(),
            "--pid-file",
            pid_file.to_str().unwrap(),
        ]),
        &log,
    );
    let pid = wait_for_pid_file(&pid_file, None);
    let mut held = connect_tcp(addr).expect("connect");
    echo(&mut held, b"before").expect("echo");

    // 1. The new binary cannot be executed.
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    signal(pid, libc::SIGUSR2);
    log.wait_for("upgrade failed", 1);
    assert_eq!(read_pid(&pid_file), Some(pid));
    echo(&mut held, b"after an unexecutable binary").expect("the held client is served");
    echo(&mut connect_tcp(addr).expect("connect"), b"new client").expect("echo");

    // 2. The new binary exits at once (slowly enough that a second SIGUSR2 arrives while
    // it is starting: that one is ignored).
    std::fs::remove_file(&exe).expect("remove");
    std::fs::write(&exe, "#!/bin/sh\nsleep 1\nexit 3\n").expect("write a failing binary");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    signal(pid, libc::SIGUSR2);
    log.wait_for("SIGUSR2: starting", 2);
    signal(pid, libc::SIGUSR2);
    log.wait_for("SIGUSR2 ignored", 1);
    log.wait_for("upgrade failed", 2);
    assert!(
        log.text().contains("ended before it was accepting"),
        "{}",
        log.text()
    );
    assert_eq!(read_pid(&pid_file), Some(pid));
    echo(&mut held, b"after a binary that exits").expect("the held client is served");
    echo(&mut connect_tcp(addr).expect("connect"), b"new client").expect("echo");

    // 3. With the real binary back, the upgrade goes through.
    std::fs::remove_file(&exe).expect("remove");
    std::fs::copy(SERVER_BIN, &exe).expect("copy the binary");
    signal(pid, libc::SIGUSR2);
    let new = wait_for_pid_file(&pid_file, Some(pid));
    echo(&mut held, b"held across the upgrade").expect("the old server still serves it");
    drop(held);
    server
        .wait()
        .expect("the old server exits once its client closed");
    echo(
        &mut connect_tcp(addr).expect("connect"),
        b"served by the new one",
    )
    .expect("echo");
    signal(new, libc::SIGTERM);
    assert!(wait_exit(new, Duration::from_secs(15)).is_some());
}

#[test]
fn after_the_drain_timeout_held_clients_get_eof_not_a_reset() {
    become_subreaper();
    for model in ["reactor", "threads"] {
        let dir = TempDir::new(&format!("drain-{model}"));
        let pid_file = dir.path("server.pid");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = Log::default();
        let mut server = spawn_logged(
            Command::new(SERVER_BIN).args([
                "serve",
                "--model",
                model,
                "--addr",
                &addr.to_string(),
                "--pid-file",
                pid_file.to_str().unwrap(),
                "--drain-timeout",
                "0.5",
            ]),
            &log,
        );
        let old = wait_for_pid_file(&pid_file, None);
        let mut held = connect_tcp(addr).expect("connect");
        echo(&mut held, b"before the upgrade").expect("echo");
        signal(old, libc::SIGUSR2);
        let new = wait_for_pid_file(&pid_file, Some(old));
        echo(&mut held, b"still served while draining").expect("echo");
        let started = Instant::now();
        let mut rest = Vec::new();
        // The old server closes it gracefully at the drain timeout: EOF, not a reset.
        let read = held.read_to_end(&mut rest);
        assert!(read.is_ok(), "{model}: {read:?}");
        assert!(rest.is_empty());
        let waited = started.elapsed();
        // Our EOF ends the old server's lingering close.
        drop(held);
        server.wait().expect("the old server exits");
        assert!(
            log.text()
                .contains("drain timeout: closing the last 1 connection(s) gracefully"),
            "{}",
            log.text()
        );
        eprintln!(
            "{model}: held client got EOF {:.0} ms after the pid file changed",
            waited.as_secs_f64() * 1e3
        );
        echo(&mut connect_tcp(addr).expect("connect"), b"new").expect("the new server serves");
        signal(new, libc::SIGTERM);
        assert!(wait_exit(new, Duration::from_secs(15)).is_some());
    }
}

/// Run `command` (stdout discarded, stderr collected) for at most `limit`; its exit status
/// (`None` if it was still running, then it is killed) and its stderr.
fn run_bounded(
    command: &mut Command,
    limit: Duration,
) -> (Option<std::process::ExitStatus>, String) {
    let log = Log::default();
    let mut child = spawn_logged(command, &log);
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().expect("wait") {
            Some(status) => break Some(status),
            None if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    // Let the log thread take the last lines.
    thread::sleep(Duration::from_millis(50));
    (status, log.text())
}

#[test]
fn start_up_next_to_a_live_unix_server_with_a_full_queue_fails_at_once() {
    use socket2::{Domain, SockAddr, Socket, Type};
    let dir = TempDir::new("busy-unix");
    let path = dir.path("busy.sock");
    // A live server that never accepts, its queue full.
    let busy = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
    busy.bind(&SockAddr::unix(&path).unwrap()).expect("bind");
    busy.listen(0).expect("listen");
    let mut queued = Vec::new();
    loop {
        let client = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
        client.set_nonblocking(true).expect("nonblocking");
        match client.connect(&SockAddr::unix(&path).unwrap()) {
            Ok(()) => queued.push(client),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) => panic!("filling the queue: {err}"),
        }
        assert!(queued.len() < 1000, "the queue never filled");
    }
    let started = Instant::now();
    let (status, stderr) = run_bounded(
        Command::new(SERVER_BIN).args(["serve", "--addr", &format!("unix:{}", path.display())]),
        Duration::from_secs(10),
    );
    let took = started.elapsed();
    eprintln!(
        "start-up next to a full queue of {} connection(s): {status:?} after {:.0} ms",
        queued.len(),
        took.as_secs_f64() * 1e3
    );
    assert!(
        status.is_some_and(|s| !s.success()),
        "start-up hung on the busy socket: {status:?}\n{stderr}"
    );
    assert!(
        stderr.contains("address in use: a server is listening (its queue is full)"),
        "{stderr}"
    );
    assert!(
        path.exists(),
        "the live server's socket file is left in place"
    );
}

#[test]
fn a_link_planted_at_the_pid_files_temporary_path_is_never_followed() {
    let dir = TempDir::new("pid-link");
    let victim = dir.path("victim");
    std::fs::write(&victim, "precious\n").expect("write the victim");
    let pid_file = dir.path("server.pid");
    // The shell plants `server.pid.<pid>.tmp` -> victim, then execs the server (same pid).
    let (status, stderr) = run_bounded(
        Command::new("/bin/sh")
            .arg("-c")
            .arg("ln -s \"$1\" \"$2.$$.tmp\" && exec \"$0\" serve --addr 127.0.0.1:0 --pid-file \"$2\"")
            .arg(SERVER_BIN)
            .arg(&victim)
            .arg(&pid_file),
        Duration::from_secs(20),
    );
    assert_eq!(
        std::fs::read_to_string(&victim).expect("read the victim"),
        "precious\n",
        "the link's target was written: {stderr}"
    );
    assert!(
        !status.expect("the server refuses to start").success(),
        "{stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with("tcp-reactor: error: pid file")
            && errors[0].contains(".tmp")
            && errors[0].contains("left untouched"),
        "{stderr}"
    );
    let link = std::fs::read_dir(&dir.0)
        .expect("list")
        .filter_map(Result::ok)
        .find(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
        .expect("the planted link is still there");
    assert!(link.file_type().expect("type").is_symlink());
    assert!(
        std::fs::symlink_metadata(&pid_file).is_err(),
        "no pid file is made"
    );
}

/// Whether process `pid` still runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_string();
            Some(state != "Z")
        })
        .unwrap_or(false)
}

/// Replace the file at `path` by a shell script (`path` may be running: the old file is
/// unlinked, not written over).
fn install_script(path: &Path, body: &str) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write the script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A directory's path as the kernel reports a working directory (links resolved).
fn real(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).expect("canonicalize")
}

#[test]
fn a_move_away_deploy_upgrades_to_the_build_now_at_the_start_path() {
    // `mv tcp-reactor tcp-reactor.old`, the new build installed as `tcp-reactor`, then
    // SIGUSR2: the new build must run, not the renamed file the old process runs from.
    become_subreaper();
    let dir = TempDir::new("move-away");
    let exe = dir.path("tcp-reactor");
    std::fs::copy(SERVER_BIN, &exe).expect("copy the binary");
    let pid_file = dir.path("server.pid");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = Log::default();
    // Started by a relative path from its own directory: resolved against that directory.
    let mut server = spawn_logged(
        Command::new("/bin/sh")
            .arg("-c")
            .arg("cd \"$1\" && exec ./tcp-reactor serve --addr \"$2\" --pid-file server.pid")
            .arg("sh")
            .arg(dir.0.path())
            .arg(addr.to_string()),
        &log,
    );
    let old = wait_for_pid_file(&pid_file, None);
    let mut held = connect_tcp(addr).expect("connect");
    echo(&mut held, b"before the deploy").expect("echo");

    std::fs::rename(&exe, dir.path("tcp-reactor.old")).expect("move the old build away");
    let ran = dir.path("new-build.pid");
    // The new build: it records that it ran, then is the server (same pid, through exec).
    install_script(
        &exe,
        &format!("echo $$ > '{}'\nexec '{SERVER_BIN}' \"$@\"", ran.display()),
    );
    signal(old, libc::SIGUSR2);
    let new = wait_for_pid_file(&pid_file, Some(old));
    if read_pid(&ran) != Some(new) {
        signal(new, libc::SIGTERM);
        panic!(
            "the process that took over ({}) is not the build now at {}:\n{}",
            std::fs::read_link(format!("/proc/{new}/exe"))
                .map_or("gone".into(), |exe| exe.display().to_string()),
            exe.display(),
            log.text()
        );
    }
    echo(&mut held, b"held by the old process").expect("echo");
    drop(held);
    server.wait().expect("the old server exits");
    echo(&mut connect_tcp(addr).expect("connect"), b"new build").expect("echo");
    // The path is resolved at start-up and logged then and at the upgrade.
    let started_as = real(dir.0.path()).join("tcp-reactor");
    for line in [
        format!(
            "SIGUSR2 upgrades this server by starting {}",
            started_as.display()
        ),
        format!("SIGUSR2: starting {} to take over", started_as.display()),
    ] {
        assert_eq!(log.count(&line), 1, "{line:?} once in\n{}", log.text());
    }
    signal(new, libc::SIGTERM);
    assert!(wait_exit(new, Duration::from_secs(15)).is_some());
}

#[test]
fn a_stop_during_an_upgrade_stops_the_new_process_that_is_not_accepting() {
    // A new build that never reports accepting, and holds the sockets it is handed: one
    // that SIGTERM stops, and one that ignores SIGTERM (SIGKILL after the grace).
    become_subreaper();
    for (name, successor, fate) in [
        ("stoppable", "exec sleep 60", "was stopped with SIGTERM"),
        ("stubborn", "trap '' TERM\nexec sleep 60", "was killed"),
    ] {
        let dir = TempDir::new(&format!("abandon-{name}"));
        let exe = dir.path("tcp-reactor");
        std::fs::copy(SERVER_BIN, &exe).expect("copy the binary");
        let pid_file = dir.path("server.pid");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = Log::default();
        let mut server = spawn_logged(
            Command::new(&exe).args([
                "serve",
                "--addr",
                &addr.to_string(),
                "--pid-file",
                pid_file.to_str().unwrap(),
            ]),
            &log,
        );
        let old = wait_for_pid_file(&pid_file, None);
        let started = dir.path("successor.pid");
        install_script(
            &exe,
            &format!("echo $$ > '{}'\n{successor}", started.display()),
        );
        signal(old, libc::SIGUSR2);
        let deadline = Instant::now() + Duration::from_secs(20);
        let successor = loop {
            if let Some(pid) = read_pid(&started) {
                break pid;
            }
            assert!(Instant::now() < deadline, "no successor:\n{}", log.text());
            thread::sleep(Duration::from_millis(5));
        };
        // Let it reach the `exec`, so that what runs is the process that holds the sockets.
        thread::sleep(Duration::from_millis(200));
        let asked = Instant::now();
        signal(old, libc::SIGTERM);
        let stopped = wait_exit(old, Duration::from_secs(20));
        let _ = server.wait();
        let orphan = alive(successor);
        if orphan {
            // Clean up before failing: the orphan holds the port.
            signal(successor, libc::SIGKILL);
            wait_exit(successor, Duration::from_secs(5));
        }
        assert!(stopped.is_some(), "{name}: the old server did not exit");
        assert!(
            !orphan,
            "{name}: the new process {successor} outlived the stop and held the listener:\n{}",
            log.text()
        );
        // Nobody holds the address: clients are refused, and a restart can bind it.
        assert_eq!(
            TcpStream::connect(addr)
                .map(|_| ())
                .map_err(|err| err.kind()),
            Err(io::ErrorKind::ConnectionRefused),
            "{name}"
        );
        drop(TcpListener::bind(addr).expect("a restart binds the address"));
        assert!(
            log.text().contains(fate),
            "{name}: {fate:?} not in\n{}",
            log.text()
        );
        assert!(
            read_pid(&pid_file).is_none(),
            "{name}: the pid file is removed"
        );
        eprintln!(
            "{name}: SIGTERM during the upgrade; the old server and its new process gone after {:.0} ms",
            asked.elapsed().as_secs_f64() * 1e3
        );
    }
}

#[test]
fn a_second_server_on_a_served_address_fails_with_address_in_use() {
    // With SO_REUSEPORT a second server would join the port and take a share of the
    // clients; like redis and nginx, it must fail instead, whatever the worker counts.
    for (first_workers, second_workers) in [
        ("1", "1"),
        ("1", "2"),
        ("2", "2"),
        ("2", "1"),
        ("4", "4"),
        ("1", "4"),
    ] {
        let dir = TempDir::new(&format!("second-{first_workers}-{second_workers}"));
        let pid_file = dir.path("server.pid");
        let addr = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        let log = Log::default();
        let mut first = spawn_logged(
            Command::new(SERVER_BIN).args([
                "serve",
                "--workers",
                first_workers,
                "--addr",
                &addr,
                "--metrics",
                &metrics,
                "--pid-file",
                pid_file.to_str().unwrap(),
            ]),
            &log,
        );
        let pid = wait_for_pid_file(&pid_file, None);
        let (same_addr, same_addr_log) = run_bounded(
            Command::new(SERVER_BIN).args(["serve", "--workers", second_workers, "--addr", &addr]),
            Duration::from_secs(10),
        );
        let other = format!("127.0.0.1:{}", free_port());
        let (same_metrics, same_metrics_log) = run_bounded(
            Command::new(SERVER_BIN).args([
                "serve",
                "--workers",
                second_workers,
                "--addr",
                &other,
                "--metrics",
                &metrics,
            ]),
            Duration::from_secs(10),
        );
        signal(pid, libc::SIGTERM);
        first.wait().expect("the first server stops");
        let what = format!("first --workers {first_workers}, second --workers {second_workers}");
        assert!(
            same_addr.is_some_and(|s| s.code() == Some(1))
                && same_addr_log
                    .contains(&format!("cannot listen on {addr}: Address already in use")),
            "{what}: a second server on {addr}: {same_addr:?}\n{same_addr_log}"
        );
        assert!(
            same_metrics.is_some_and(|s| s.code() == Some(1))
                && same_metrics_log.contains(&format!(
                    "cannot serve metrics on {metrics}: Address already in use"
                )),
            "{what}: a second metrics endpoint on {metrics}: {same_metrics:?}\n{same_metrics_log}"
        );
    }
}

/// The metrics text of the server at `metrics` (`GET /metrics`).
fn metrics_text(metrics: SocketAddr) -> String {
    let mut stream = connect_tcp(metrics).expect("connect to the metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the metrics");
    reply
}

/// `tcp_reactor_accepted_total` per worker, from a metrics text.
fn accepted_by_worker(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|line| line.strip_prefix("tcp_reactor_accepted_total{worker=\""))
        .filter_map(|rest| rest.split_once(' ')?.1.trim().parse().ok())
        .collect()
}

/// Upgrade a server from `--workers 2` to 3, then to 1, under a steady loop of short
/// connections, and count what the clients lost.
fn upgrade_changing_the_worker_count(model: &str) {
    become_subreaper();
    let dir = TempDir::new(&format!("workers-{model}"));
    let pid_file = dir.path("server.pid");
    let workers_file = dir.path("workers");
    std::fs::write(&workers_file, "2").expect("write the worker count");
    // The start path: a script that runs the binary with `--workers` taken from a file, so
    // that an upgrade (which starts the same path with the same arguments) can change it.
    let exe = dir.path("tcp-reactor");
    // bash's `exec -a` keeps the script as the process's argv[0], the path an upgrade starts.
    std::fs::write(
        &exe,
        format!(
            "#!/bin/bash\nw=$(cat '{}')\nfor a do\n  shift\n  if [ \"$prev\" = --workers ]; then set -- \"$@\" \"$w\"; else set -- \"$@\" \"$a\"; fi\n  prev=$a\ndone\nexec -a \"$0\" '{SERVER_BIN}' \"$@\"\n",
            workers_file.display()
        ),
    )
    .expect("write the script");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = Log::default();
    let mut first = spawn_logged(
        Command::new(&exe).args([
            "serve",
            "--model",
            model,
            "--workers",
            "1",
            "--addr",
            &addr.to_string(),
            "--metrics",
            &metrics.to_string(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--drain-timeout",
            "5",
        ]),
        &log,
    );
    let mut pid = wait_for_pid_file(&pid_file, None);
    assert_eq!(
        accepted_by_worker(&metrics_text(metrics)).len(),
        2,
        "started with the file's count"
    );

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|seed| {
            short_clients(
                addr,
                Arc::clone(&tally),
                Arc::clone(&stop),
                seed * 1_000_000,
            )
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let mut spreads = Vec::new();
    for workers in [3, 1] {
        std::fs::write(&workers_file, workers.to_string()).expect("write the worker count");
        let old = pid;
        signal(old, libc::SIGUSR2);
        pid = wait_for_pid_file(&pid_file, Some(old));
        assert!(
            wait_exit(old, Duration::from_secs(15)).is_some(),
            "old server {old} did not exit\n{}",
            log.text()
        );
        // The steady loop goes on against the new process alone; every one of its
        // workers takes a share (their sockets are the kernel's choice, not a wake-up race).
        let deadline = Instant::now() + Duration::from_secs(20);
        let spread = loop {
            let spread = accepted_by_worker(&metrics_text(metrics));
            if (spread.len() == workers && spread.iter().all(|&n| n > 0))
                || Instant::now() > deadline
            {
                break spread;
            }
            thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(spread.len(), workers, "{}", log.text());
        assert!(
            spread.iter().all(|&n| n > 0),
            "every worker of the new process accepts: {spread:?}"
        );
        spreads.push(spread);
        thread::sleep(Duration::from_millis(300));
    }
    let _ = first.wait();
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().expect("a load thread");
    }
    signal(pid, libc::SIGTERM);
    assert!(wait_exit(pid, Duration::from_secs(15)).is_some());
    let failures = tally.failures.lock().unwrap().clone();
    eprintln!(
        "upgrade 2 -> 3 -> 1 workers ({model}): {} connections served, failures {failures:?}; accepted by worker after each upgrade {spreads:?}",
        tally.served.load(Ordering::Relaxed)
    );
    assert!(
        failures.is_empty(),
        "client failures: {failures:?}\n{}",
        log.text()
    );
    assert!(tally.served.load(Ordering::Relaxed) > 100, "the load ran");
    assert_eq!(log.count("upgrade failed"), 0, "{}", log.text());
}

#[test]
fn the_reactor_upgrades_to_more_and_to_fewer_workers_without_losing_a_connection() {
    upgrade_changing_the_worker_count("reactor");
}

#[test]
fn the_threads_model_upgrades_to_more_and_to_fewer_workers_without_losing_a_connection() {
    upgrade_changing_the_worker_count("threads");
}
