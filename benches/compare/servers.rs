//! The servers under comparison, each started in its own process pinned to CPU 0: our
//! reactor and thread-per-client models (the `tcp-reactor` binary, started the way the
//! tests start it) and two tokio echo servers (this bench binary re-executed with a
//! special first argument).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
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
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 4] = [
        Kind::Reactor,
        Kind::Threads,
        Kind::TokioCurrent,
        Kind::TokioMulti,
    ];

    /// Name in tables and files.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Reactor => "reactor",
            Kind::Threads => "threads",
            Kind::TokioCurrent => "tokio-current",
            Kind::TokioMulti => "tokio-multi",
        }
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
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Process::Tokio(child) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
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
        Kind::Reactor => Model::Reactor,
        Kind::Threads => Model::Threads,
        Kind::TokioCurrent | Kind::TokioMulti => {
            let addr = free_port()?;
            let flavour = if kind == Kind::TokioCurrent {
                "current"
            } else {
                "multi"
            };
            let child = Command::new(std::env::current_exe()?)
                .args([ECHO_ARG, flavour, &addr.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            return Ok(Server {
                process: Process::Tokio(child),
                addr,
            });
        }
    };
    ServeCommand::default()
        .args(["--protocol", "echo", "--model", model_arg(model)])
        // Room for the 10,000 idle connections (the default maximum is exactly 10,000).
        .args(["--max-connections", "15000"])
        // Per-connection log lines would cost our servers time the tokio ones do not spend.
        .log("warn")
        .spawn()
        .map(|process| Server {
            addr: process.addr,
            process: Process::Ours(process),
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
    Some(match tokio_echo(flavour, addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio echo: {e}");
            ExitCode::FAILURE
        }
    })
}

/// Run a tokio echo server (`current` or `multi` runtime) on `addr` until killed:
/// read up to 64 KiB, write it all back, the same semantics as our echo.
pub fn tokio_echo(flavour: &str, addr: &str) -> io::Result<()> {
    let runtime = match flavour {
        "current" => tokio::runtime::Builder::new_current_thread()
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
            tokio::spawn(echo_one(stream));
        }
    })
}

/// Echo one tokio connection until it closes.
async fn echo_one(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
