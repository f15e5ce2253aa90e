//! The side-by-side benchmark: the same echo load against our reactor, our
//! thread-per-client model, and tokio (current-thread and multi-thread), each server in its
//! own process pinned to CPU 0 while the load generator runs pinned to CPU 1.
//!
//! `cargo bench` runs the full matrix (about 15 minutes); `BENCH_QUICK=1 cargo bench` (or
//! `cargo bench -- --quick`) runs a tiny one in under a minute. Results go to the terminal
//! and to `target/bench-report/` (`results.csv`, `report.md`, SVG charts).

mod charts;
mod procfs;
mod report;
mod servers;

use std::io;
use std::thread;
use std::time::Duration;

use servers::Kind;
use tcp_reactor::load::{self, LoadArgs};

/// One load pattern of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    /// Client connections.
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// Messages in flight per connection.
    pub pipeline: usize,
}

/// What one server did under one cell.
#[derive(Debug, Clone)]
pub struct Row {
    /// Which server.
    pub server: &'static str,
    /// The reactor's write policy; "-" for the other servers.
    pub policy: String,
    /// The load pattern.
    pub cell: Cell,
    /// What the load generator measured.
    pub load: load::Report,
    /// Server peak RSS (VmHWM), KiB.
    pub rss_peak_kib: u64,
    /// Most server threads seen during the run.
    pub threads: u64,
    /// Server CPU time during the run, seconds.
    pub cpu_secs: f64,
    /// The load generator's own CPU time during the run, seconds: near the cell's length,
    /// the load generator (not the server) was the limit.
    pub load_cpu_secs: f64,
}

/// Idle memory of one server model.
#[derive(Debug, Clone)]
pub struct Idle {
    /// Which server.
    pub server: &'static str,
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

/// Quick or full.
#[derive(Debug, Clone)]
pub struct Mode {
    /// True for the tiny matrix.
    pub quick: bool,
    /// Seconds of traffic per cell.
    pub duration: f64,
    /// Idle connections for the memory measurement.
    pub idle: usize,
    /// `(server CPU, load CPU)` when pinning worked.
    pub pin: Option<(usize, usize)>,
    /// The machine's load average when the bench started (other work skews the figures).
    pub load_before: String,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(servers::ECHO_ARG) {
        let (flavour, addr) = (
            args.get(2).cloned().unwrap_or_default(),
            args.get(3).cloned().unwrap_or_default(),
        );
        if let Err(e) = servers::tokio_echo(&flavour, &addr) {
            eprintln!("tokio echo: {e}");
            std::process::exit(1);
        }
        return;
    }
    let quick =
        std::env::var("BENCH_QUICK").is_ok_and(|v| v != "0") || args.iter().any(|a| a == "--quick");
    if let Err(e) = bench(quick) {
        eprintln!("compare: {e}");
        std::process::exit(1);
    }
}

/// Run the matrix and the idle measurement, then write the report.
fn bench(quick: bool) -> io::Result<()> {
    // Room for the idle connections, held by this process.
    load::ensure_descriptors(10_000)?;
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let pin = (cores >= 2 && procfs::pin_self(1)).then_some((0, 1));
    let mode = Mode {
        quick,
        duration: if quick { 1.0 } else { 10.0 },
        idle: if quick { 2_000 } else { 10_000 },
        pin,
        load_before: procfs::load_average(),
    };
    eprintln!(
        "compare: {} matrix, {} s per cell, {}",
        if quick { "quick" } else { "full" },
        mode.duration,
        match pin {
            Some((s, l)) => format!("server pinned to CPU {s}, load generator to CPU {l}"),
            None => "not pinned (fewer than 2 CPUs or affinity refused)".to_string(),
        }
    );
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut kinds = Kind::ALL.to_vec();
    // Cell by cell, every server in turn: noise from anything else running on the machine
    // then hits all servers of a cell alike instead of one server's whole series.
    for cell in matrix(quick) {
        let mut failed = Vec::new();
        for &kind in &kinds {
            match run_cell(kind, cell, &mode) {
                Ok(row) => {
                    report::print_row(&row);
                    rows.push(row);
                }
                Err(e) => {
                    eprintln!("compare: {} skipped: {e}", kind.name());
                    skipped.push(format!("{}: {e}", kind.name()));
                    failed.push(kind);
                }
            }
        }
        kinds.retain(|k| !failed.contains(k));
    }
    let mut idle = Vec::new();
    for kind in [Kind::Reactor, Kind::Threads, Kind::TokioCurrent] {
        match idle_memory(kind, &mode) {
            Ok(m) => {
                report::print_idle(&m);
                idle.push(m);
            }
            Err(e) => skipped.push(format!("{} idle: {e}", kind.name())),
        }
    }
    let dir = report::write_all(&mode, &rows, &idle, &skipped, &procfs::load_average())?;
    eprintln!("compare: report written to {}", dir.display());
    Ok(())
}

/// The load patterns: unpipelined echo over growing connection counts and two sizes, plus
/// a pipelined row.
fn matrix(quick: bool) -> Vec<Cell> {
    let (conns, sizes): (&[usize], &[usize]) = if quick {
        (&[10, 1000], &[64])
    } else {
        (&[1, 10, 100, 1000, 5000], &[64, 4096])
    };
    let mut cells = Vec::new();
    for &size in sizes {
        for &connections in conns {
            cells.push(Cell {
                connections,
                size,
                pipeline: 1,
            });
        }
    }
    cells.push(Cell {
        connections: 100,
        size: 64,
        pipeline: 16,
    });
    cells
}

/// Start a fresh server, load it with `cell`, and collect its figures.
fn run_cell(kind: Kind, cell: Cell, mode: &Mode) -> io::Result<Row> {
    let server = servers::start(kind, mode.pin)?;
    let pid = server.pid();
    let cpu_before = procfs::cpu_secs(pid).unwrap_or(0.0);
    let sampler = procfs::Sampler::start(pid);
    let args = LoadArgs {
        addr: server.addr,
        connections: cell.connections,
        size: cell.size,
        pipeline: cell.pipeline,
        duration: Some(mode.duration),
        // A connect storm of thousands overflows the listen queue; spread it a little.
        ramp: if cell.connections >= 1000 { 0.5 } else { 0.0 },
        // The load generator has one CPU: one thread.
        threads: Some(if mode.pin.is_some() { 1 } else { 2 }),
        quiet: true,
        ..LoadArgs::default()
    };
    let me = std::process::id();
    let load_cpu_before = procfs::cpu_secs(me).unwrap_or(0.0);
    let result = load::run(&args);
    let load_cpu_secs = procfs::cpu_secs(me).unwrap_or(load_cpu_before) - load_cpu_before;
    let threads = sampler.finish();
    let cpu_secs = procfs::cpu_secs(pid).unwrap_or(cpu_before) - cpu_before;
    let status = procfs::status(pid).unwrap_or_default();
    drop(server);
    Ok(Row {
        server: kind.name(),
        policy: kind.policy(),
        cell,
        load: result?,
        rss_peak_kib: status.hwm_kib,
        threads,
        cpu_secs,
        load_cpu_secs,
    })
}

/// Server RSS with `mode.idle` idle connections, held by this process.
fn idle_memory(kind: Kind, mode: &Mode) -> io::Result<Idle> {
    let server = servers::start(kind, mode.pin)?;
    let pid = server.pid();
    thread::sleep(Duration::from_millis(300));
    let before = procfs::status(pid).unwrap_or_default();
    let conns = load::idle::open(server.addr, mode.idle, Duration::from_secs(60))?;
    // Let the server finish its bookkeeping for the last connections.
    thread::sleep(Duration::from_millis(1000));
    let after = procfs::status(pid).unwrap_or_default();
    let idle = Idle {
        server: kind.name(),
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
