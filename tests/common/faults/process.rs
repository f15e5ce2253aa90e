//! The `tcp-reactor serve` binary as a subprocess: start it, read its address, watch its
//! memory, CPU time and descriptors through `/proc`, stop it with SIGTERM and parse the
//! stats it prints.
//!
//! A subprocess has its own descriptor limit and its own memory figures, so tests can hold
//! thousands of client sockets, or starve the server of descriptors, without touching
//! each other.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::wait_until;

/// Path of the server binary Cargo built for these tests.
pub const SERVER_BIN: &str = env!("CARGO_BIN_EXE_tcp-reactor");

/// A running `tcp-reactor serve` child process. Killed on drop if still running.
#[derive(Debug)]
pub struct ServerProcess {
    /// The child.
    child: Child,
    /// The address it printed.
    pub addr: SocketAddr,
    /// The rest of its stdout (the stats, after it stops).
    stdout: BufReader<ChildStdout>,
    /// Its log lines, collected by a thread so that a chatty log cannot fill the pipe and
    /// block the server.
    stderr: Arc<Mutex<Vec<String>>>,
    /// That thread.
    stderr_thread: Option<JoinHandle<()>>,
}

/// Stats printed by a stopped server, by name (`accepted`, `refused`, `closed`, `eof`, ...).
pub type PrintedStats = HashMap<String, u64>;

/// Memory figures of a process, in KiB, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Resident set now.
    pub rss_kib: u64,
    /// Highest resident set so far.
    pub hwm_kib: u64,
}

impl ServerProcess {
    /// Start `tcp-reactor serve --addr 127.0.0.1:0 <args>`; with `nofile`, the child's
    /// descriptor limit (soft and hard) is lowered to it before it starts.
    #[track_caller]
    pub fn spawn(args: &[&str], nofile: Option<u64>) -> ServerProcess {
        ServerProcess::spawn_on("127.0.0.1:0", args, nofile)
    }

    /// Like [`spawn`](ServerProcess::spawn), listening on `addr`.
    #[track_caller]
    pub fn spawn_on(addr: &str, args: &[&str], nofile: Option<u64>) -> ServerProcess {
        let mut command = Command::new(SERVER_BIN);
        command
            .arg("serve")
            .args(["--addr", addr])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(limit) = nofile {
            // SAFETY: the closure runs in the child between fork and exec; it only calls
            // setrlimit, which is async-signal-safe, and touches no memory of the parent.
            unsafe {
                command.pre_exec(move || {
                    let rlim = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command.spawn().expect("start the tcp-reactor binary");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_thread = child.stderr.take().map(|pipe| {
            let lines = Arc::clone(&stderr);
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            })
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .expect("read the server's first line");
        let addr = parse_listening(&first)
            .unwrap_or_else(|| panic!("unexpected first line from the server: {first:?}"));
        ServerProcess {
            child,
            addr,
            stdout,
            stderr,
            stderr_thread,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now and at its highest.
    #[track_caller]
    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/PID/status"))
        };
        Memory {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
        }
    }

    /// CPU time used so far (user + system).
    #[track_caller]
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read /proc/PID/stat");
        // The command name may hold spaces; fields are counted after its closing paren.
        let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After ")": state is field 3 of the man page, utime 14 and stime 15.
        let ticks = |index: usize| -> u64 {
            fields
                .get(index - 3)
                .and_then(|n| n.parse().ok())
                .expect("utime/stime in /proc/PID/stat")
        };
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let total = ticks(14) + ticks(15);
        Duration::from_millis(total * 1000 / per_second)
    }

    /// The share of one core the server used over the next `span`.
    pub fn cpu_share_over(&self, span: Duration) -> f64 {
        let (cpu0, t0) = (self.cpu_time(), Instant::now());
        thread::sleep(span);
        let (cpu1, t1) = (self.cpu_time(), Instant::now());
        (cpu1 - cpu0).as_secs_f64() / (t1 - t0).as_secs_f64()
    }

    /// Descriptors the server holds open.
    #[track_caller]
    pub fn open_fds(&self) -> usize {
        self.fd_targets().len()
    }

    /// What each open descriptor of the server refers to (`socket:[..]`, `pipe:[..]`, ...).
    #[track_caller]
    pub fn fd_targets(&self) -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("list /proc/PID/fd")
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .map(|target| target.to_string_lossy().into_owned())
            .collect()
    }

    /// Sockets the server holds open (listener included).
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

    /// SIGTERM the server, wait (bounded) for it to exit cleanly, and parse its stats.
    #[track_caller]
    pub fn stop(mut self) -> PrintedStats {
        // SAFETY: kill has no memory preconditions; the pid is our own live child.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        let mut status = None;
        let exited = wait_until(Duration::from_secs(15), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        assert!(exited, "the server did not stop within 15 s of SIGTERM");
        let status = status.expect("exit status");
        let mut out = String::new();
        let _ = self.stdout.read_to_string(&mut out);
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
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The address in `tcp-reactor listening on <addr> (...)`.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("tcp-reactor listening on ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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
    let mut rlim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read only the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim) != 0 {
            return 0;
        }
        rlim.rlim_cur = rlim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &rlim) != 0 {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim);
        }
    }
    rlim.rlim_cur
}
