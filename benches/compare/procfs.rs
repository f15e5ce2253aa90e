//! Reading `/proc`: a server's memory and threads, the snapshots of the noise watch, the
//! machine's description; and pinning processes to CPUs.

use std::fs;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

use crate::noise::{LoadAvg, Snapshot, Tasks, cpu_count};

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

/// Read the machine's CPU times, the server's and this process's (the load generator's)
/// CPU ticks and the load averages, as close together as possible.
pub fn snapshot(server_pid: u32) -> io::Result<Snapshot> {
    let stat = fs::read_to_string("/proc/stat")?;
    let server = fs::read_to_string(format!("/proc/{server_pid}/stat"))?;
    let load = fs::read_to_string("/proc/self/stat")?;
    let loadavg = fs::read_to_string("/proc/loadavg")?;
    Snapshot::parse(&stat, &server, &load, &loadavg)
        .ok_or_else(|| io::Error::other("unexpected /proc/stat, /proc/PID/stat or /proc/loadavg"))
}

/// Every process's CPU ticks now (threads are counted in their process).
pub fn tasks() -> Tasks {
    let mut tasks = Tasks::default();
    let Ok(dir) = fs::read_dir("/proc") else {
        return tasks;
    };
    for entry in dir.flatten() {
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        // A process may exit between the listing and the read: skip it.
        if let Some(stat) = is_pid
            .then(|| fs::read_to_string(entry.path().join("stat")).ok())
            .flatten()
        {
            tasks.push(&stat);
        }
    }
    tasks
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 on Linux.
pub fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// The machine: CPU model, CPU count and kernel release, for the report.
pub fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_string();
    // Not `available_parallelism`: this process may be pinned to one CPU already.
    let cpus = cpu_count(&fs::read_to_string("/proc/stat").unwrap_or_default());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs ({model}), Linux {}", kernel.trim())
}

/// `/proc/loadavg` as it reads now.
pub fn load_average() -> Option<LoadAvg> {
    LoadAvg::parse(&fs::read_to_string("/proc/loadavg").ok()?)
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
