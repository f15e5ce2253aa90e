//! The noise watch: what the rest of the machine did while one run measured a server.
//!
//! Around each run the bench reads `/proc/stat` (all CPUs' time by kind), the server's and
//! the load generator's `/proc/PID/stat` and `/proc/loadavg`. CPU time that neither the
//! server nor the load generator used went to other processes (or, as steal, to other
//! virtual machines): when that share passes a stated limit, the run is noisy. This module
//! only parses and classifies text; reading the files is `procfs`'s job.

/// Time spent by all CPUs together, in clock ticks, by kind (the `cpu` line of
/// `/proc/stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// User mode (guest time included).
    pub user: u64,
    /// User mode at low priority.
    pub nice: u64,
    /// Kernel mode.
    pub system: u64,
    /// Idle.
    pub idle: u64,
    /// Idle while waiting for I/O.
    pub iowait: u64,
    /// Serving interrupts.
    pub irq: u64,
    /// Serving softirqs (loopback TCP runs much of its receive path here).
    pub softirq: u64,
    /// Wanted to run, but the hypervisor ran something else.
    pub steal: u64,
}

impl CpuTimes {
    /// Parse the aggregate `cpu ` line of `/proc/stat`.
    pub fn parse(proc_stat: &str) -> Option<CpuTimes> {
        let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        Some(CpuTimes {
            user: *v.first()?,
            nice: *v.get(1)?,
            system: *v.get(2)?,
            idle: *v.get(3)?,
            iowait: *v.get(4)?,
            irq: *v.get(5)?,
            softirq: *v.get(6)?,
            // Kernels before 2.6.11 have no steal column.
            steal: v.get(7).copied().unwrap_or(0),
        })
    }

    /// Every tick of every CPU.
    pub fn total(&self) -> u64 {
        self.busy() + self.idle + self.iowait + self.steal
    }

    /// Ticks some task or interrupt of this machine ran. Softirq counts: with tick-based
    /// accounting a softirq served on behalf of a process is charged to that process too.
    pub fn busy(&self) -> u64 {
        self.user + self.nice + self.system + self.irq + self.softirq
    }
}

/// CPUs listed in `/proc/stat` (`cpu0`, `cpu1`, ...).
pub fn cpu_count(proc_stat: &str) -> usize {
    proc_stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count()
}

/// User + system ticks of a process, all its threads (fields 14 and 15 of
/// `/proc/PID/stat`).
pub fn process_ticks(proc_pid_stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses; the fields after the
    // last ')' are fixed: state is field 3, so utime and stime are the 12th and 13th.
    let rest = &proc_pid_stat[proc_pid_stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `/proc/loadavg`: the run-queue averages and the tasks runnable at that moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadAvg {
    /// One-minute load average.
    pub one: f64,
    /// Five-minute load average.
    pub five: f64,
    /// Fifteen-minute load average.
    pub fifteen: f64,
    /// Tasks runnable when it was read (the reader itself included).
    pub running: u32,
}

impl LoadAvg {
    /// Parse `/proc/loadavg` (`0.48 0.81 0.42 4/110 15391`).
    pub fn parse(text: &str) -> Option<LoadAvg> {
        let mut f = text.split_whitespace();
        Some(LoadAvg {
            one: f.next()?.parse().ok()?,
            five: f.next()?.parse().ok()?,
            fifteen: f.next()?.parse().ok()?,
            running: f.next()?.split('/').next()?.parse().ok()?,
        })
    }
}

/// One look at the machine and the two measured processes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    /// All CPUs' time by kind.
    pub cpu: CpuTimes,
    /// CPUs of the machine.
    pub cpus: usize,
    /// The server's user + system ticks.
    pub server_ticks: u64,
    /// The load generator's user + system ticks.
    pub load_ticks: u64,
    /// The load averages.
    pub loadavg: LoadAvg,
}

impl Snapshot {
    /// Build a snapshot from the text of `/proc/stat`, the server's and the load
    /// generator's `/proc/PID/stat`, and `/proc/loadavg`.
    pub fn parse(stat: &str, server: &str, load: &str, loadavg: &str) -> Option<Snapshot> {
        Some(Snapshot {
            cpu: CpuTimes::parse(stat)?,
            cpus: cpu_count(stat).max(1),
            server_ticks: process_ticks(server)?,
            load_ticks: process_ticks(load)?,
            loadavg: LoadAvg::parse(loadavg)?,
        })
    }
}

/// What happened on the machine between two snapshots, as shares.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Noise {
    /// Share of all CPU time used by processes other than the server and the load
    /// generator (0.5 on two CPUs: one whole core).
    pub others: f64,
    /// Share of all CPU time stolen by the hypervisor.
    pub steal: f64,
    /// Server CPU time over wall time, in cores.
    pub server_busy: f64,
    /// Load generator CPU time over wall time, in cores (it runs pinned to one).
    pub load_busy: f64,
    /// One-minute load average before the run.
    pub load1_before: f64,
    /// One-minute load average after the run.
    pub load1_after: f64,
}

impl Noise {
    /// The noise between `before` and `after`; wall time is measured in the same ticks,
    /// as all CPUs' total over their count.
    pub fn between(before: &Snapshot, after: &Snapshot) -> Noise {
        let total = after.cpu.total().saturating_sub(before.cpu.total());
        if total == 0 {
            return Noise::default();
        }
        let busy = after.cpu.busy().saturating_sub(before.cpu.busy());
        let server = after.server_ticks.saturating_sub(before.server_ticks);
        let load = after.load_ticks.saturating_sub(before.load_ticks);
        let steal = after.cpu.steal.saturating_sub(before.cpu.steal);
        let wall = total as f64 / after.cpus.max(1) as f64;
        Noise {
            others: busy.saturating_sub(server + load) as f64 / total as f64,
            steal: steal as f64 / total as f64,
            server_busy: server as f64 / wall,
            load_busy: load as f64 / wall,
            load1_before: before.loadavg.one,
            load1_after: after.loadavg.one,
        }
    }

    /// CPU time the measured pair did not get: other processes' share plus steal.
    pub fn disturbance(&self) -> f64 {
        self.others + self.steal
    }

    /// True when other processes and steal took more than `limit` of all CPU time.
    pub fn is_noisy(&self, limit: f64) -> bool {
        self.disturbance() > limit
    }
}

/// The CPU ticks of every process alive at one moment, to name who the others were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tasks(pub Vec<(u32, String, u64)>);

impl Tasks {
    /// Add a process from the text of its `/proc/PID/stat`; a text that does not parse is
    /// skipped (the process may have exited while it was read).
    pub fn push(&mut self, proc_pid_stat: &str) {
        let (Some(open), Some(close)) = (proc_pid_stat.find('('), proc_pid_stat.rfind(')')) else {
            return;
        };
        let pid = proc_pid_stat[..open].trim().parse().ok();
        let name = proc_pid_stat.get(open + 1..close).map(str::to_string);
        if let (Some(pid), Some(name), Some(ticks)) = (pid, name, process_ticks(proc_pid_stat)) {
            self.0.push((pid, name, ticks));
        }
    }

    /// The `n` command names that used the most CPU between `self` and `later`, leaving out
    /// the processes `skip`, each as a share of `total` ticks, largest first. Processes
    /// alive at both moments only: one that started and ended in between is not named.
    pub fn top(&self, later: &Tasks, skip: &[u32], total: u64, n: usize) -> Vec<(String, f64)> {
        let mut by_name: Vec<(String, u64)> = Vec::new();
        for (pid, name, ticks) in &later.0 {
            if skip.contains(pid) {
                continue;
            }
            let Some((_, _, earlier)) = self.0.iter().find(|(p, nm, _)| p == pid && nm == name)
            else {
                continue;
            };
            let used = ticks.saturating_sub(*earlier);
            match by_name.iter_mut().find(|(nm, _)| nm == name) {
                Some((_, sum)) => *sum += used,
                None => by_name.push((name.clone(), used)),
            }
        }
        by_name.retain(|(_, used)| *used > 0);
        by_name.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        by_name
            .into_iter()
            .take(n)
            .map(|(name, used)| (name, used as f64 / total.max(1) as f64))
            .collect()
    }
}

/// `rustc 61%, cc1 20%`, or `-` when nobody else ran.
pub fn show_top(top: &[(String, f64)]) -> String {
    if top.is_empty() {
        return "-".to_string();
    }
    top.iter()
        .map(|(name, share)| format!("{name} {:.0}%", share * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}
