//! The `tcp-reactor serve` binary as a subprocess: start it, read the address it bound,
//! watch it through [`procfs`](crate::procfs), stop it with SIGTERM and parse the stats it
//! prints.
//!
//! A subprocess has its own descriptor limit and its own memory figures, so tests can hold
//! thousands of client sockets, or starve the server of descriptors, without touching
//! each other; the bench measures each server the same way.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rlimit::Resource;
use tcp_reactor::Model;

use crate::{PATIENCE, procfs, wait_until};

/// The `--model` value of `model`.
pub fn model_arg(model: Model) -> &'static str {
    match model {
        Model::Reactor => "reactor",
        Model::Threads => "threads",
        other => panic!("no command-line name for {other:?}"),
    }
}

/// The `tcp-reactor` binary Cargo built beside the running test or bench.
///
/// Test and bench executables live in `target/<profile>/deps/`, the binary in
/// `target/<profile>/`; Cargo builds it whenever it builds an integration test or a bench.
fn server_binary() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| io::Error::other(format!("no target directory above {exe:?}")))?;
    let binary = profile_dir.join("tcp-reactor");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{binary:?} is missing: build with the `cli` feature"),
        ))
    }
}

/// How to start `tcp-reactor serve`: `--addr 127.0.0.1:0`, `RUST_LOG=info` and the
/// inherited descriptor limit unless told otherwise.
#[derive(Debug, Clone)]
pub struct ServeCommand {
    /// `--addr`.
    addr: String,
    /// Further arguments after `serve`.
    args: Vec<String>,
    /// `RUST_LOG` of the child: the tests count log lines; the bench keeps it quiet, since
    /// per-connection lines would cost our server time the others do not spend.
    log: String,
    /// The child's descriptor limit (soft and hard), when it must be lower than ours.
    nofile: Option<u64>,
}

impl Default for ServeCommand {
    fn default() -> Self {
        ServeCommand {
            addr: "127.0.0.1:0".to_string(),
            args: Vec::new(),
            log: "info".to_string(),
            nofile: None,
        }
    }
}

impl ServeCommand {
    /// Listen on `addr` instead of a free loopback port.
    pub fn addr(mut self, addr: &str) -> Self {
        self.addr = addr.to_string();
        self
    }

    /// Add command-line arguments (`--protocol echo`, `--model threads`, ...).
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_string()));
        self
    }

    /// Run with `RUST_LOG=filter`.
    pub fn log(mut self, filter: &str) -> Self {
        self.log = filter.to_string();
        self
    }

    /// Lower the child's descriptor limit (soft and hard) to `limit`.
    pub fn nofile(mut self, limit: u64) -> Self {
        self.nofile = Some(limit);
        self
    }

    /// Start the server and wait (at most [`PATIENCE`]) for the address it announces. A
    /// server that exits first is an error holding its exit status and its stderr.
    pub fn spawn(self) -> io::Result<ServerProcess> {
        let child = Command::new(server_binary()?)
            .arg("serve")
            .args(["--addr", &self.addr])
            .args(&self.args)
            .env("RUST_LOG", &self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut process = ServerProcess {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout: None,
            stderr: Arc::new(Mutex::new(Vec::new())),
            stderr_thread: None,
            child,
        };
        if let Some(limit) = self.nofile {
            // Lowered from outside, before the server is told about any client: it has
            // opened only its listener and poll descriptors by then.
            rlimit::prlimit(
                process.pid() as i32,
                Resource::NOFILE,
                Some((limit, limit)),
                None,
            )?;
        }
        process.stderr_thread = process.child.stderr.take().map(|pipe| {
            let lines = Arc::clone(&process.stderr);
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            })
        });
        let stdout = process
            .child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let (first, stdout) = first_line(stdout)?;
        match parse_listening(&first) {
            Some(addr) => {
                process.addr = addr;
                process.stdout = Some(stdout);
                Ok(process)
            }
            None => Err(process.failed_to_start(&first)),
        }
    }
}

/// Read the first line of `stdout` on a thread, giving up after [`PATIENCE`].
fn first_line(stdout: ChildStdout) -> io::Result<(String, BufReader<ChildStdout>)> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let read = reader.read_line(&mut line).map(|_| (line, reader));
        let _ = tx.send(read);
    });
    rx.recv_timeout(PATIENCE).map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the server said nothing within {PATIENCE:?}"),
        )
    })?
}

/// The address in `tcp-reactor listening on <addr> (...)`.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("tcp-reactor listening on ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A running `tcp-reactor serve` child process. Killed on drop if still running.
#[derive(Debug)]
pub struct ServerProcess {
    /// The child.
    child: Child,
    /// The address it printed.
    pub addr: SocketAddr,
    /// The rest of its stdout (the stats, after it stops).
    stdout: Option<BufReader<ChildStdout>>,
    /// Its log lines, collected by a thread so that a chatty log cannot fill the pipe and
    /// block the server.
    stderr: Arc<Mutex<Vec<String>>>,
    /// That thread.
    stderr_thread: Option<JoinHandle<()>>,
}

/// Stats printed by a stopped server, by name (`accepted`, `refused`, `closed`, `eof`, ...).
pub type PrintedStats = HashMap<String, u64>;

impl ServerProcess {
    /// Start `tcp-reactor serve --addr 127.0.0.1:0 <args>`, with the child's descriptor
    /// limit lowered to `nofile` if given; fail the test if it does not start.
    #[track_caller]
    pub fn spawn(args: &[&str], nofile: Option<u64>) -> ServerProcess {
        let mut command = ServeCommand::default().args(args);
        if let Some(limit) = nofile {
            command = command.nofile(limit);
        }
        match command.spawn() {
            Ok(process) => process,
            Err(err) => panic!("cannot start tcp-reactor serve {args:?}: {err}"),
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its memory and threads now.
    #[track_caller]
    pub fn status(&self) -> procfs::Status {
        procfs::status(self.pid()).expect("read /proc/PID/status of the server")
    }

    /// The share of one core the server used over the next `span`.
    #[track_caller]
    pub fn cpu_share_over(&self, span: Duration) -> f64 {
        let cpu = || procfs::cpu_time(self.pid()).expect("read /proc/PID/stat of the server");
        let (cpu0, t0) = (cpu(), Instant::now());
        thread::sleep(span);
        let (cpu1, t1) = (cpu(), Instant::now());
        (cpu1 - cpu0).as_secs_f64() / (t1 - t0).as_secs_f64()
    }

    /// What each descriptor the server holds refers to (`socket:[..]`, `pipe:[..]`, ...).
    #[track_caller]
    fn fd_targets(&self) -> Vec<String> {
        procfs::fd_targets(self.pid()).expect("list /proc/PID/fd of the server")
    }

    /// Descriptors the server holds open.
    #[track_caller]
    pub fn open_fds(&self) -> usize {
        self.fd_targets().len()
    }

    /// Sockets the server holds open (listener included).
    #[track_caller]
    pub fn open_sockets(&self) -> usize {
        self.fd_targets()
            .iter()
            .filter(|t| t.starts_with("socket:"))
            .count()
    }

    /// Log lines so far that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> usize {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// Log lines so far that contain `needle`, in order.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|line| line.contains(needle))
            .cloned()
            .collect()
    }

    /// SIGTERM the server, wait (bounded) for it to exit cleanly, and parse its stats.
    #[track_caller]
    pub fn stop(mut self) -> PrintedStats {
        let pid = Pid::from_raw(self.pid() as i32);
        kill(pid, Signal::SIGTERM).expect("SIGTERM the server");
        let mut status = None;
        let exited = wait_until(Duration::from_secs(15), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        assert!(exited, "the server did not stop within 15 s of SIGTERM");
        let status = status.expect("exit status");
        let mut out = String::new();
        if let Some(stdout) = self.stdout.as_mut() {
            let _ = stdout.read_to_string(&mut out);
        }
        assert!(
            status.success(),
            "server exited with {status} (signal {:?}); stdout: {out}",
            status.signal()
        );
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
        parse_stats(&out)
    }

    /// The error for a server that printed `first` instead of its address: its exit status
    /// (waited for, bounded) and everything it logged.
    fn failed_to_start(mut self, first: &str) -> io::Error {
        let mut status = None;
        wait_until(PATIENCE, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n");
        let ended = status.map_or("is still running".to_string(), |s| {
            format!("exited with {s}")
        });
        io::Error::other(format!(
            "tcp-reactor serve {ended} instead of listening; stdout {first:?}; stderr:\n{stderr}"
        ))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parse `name   N` lines (names may hold spaces; reasons are indented) into a map.
pub fn parse_stats(out: &str) -> PrintedStats {
    out.lines()
        .filter_map(|line| {
            let (name, value) = line.trim().rsplit_once(' ')?;
            Some((name.trim().to_string(), value.parse().ok()?))
        })
        .collect()
}

/// A printed stat, 0 when absent (close reasons with no connections are not printed).
pub fn stat(stats: &PrintedStats, name: &str) -> u64 {
    stats.get(name).copied().unwrap_or(0)
}

/// Raise this process's soft descriptor limit to its hard limit; returns the new limit.
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}
