//! A process's memory, threads, CPU time and descriptors, read from `/proc` (Linux).
//!
//! Every function returns `None` when the process is gone or the file is not as expected,
//! so a caller that samples a process which may have exited decides what that means.

use std::fs;
use std::time::Duration;

use nix::unistd::{SysconfVar, sysconf};

/// One look at `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// Resident memory now, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident memory since the process started, KiB (`VmHWM`).
    pub hwm_kib: u64,
    /// Threads now.
    pub threads: u64,
}

/// Read `/proc/PID/status`.
pub fn status(pid: u32) -> Option<Status> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    Some(Status {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        threads: field("Threads:")?,
    })
}

/// CPU time used so far by the process (user + system, all threads).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the man page, so utime (14) and stime (15) are at 11
    // and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / clock_ticks(),
    ))
}

/// Clock ticks per second (`getconf CLK_TCK`), the unit of `/proc/PID/stat` times.
pub fn clock_ticks() -> f64 {
    sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&ticks| ticks > 0)
        // 100 on every Linux configuration in use.
        .map_or(100.0, |ticks| ticks as f64)
}

/// What each open descriptor of the process refers to (`socket:[..]`, `pipe:[..]`, ...).
pub fn fd_targets(pid: u32) -> Option<Vec<String>> {
    let entries = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        entries
            .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
            .map(|target| target.to_string_lossy().into_owned())
            .collect(),
    )
}
