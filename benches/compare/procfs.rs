//! Reading `/proc`: a server's memory and threads (the fixtures' reader, shared with the
//! tests), the snapshots of the noise watch, the machine's description; and pinning
//! processes to CPUs.

use std::fs;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use fixtures::procfs::{clock_ticks, status};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

use crate::noise::{LoadAvg, Snapshot, Tasks, cpu_count, process_ticks};

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

/// What a [`Sampler`] saw.
#[derive(Debug, Default)]
pub struct Samples {
    /// Most server threads seen.
    pub threads: u64,
    /// This process's (the load generator's) CPU ticks, with when they were read.
    pub load_ticks: Vec<(Instant, u64)>,
}

impl Samples {
    /// The load generator's CPU use between `from` and `to`, in cores (1.0: one core
    /// busy throughout); `None` when the samples inside span less than 0.2 s.
    pub fn load_busy(&self, from: Instant, to: Instant) -> Option<f64> {
        let mut inside = self
            .load_ticks
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to);
        let first = inside.next()?;
        let last = inside.next_back()?;
        let secs = last.0.duration_since(first.0).as_secs_f64();
        (secs >= 0.2).then(|| last.1.saturating_sub(first.1) as f64 / clock_ticks() / secs)
    }
}

/// Samples a server's thread count and this process's CPU ticks every 20 ms while a load
/// runs.
#[derive(Debug)]
pub struct Sampler {
    /// Raised to stop sampling.
    stop: Arc<AtomicBool>,
    /// The sampling thread, which returns what it saw.
    handle: Option<JoinHandle<Samples>>,
}

impl Sampler {
    /// Start sampling the server `pid` and this process.
    pub fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut seen = Samples::default();
            while !flag.load(Ordering::Relaxed) {
                if let Some(s) = status(pid) {
                    seen.threads = seen.threads.max(s.threads);
                }
                let ticks = fs::read_to_string("/proc/self/stat")
                    .ok()
                    .and_then(|t| process_ticks(&t));
                if let Some(ticks) = ticks {
                    seen.load_ticks.push((Instant::now(), ticks));
                }
                thread::sleep(Duration::from_millis(20));
            }
            seen
        });
        Sampler {
            stop,
            handle: Some(handle),
        }
    }

    /// Stop and return what was seen.
    pub fn finish(mut self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}
