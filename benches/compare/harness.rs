//! One bench run from start to report: pin, note the conditions, run the schedule, write
//! the files. Shared by `cargo bench` and the smoke test.

use std::io;
use std::process::Command;
use std::thread;

use tcp_reactor::load;

use crate::measure::{self, Pinning};
use crate::plan::Settings;
use crate::procfs;
use crate::report::{self, Conditions};
use crate::servers::{self, Kind};

/// Run `settings` against every server and write the report; returns the chart files.
pub fn run(settings: &Settings) -> io::Result<Vec<String>> {
    // Room for the idle connections, held by this process.
    load::ensure_descriptors(settings.idle.max(1000))?;
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let pin = Pinning {
        cpus: (cores >= 2 && procfs::pin_self(1)).then_some((0, 1)),
    };
    let pinning = match pin.cpus {
        Some((s, l)) => format!(
            "each server on CPU {s}, the load generator (one thread, in the bench process) on CPU {l} (`sched_setaffinity`)"
        ),
        None => "not pinned (fewer than 2 CPUs or affinity refused): server and load generator share the CPUs".to_string(),
    };
    let kinds = Kind::ALL;
    let mut conditions = Conditions {
        date: utc_now(),
        machine: procfs::machine(),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        pinning,
        policy: servers::reactor_policy(),
        servers: kinds.iter().map(|k| k.name()).collect(),
        load_start: procfs::load_average(),
        load_end: None,
    };
    eprintln!(
        "compare: {} profile, {} cells × {} servers × {} round{}, {} s per run; {}",
        settings.profile,
        settings.cells.len(),
        kinds.len(),
        settings.rounds,
        if settings.rounds == 1 { "" } else { "s" },
        settings.duration,
        conditions.pinning
    );
    let outcome = measure::run_all(settings, &kinds, pin, &mut report::print_run);
    conditions.load_end = procfs::load_average();
    let charts = report::write_all(settings, &conditions, &outcome)?;
    let missing = report::missing_files(&settings.out, &charts);
    if !missing.is_empty() {
        return Err(io::Error::other(format!(
            "report incomplete: {missing:?} missing or empty"
        )));
    }
    let kept = outcome.runs.iter().filter(|r| r.kept);
    let noisy = kept.clone().filter(|r| r.noisy).count();
    eprintln!(
        "compare: {} runs kept ({} re-runs), {} still noisy; {:.1} min; report in {}",
        kept.count(),
        outcome.reruns,
        noisy,
        outcome.elapsed_secs / 60.0,
        settings.out.display()
    );
    Ok(charts)
}

/// The time now, UTC, as `date` prints it.
fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown date".to_string())
}
