//! Running the schedule: one fresh server process per run, the load generator in this
//! process, the noise watch around every run, re-runs of noisy runs within a budget, and
//! the idle-memory measurement once per round.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use tcp_reactor::load::{self, LoadArgs};

use crate::noise::{Noise, show_top};
use crate::plan::{Cell, Settings, schedule};
use crate::procfs;
use crate::servers::{self, Kind};

/// One run: one server under one cell in one round.
#[derive(Debug, Clone)]
pub struct Run {
    /// Which server.
    pub server: &'static str,
    /// The load pattern.
    pub cell: Cell,
    /// Round, from 0.
    pub round: usize,
    /// 0 for the first try, 1 for the first re-run, ...
    pub attempt: usize,
    /// True for the attempt of its round that the figures use.
    pub kept: bool,
    /// What the load generator measured.
    pub load: load::Report,
    /// Server peak RSS (VmHWM), KiB.
    pub rss_peak_kib: u64,
    /// Most server threads seen during the run.
    pub threads: u64,
    /// Server CPU time during the run, seconds.
    pub cpu_secs: f64,
    /// The rest of the machine during the run.
    pub noise: Noise,
    /// The load generator's CPU use while messages flowed (connect ramp excluded), in
    /// cores: near 1.0 it saturated its core.
    pub load_busy: f64,
    /// True when the noise passed the limit.
    pub noisy: bool,
    /// The other processes that used the most CPU during the run (`rustc 61%, cc1 20%`).
    pub others_top: String,
}

impl Run {
    /// Server CPU time per echoed message, in microseconds.
    pub fn cpu_us_per_msg(&self) -> f64 {
        if self.load.messages == 0 {
            0.0
        } else {
            self.cpu_secs * 1e6 / self.load.messages as f64
        }
    }
}

/// Idle memory of one server model in one round.
#[derive(Debug, Clone)]
pub struct Idle {
    /// Which server.
    pub server: &'static str,
    /// Round, from 0.
    pub round: usize,
    /// Connections held open.
    pub held: usize,
    /// Connections that failed.
    pub failed: usize,
    /// RSS before connecting, KiB.
    pub before_kib: u64,
    /// RSS with every connection idle, KiB.
    pub after_kib: u64,
    /// Server threads with every connection open.
    pub threads: u64,
}

impl Idle {
    /// Bytes of server memory per idle connection.
    pub fn bytes_per_conn(&self) -> f64 {
        if self.held == 0 {
            0.0
        } else {
            self.after_kib.saturating_sub(self.before_kib) as f64 * 1024.0 / self.held as f64
        }
    }
}

/// Everything a bench run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Every attempt, kept or not, in the order run.
    pub runs: Vec<Run>,
    /// Idle memory, per server and round.
    pub idle: Vec<Idle>,
    /// Servers or measurements that could not be run, with the reason.
    pub skipped: Vec<String>,
    /// Re-runs made (against `Settings::rerun_budget`).
    pub reruns: usize,
    /// Wall time of the whole bench, seconds.
    pub elapsed_secs: f64,
}

/// Where the processes run.
#[derive(Debug, Clone, Copy)]
pub struct Pinning {
    /// `(server CPU, load CPU)` when pinning worked.
    pub cpus: Option<(usize, usize)>,
}

/// The servers of the idle-memory measurement (tokio-multi holds the same tasks as
/// tokio-current).
const IDLE_KINDS: [Kind; 3] = [Kind::Reactor, Kind::Threads, Kind::TokioCurrent];

/// Run every slot of the schedule, re-running noisy runs, and the idle measurement after
/// each round. `progress` sees every kept run as it finishes.
pub fn run_all(
    settings: &Settings,
    kinds: &[Kind],
    pin: Pinning,
    progress: &mut dyn FnMut(&Run),
) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome::default();
    // A server that failed a cell (it could not start, or the load could not run) is not
    // tried on that cell again; its other cells go on.
    let mut failed: Vec<(Kind, Cell)> = Vec::new();
    let slots = schedule(settings.cells.len(), kinds.len(), settings.rounds);
    for (i, slot) in slots.iter().enumerate() {
        let (kind, cell) = (kinds[slot.server], settings.cells[slot.cell]);
        if failed.contains(&(kind, cell)) {
            continue;
        }
        match run_slot(kind, cell, slot.round, settings, pin, &mut out) {
            Ok(run) => progress(&run),
            Err(e) => {
                eprintln!("compare: {} skipped: {e}", kind.name());
                out.skipped
                    .push(format!("{} ({}): {e}", kind.name(), cell.label()));
                failed.push((kind, cell));
            }
        }
        let round_done = slots.get(i + 1).is_none_or(|next| next.round != slot.round);
        if round_done {
            idle_round(slot.round, settings, pin, &mut out);
        }
    }
    out.elapsed_secs = started.elapsed().as_secs_f64();
    out
}

/// Run one slot, and again while it is noisy and retries and budget remain; every attempt
/// is recorded, the quietest one kept.
fn run_slot(
    kind: Kind,
    cell: Cell,
    round: usize,
    settings: &Settings,
    pin: Pinning,
    out: &mut Outcome,
) -> io::Result<Run> {
    let first = out.runs.len();
    for attempt in 0..=settings.retries {
        let run = run_once(kind, cell, round, attempt, settings, pin)?;
        let noisy = run.noisy;
        out.runs.push(run);
        if !noisy || attempt == settings.retries || out.reruns >= settings.rerun_budget {
            break;
        }
        out.reruns += 1;
        let last = &out.runs[out.runs.len() - 1];
        eprintln!(
            "compare: {} {} round {}: others took {:.0}% of the CPUs ({}), again",
            kind.name(),
            cell.label(),
            round + 1,
            last.noise.disturbance() * 100.0,
            last.others_top
        );
    }
    let attempts = &mut out.runs[first..];
    let quietest = attempts
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.noise.disturbance().total_cmp(&b.1.noise.disturbance()))
        .map_or(0, |(i, _)| i);
    attempts[quietest].kept = true;
    Ok(attempts[quietest].clone())
}

/// Start a fresh server, load it with `cell`, and collect its figures and the noise.
fn run_once(
    kind: Kind,
    cell: Cell,
    round: usize,
    attempt: usize,
    settings: &Settings,
    pin: Pinning,
) -> io::Result<Run> {
    let server = servers::start(kind, pin.cpus)?;
    let pid = server.pid();
    let sampler = procfs::Sampler::start(pid);
    let args = LoadArgs {
        addr: server.addr.into(),
        connections: cell.connections,
        size: cell.size,
        pipeline: cell.pipeline,
        duration: Some(settings.duration),
        // A connect storm of thousands overflows the listen queue; spread it a little.
        ramp: if cell.connections >= 1000 { 0.5 } else { 0.0 },
        // The load generator has one CPU: one thread.
        threads: Some(if pin.cpus.is_some() { 1 } else { 2 }),
        quiet: true,
        tls: kind.is_tls(),
        ca: server.ca(),
        ..LoadArgs::default()
    };
    let tasks_before = procfs::tasks();
    let before = procfs::snapshot(pid)?;
    let started = Instant::now();
    let result = load::run(&args);
    let after = procfs::snapshot(pid)?;
    let tasks_after = procfs::tasks();
    let samples = sampler.finish();
    let status = procfs::status(pid).unwrap_or_default();
    drop(server);
    // Let the kernel tear the old server's sockets down before the next run's watch starts.
    thread::sleep(Duration::from_millis(100));
    let noise = Noise::between(&before, &after);
    let report = result?;
    // Messages flowed from the end of the connect phase for `rate_secs`.
    let traffic = started + Duration::from_secs_f64(report.connect_secs);
    let load_busy = samples
        .load_busy(traffic, traffic + Duration::from_secs_f64(report.rate_secs))
        .unwrap_or(noise.load_busy);
    Ok(Run {
        server: kind.name(),
        cell,
        round,
        attempt,
        kept: false,
        load: report,
        rss_peak_kib: status.hwm_kib,
        threads: samples.threads,
        load_busy,
        cpu_secs: after.server_ticks.saturating_sub(before.server_ticks) as f64
            / procfs::clock_ticks(),
        noisy: noise.is_noisy(settings.noise_limit),
        noise,
        others_top: show_top(&tasks_before.top(
            &tasks_after,
            &[pid, std::process::id()],
            after.cpu.total().saturating_sub(before.cpu.total()),
            3,
        )),
    })
}

/// Measure idle memory of each server once, for `round`.
fn idle_round(round: usize, settings: &Settings, pin: Pinning, out: &mut Outcome) {
    for kind in IDLE_KINDS {
        match idle_memory(kind, round, settings, pin) {
            Ok(m) => out.idle.push(m),
            Err(e) => out
                .skipped
                .push(format!("{} idle, round {}: {e}", kind.name(), round + 1)),
        }
    }
}

/// Server RSS with `settings.idle` idle connections, held by this process.
fn idle_memory(kind: Kind, round: usize, settings: &Settings, pin: Pinning) -> io::Result<Idle> {
    let server = servers::start(kind, pin.cpus)?;
    let pid = server.pid();
    thread::sleep(Duration::from_millis(200));
    let before = procfs::status(pid).unwrap_or_default();
    let conns = load::idle::open(server.addr, settings.idle, Duration::from_secs(60))?;
    // Let the server finish its bookkeeping for the last connections.
    thread::sleep(Duration::from_millis(500));
    let after = procfs::status(pid).unwrap_or_default();
    let idle = Idle {
        server: kind.name(),
        round,
        held: conns.held(),
        failed: conns.failed(),
        before_kib: before.rss_kib,
        after_kib: after.rss_kib,
        threads: after.threads,
    };
    drop(conns);
    drop(server);
    Ok(idle)
}
