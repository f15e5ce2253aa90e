//! The bench's view of `/proc`: the fixtures' reader (shared with the tests), CPU time in
//! seconds, a sampler of a server's threads, and pinning processes to CPUs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

pub use fixtures::procfs::{load_average, status};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

/// CPU time used so far by the process (user + system, all threads), in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    fixtures::procfs::cpu_time(pid).map(|time| time.as_secs_f64())
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
