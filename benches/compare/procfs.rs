//! Reading a server process's memory, threads and CPU time from `/proc`, and pinning
//! processes to CPUs.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

/// One look at `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Status {
    /// Resident memory now, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident memory since the process started, KiB (`VmHWM`).
    pub hwm_kib: u64,
    /// Threads now.
    pub threads: u64,
}

/// Read `/proc/PID/status`; `None` if the process is gone.
pub fn status(pid: u32) -> Option<Status> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut s = Status::default();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "VmRSS:" => s.rss_kib = value,
            "VmHWM:" => s.hwm_kib = value,
            "Threads:" => s.threads = value,
            _ => {}
        }
    }
    Some(s)
}

/// CPU time used so far by the process (user + system, all threads), in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 on Linux.
fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// The 1, 5 and 15 minute load averages of the machine, as `/proc/loadavg` gives them.
pub fn load_average() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Pin the calling thread (and so every process or thread it starts later) to `cpu`.
/// Returns false when that is impossible (fewer CPUs, or not allowed).
pub fn pin_self(cpu: usize) -> bool {
    let mut set = CpuSet::new();
    set.set(cpu).is_ok() && sched_setaffinity(Pid::from_raw(0), &set).is_ok()
}

/// Samples a process's thread count and RSS while a load runs, keeping the maxima.
#[derive(Debug)]
pub struct Sampler {
    /// Raised to stop sampling.
    stop: Arc<AtomicBool>,
    /// Most threads seen.
    threads: Arc<AtomicU64>,
    /// The sampling thread.
    handle: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Start sampling `pid` every 20 ms.
    pub fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = Arc::new(AtomicU64::new(0));
        let (flag, max) = (Arc::clone(&stop), Arc::clone(&threads));
        let handle = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if let Some(s) = status(pid) {
                    max.fetch_max(s.threads, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler {
            stop,
            threads,
            handle: Some(handle),
        }
    }

    /// Stop and return the most threads seen.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        self.threads.load(Ordering::Relaxed)
    }
}
