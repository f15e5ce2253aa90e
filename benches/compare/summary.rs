//! From runs to figures: the kept runs of each server and cell folded into medians and
//! ranges, with the cell's noise and load-generator flags.

use crate::measure::{Idle, Run};
use crate::plan::{Cell, Settings};
use crate::stats::{Spread, paired_ratios};

/// One server under one cell, over its rounds.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Which server.
    pub server: &'static str,
    /// The load pattern.
    pub cell: Cell,
    /// Rounds kept.
    pub rounds: usize,
    /// Kept rounds that were still noisy.
    pub noisy_rounds: usize,
    /// Attempts made, re-runs included.
    pub attempts: usize,
    /// Messages per second.
    pub msgs: Spread,
    /// Echoed MiB per second.
    pub mib: Spread,
    /// Median latency, microseconds.
    pub p50: Spread,
    /// 99th percentile latency, microseconds.
    pub p99: Spread,
    /// Server CPU per message, microseconds.
    pub cpu_us: Spread,
    /// Server peak RSS, MiB.
    pub rss_mib: Spread,
    /// Most server threads seen in any round.
    pub threads: u64,
    /// Load generator CPU while messages flowed, in cores.
    pub load_busy: Spread,
    /// Server CPU over wall time, in cores.
    pub server_busy: Spread,
    /// Share of all CPU time taken by other processes plus steal.
    pub disturbance: Spread,
    /// Largest steal share of a kept round.
    pub steal_max: f64,
    /// Lowest and highest one-minute load average seen around the kept rounds.
    pub load1: (f64, f64),
    /// Failed connections and lost messages over all kept rounds.
    pub errors: u64,
    /// True when the load generator saturated its core (median round).
    pub load_saturated: bool,
}

impl Summary {
    /// `noisy`, `load-bound`, `errors`, comma-separated, or empty.
    pub fn flags(&self) -> String {
        let mut flags = Vec::new();
        if self.noisy_rounds > 0 {
            flags.push(format!("noisy {}/{}", self.noisy_rounds, self.rounds));
        }
        if self.load_saturated {
            flags.push("load-bound".to_string());
        }
        if self.errors > 0 {
            flags.push("errors".to_string());
        }
        flags.join(", ")
    }
}

/// The kept runs of `server` under `cell`, in round order.
pub fn kept<'a>(runs: &'a [Run], server: &str, cell: Cell) -> Vec<&'a Run> {
    let mut kept: Vec<&Run> = runs
        .iter()
        .filter(|r| r.kept && r.server == server && r.cell == cell)
        .collect();
    kept.sort_by_key(|r| r.round);
    kept
}

/// Fold the runs into one summary per server and cell, cells in matrix order, servers in
/// the order they ran.
pub fn summarise(runs: &[Run], settings: &Settings) -> Vec<Summary> {
    let mut servers: Vec<&'static str> = Vec::new();
    for r in runs {
        if !servers.contains(&r.server) {
            servers.push(r.server);
        }
    }
    let mut out = Vec::new();
    for &cell in &settings.cells {
        for &server in &servers {
            let kept = kept(runs, server, cell);
            if let Some(s) = summary(server, cell, &kept, runs, settings) {
                out.push(s);
            }
        }
    }
    out
}

/// The summary of one server and cell; `None` when no round was kept.
fn summary(
    server: &'static str,
    cell: Cell,
    kept: &[&Run],
    runs: &[Run],
    settings: &Settings,
) -> Option<Summary> {
    let of = |f: &dyn Fn(&Run) -> f64| Spread::of(&kept.iter().map(|r| f(r)).collect::<Vec<_>>());
    let load_busy = of(&|r| r.load_busy)?;
    let load1 = kept.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), r| {
        (
            lo.min(r.noise.load1_before.min(r.noise.load1_after)),
            hi.max(r.noise.load1_before.max(r.noise.load1_after)),
        )
    });
    Some(Summary {
        server,
        cell,
        rounds: kept.len(),
        noisy_rounds: kept.iter().filter(|r| r.noisy).count(),
        attempts: runs
            .iter()
            .filter(|r| r.server == server && r.cell == cell)
            .count(),
        msgs: of(&|r| r.load.messages_per_sec)?,
        mib: of(&|r| r.load.mib_per_sec)?,
        p50: of(&|r| r.load.latency_us.p50)?,
        p99: of(&|r| r.load.latency_us.p99)?,
        cpu_us: of(&|r| r.cpu_us_per_msg())?,
        rss_mib: of(&|r| r.rss_peak_kib as f64 / 1024.0)?,
        threads: kept.iter().map(|r| r.threads).max().unwrap_or(0),
        server_busy: of(&|r| r.noise.server_busy)?,
        disturbance: of(&|r| r.noise.disturbance())?,
        steal_max: kept.iter().map(|r| r.noise.steal).fold(0.0, f64::max),
        load1,
        errors: kept.iter().map(|r| r.load.error_count()).sum(),
        load_saturated: load_busy.median > settings.load_limit,
        load_busy,
    })
}

/// Round-by-round ratio `f(a) / f(b)` of two servers under one cell, over the rounds both
/// kept.
pub fn ratio(runs: &[Run], a: &str, b: &str, cell: Cell, f: fn(&Run) -> f64) -> Option<Spread> {
    let (ka, kb) = (kept(runs, a, cell), kept(runs, b, cell));
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for ra in &ka {
        if let Some(rb) = kb.iter().find(|rb| rb.round == ra.round) {
            xs.push(f(ra));
            ys.push(f(rb));
        }
    }
    Spread::of(&paired_ratios(&xs, &ys))
}

/// Idle memory of one server over its rounds.
#[derive(Debug, Clone)]
pub struct IdleSummary {
    /// Which server.
    pub server: &'static str,
    /// Rounds measured.
    pub rounds: usize,
    /// Fewest connections held in a round.
    pub held: usize,
    /// Most connections failed in a round.
    pub failed: usize,
    /// Bytes of server memory per idle connection.
    pub bytes_per_conn: Spread,
    /// RSS with every connection open, KiB.
    pub after_kib: Spread,
    /// Most server threads with every connection open.
    pub threads: u64,
}

/// Fold the idle measurements per server, in the order measured.
pub fn summarise_idle(idle: &[Idle]) -> Vec<IdleSummary> {
    let mut servers: Vec<&'static str> = Vec::new();
    for i in idle {
        if !servers.contains(&i.server) {
            servers.push(i.server);
        }
    }
    servers
        .into_iter()
        .filter_map(|server| {
            let of: Vec<&Idle> = idle.iter().filter(|i| i.server == server).collect();
            Some(IdleSummary {
                server,
                rounds: of.len(),
                held: of.iter().map(|i| i.held).min()?,
                failed: of.iter().map(|i| i.failed).max()?,
                bytes_per_conn: Spread::of(
                    &of.iter().map(|i| i.bytes_per_conn()).collect::<Vec<_>>(),
                )?,
                after_kib: Spread::of(&of.iter().map(|i| i.after_kib as f64).collect::<Vec<_>>())?,
                threads: of.iter().map(|i| i.threads).max()?,
            })
        })
        .collect()
}
