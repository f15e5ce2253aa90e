//! The servers under comparison, each started in its own process pinned to CPU 0: our
//! reactor and thread-per-client models (the `tcp-reactor` binary, started the way the
//! tests start it) and two tokio echo servers (this bench binary re-executed with a
//! special first argument); the TLS cells: both our models and tokio with tokio-rustls,
//! over TLS 1.3 with a certificate made for each server; and our proxy (`--protocol proxy`,
//! under each model) in front of our echo server, which runs inside the bench process on
//! the load generator's CPU (the proxy has CPU 0 alone; the upstream's CPU time is
//! counted with the load generator's).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use fixtures::process::{ServeCommand, ServerProcess, model_arg};
use tcp_reactor::Model;

use crate::procfs;

/// First argument that turns this bench binary into a tokio echo server.
pub const ECHO_ARG: &str = "__tokio-echo";

/// The servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `tcp-reactor serve --model reactor`.
    Reactor,
    /// `tcp-reactor serve --model threads`.
    Threads,
    /// tokio, `current_thread` runtime.
    TokioCurrent,
    /// tokio, multi-thread runtime.
    TokioMulti,
    /// `tcp-reactor serve --protocol proxy` (reactor model) in front of our echo server.
    Proxy,
    /// The same proxy under the threads model (a thread per client and per upstream).
    ProxyThreads,
    /// `tcp-reactor serve --model reactor` over TLS.
    ReactorTls,
    /// `tcp-reactor serve --model threads` over TLS.
    ThreadsTls,
    /// tokio `current_thread` with tokio-rustls.
    TokioTls,
}

/// The write policy the reactor runs with: `BENCH_POLICY` (`eager`, `end-of-turn`,
/// `adaptive`) when set, else the library's default.
pub fn reactor_policy() -> String {
    std::env::var("BENCH_POLICY").unwrap_or_else(|_| {
        tcp_reactor::Config::default()
            .write_policy
            .name()
            .to_string()
    })
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 9] = [
        Kind::Reactor,
        Kind::Threads,
        Kind::TokioCurrent,
        Kind::TokioMulti,
        Kind::Proxy,
        Kind::ProxyThreads,
        Kind::ReactorTls,
        Kind::ThreadsTls,
        Kind::TokioTls,
    ];

    /// Name in tables and files.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Reactor => "reactor",
            Kind::Threads => "threads",
            Kind::TokioCurrent => "tokio-current",
            Kind::TokioMulti => "tokio-multi",
            Kind::Proxy => "proxy",
            Kind::ProxyThreads => "proxy-threads",
            Kind::ReactorTls => "reactor-tls",
            Kind::ThreadsTls => "threads-tls",
            Kind::TokioTls => "tokio-tls",
        }
    }

    /// True for the servers speaking TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Kind::ReactorTls | Kind::ThreadsTls | Kind::TokioTls)
    }
}

/// A certificate for `localhost` and its private key, as PEM files made with rcgen in a
/// private temporary directory (mode 0700, a random name) that is removed when this is
/// dropped: with its server, or as a failing run unwinds. No key is ever committed, and
/// none is left behind.
#[derive(Debug)]
pub struct Certificate {
    /// The directory holding `cert.pem` and `key.pem`.
    dir: tempfile::TempDir,
}

impl Certificate {
    /// Make a fresh certificate and key.
    pub fn generate() -> io::Result<Certificate> {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .map_err(io::Error::other)?;
        let dir = tempfile::Builder::new()
            .prefix("tcp-reactor-bench-")
            .tempdir()?;
        let certificate = Certificate { dir };
        std::fs::write(certificate.cert(), made.cert.pem())?;
        std::fs::write(certificate.key(), made.signing_key.serialize_pem())?;
        Ok(certificate)
    }

    /// The certificate's PEM file: what a client trusts.
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// The private key's PEM file.
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// The certificate and key as command-line arguments.
    fn args(&self) -> [String; 2] {
        [
            self.cert().display().to_string(),
            self.key().display().to_string(),
        ]
    }
}

/// A server process; killed when dropped (a benchmark server holds no state worth a
/// graceful stop).
#[derive(Debug)]
pub struct Server {
    /// The process.
    process: Process,
    /// Where it listens.
    pub addr: SocketAddr,
    /// A proxy's upstream, an echo server in this process; stopped after the proxy.
    upstream: Option<tcp_reactor::Running>,
    /// A TLS server's certificate and key; their files go with the server.
    certificate: Option<Certificate>,
}

/// Which kind of process a [`Server`] is.
#[derive(Debug)]
enum Process {
    /// Ours: the fixtures' `tcp-reactor serve` process, killed when dropped.
    Ours(ServerProcess),
    /// A tokio echo server: this bench binary, re-executed.
    Tokio(Child),
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        match &self.process {
            Process::Ours(process) => process.pid(),
            Process::Tokio(child) => child.id(),
        }
    }

    /// The certificate a client of this TLS server trusts; `None` for plaintext.
    pub fn ca(&self) -> Option<PathBuf> {
        self.certificate.as_ref().map(Certificate::cert)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Process::Tokio(child) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(upstream) = self.upstream.take() {
            let _ = upstream.stop();
        }
    }
}

/// Start a server of `kind` on a free loopback port, pinned to CPU `cpu` when `pin`, and
/// wait until it accepts connections.
pub fn start(kind: Kind, pin: Option<(usize, usize)>) -> io::Result<Server> {
    // The child inherits this thread's CPU affinity at spawn: pin to the server's CPU just
    // for the spawn, then back to the load generator's.
    if let Some((server_cpu, _)) = pin {
        procfs::pin_self(server_cpu);
    }
    let spawned = spawn(kind);
    if let Some((_, load_cpu)) = pin {
        procfs::pin_self(load_cpu);
    }
    let mut server = spawned?;
    if let Process::Tokio(child) = &mut server.process {
        wait_ready(child, server.addr)?;
    }
    Ok(server)
}

/// Start a server of `kind`; ours announce their address once they listen.
fn spawn(kind: Kind) -> io::Result<Server> {
    let model = match kind {
        Kind::Reactor | Kind::ReactorTls => Model::Reactor,
        Kind::Threads | Kind::ThreadsTls => Model::Threads,
        Kind::TokioCurrent | Kind::TokioMulti | Kind::TokioTls => {
            let addr = free_port()?;
            let flavour = match kind {
                Kind::TokioCurrent => "current",
                Kind::TokioTls => "current-tls",
                _ => "multi",
            };
            let certificate = kind.is_tls().then(Certificate::generate).transpose()?;
            let tls = certificate.as_ref().map(Certificate::args);
            let child = Command::new(std::env::current_exe()?)
                .args([ECHO_ARG, flavour, &addr.to_string()])
                .args(tls.iter().flatten())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            return Ok(Server {
                process: Process::Tokio(child),
                addr,
                upstream: None,
                certificate,
            });
        }
        Kind::Proxy | Kind::ProxyThreads => return spawn_proxy(kind),
    };
    let mut command = ServeCommand::default();
    let certificate = kind.is_tls().then(Certificate::generate).transpose()?;
    if let Some(certificate) = &certificate {
        let [cert, key] = certificate.args();
        command = command.args(["--tls-cert", &cert, "--tls-key", &key]);
    }
    command = command
        .args(["--protocol", "echo", "--model", model_arg(model)])
        // Room for the 10,000 idle connections (the default maximum is exactly 10,000).
        .args(["--max-connections", "15000"]);
    if model == Model::Reactor {
        command = command.args(["--write-policy", &reactor_policy()]);
    }
    command
        // Per-connection log lines would cost our servers time the tokio ones do not spend.
        .log("warn")
        .spawn()
        .map(|process| Server {
            addr: process.addr,
            process: Process::Ours(process),
            upstream: None,
            certificate,
        })
}

/// Start our proxy under the model `kind` names, in front of our echo server started in
/// this process.
fn spawn_proxy(kind: Kind) -> io::Result<Server> {
    let upstream = tcp_reactor::Server::new(tcp_reactor::protocols::Echo)
        .config(tcp_reactor::Config::default().with_max_connections(15_000))
        .bind(free_port()?)?;
    let model = if kind == Kind::Proxy {
        Model::Reactor
    } else {
        Model::Threads
    };
    let target = upstream.local_addr().to_string();
    ServeCommand::default()
        .args(["--protocol", "proxy", "--model", model_arg(model)])
        .args(["--upstream", &target, "--max-connections", "15000"])
        .log("warn")
        .spawn()
        .map(|process| Server {
            addr: process.addr,
            process: Process::Ours(process),
            upstream: Some(upstream),
            certificate: None,
        })
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Wait up to 10 s for a tokio server to accept a connection on `addr`.
fn wait_ready(child: &mut Child, addr: SocketAddr) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "server exited at start ({status})"
            )));
        }
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::other(
                "server did not accept connections within 10 s",
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// When `args` (the arguments after the program name) start with [`ECHO_ARG`], run the
/// tokio echo server they ask for until killed and return its exit code; else `None`.
pub fn serve_if_asked(args: &[String]) -> Option<ExitCode> {
    if args.first().map(String::as_str) != Some(ECHO_ARG) {
        return None;
    }
    let (flavour, addr) = (
        args.get(1).map_or("", String::as_str),
        args.get(2).map_or("", String::as_str),
    );
    let tls = match (args.get(3), args.get(4)) {
        (Some(cert), Some(key)) => Some((cert.as_str(), key.as_str())),
        _ => None,
    };
    Some(match tokio_echo(flavour, addr, tls) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio echo: {e}");
            ExitCode::FAILURE
        }
    })
}

/// Run a tokio echo server (`current` or `multi` runtime, `current-tls` with tokio-rustls
/// and the PEM files `tls`) on `addr` until killed: read up to 64 KiB, write it all back,
/// the same semantics as our echo.
pub fn tokio_echo(flavour: &str, addr: &str, tls: Option<(&str, &str)>) -> io::Result<()> {
    let acceptor = match tls {
        Some((cert, key)) => Some(tokio_rustls::TlsAcceptor::from(
            tcp_reactor::tls_config::server_from_pem(cert.as_ref(), key.as_ref(), &[])?,
        )),
        None => None,
    };
    let runtime = match flavour {
        "current" | "current-tls" => tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?,
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_io()
            .build()?,
    };
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                // Out of descriptors or a reset before accept: keep serving the others.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            match &acceptor {
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            echo_one(stream).await;
                        }
                    });
                }
                None => {
                    tokio::spawn(echo_one(stream));
                }
            }
        }
    })
}

/// Echo one tokio connection (plain or TLS) until it closes.
async fn echo_one<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                // A TLS stream may keep records until flushed; a TCP stream's flush is free.
                if stream.write_all(&buf[..n]).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}
