//! The side-by-side benchmark: the same echo load against our reactor, our
//! thread-per-client model, and tokio (current-thread and multi-thread), each server in its
//! own process pinned to CPU 0 while the load generator runs pinned to CPU 1.
//!
//! ```text
//! cargo bench --bench compare                          # full matrix, about 19 minutes
//! BENCH_QUICK=1 cargo bench --bench compare            # tiny matrix, under a minute
//! cargo bench --bench compare -- --rounds 5 --out target/bench-a
//! cargo bench --bench compare -- --agree target/bench-a target/bench-b
//! cargo bench --bench compare -- --publish target/bench-b   # into docs/bench/
//! ```
//!
//! Every cell runs R rounds (`--rounds`, `BENCH_ROUNDS`, default 3) with the servers
//! alternating within each round; the noise watch flags runs that other processes
//! disturbed and repeats them (`--retries`, `BENCH_RETRIES`; `--noise-limit PCT`,
//! `BENCH_NOISE_LIMIT`). `--duration SECS` (`BENCH_DURATION`) sets the traffic per run.
//! The report goes to `--out DIR` (`BENCH_OUT`, default `target/bench-report/`):
//! `report.md`, `results.csv`, `runs.csv`, `idle.csv` and SVG charts.
//! `--agree A B` compares two reports' medians (msg/s, the ratios between servers, CPU per
//! message); `--publish DIR` copies a quiet full run into `docs/bench/` and refreshes the
//! summary in `docs/bench/README.md` (`--force` for any other run); it writes nothing else.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bench::plan::Settings;
use bench::{agree, harness, publish, servers};

/// What the command line asks for.
enum Task {
    /// Run the bench with these settings.
    Bench(Box<Settings>),
    /// Compare two report directories' medians, against a tolerance.
    Agree(PathBuf, PathBuf, f64),
    /// Copy a report directory into `docs/bench/` and summarise it there (forced or not).
    Publish(PathBuf, bool),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = servers::serve_if_asked(&args) {
        return code;
    }
    let result = match parse(&args) {
        Ok(Task::Bench(settings)) => harness::run(&settings).map(|_| ExitCode::SUCCESS),
        Ok(Task::Agree(a, b, tolerance)) => agreement(&a, &b, tolerance),
        Ok(Task::Publish(dir, force)) => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            publish::publish(&dir, &root.join("docs/bench"), force).map(|()| {
                println!("published {} into docs/bench/", dir.display());
                ExitCode::SUCCESS
            })
        }
        Err(e) => Err(std::io::Error::other(e)),
    };
    result.unwrap_or_else(|e| {
        eprintln!("compare: {e}");
        ExitCode::FAILURE
    })
}

/// Read the command line and the `BENCH_*` environment (flags win).
fn parse(args: &[String]) -> Result<Task, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut quick = env("BENCH_QUICK").is_some_and(|v| v != "0");
    let mut rounds = env("BENCH_ROUNDS");
    let mut retries = env("BENCH_RETRIES");
    let mut duration = env("BENCH_DURATION");
    let mut noise = env("BENCH_NOISE_LIMIT");
    let mut out = env("BENCH_OUT").map(PathBuf::from);
    let mut tolerance = "10".to_string();
    let mut agree = None;
    let mut publish = None;
    let mut force = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--quick" => quick = true,
            "--rounds" => rounds = Some(value()?),
            "--retries" => retries = Some(value()?),
            "--duration" => duration = Some(value()?),
            "--noise-limit" => noise = Some(value()?),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--tolerance" => tolerance = value()?,
            "--agree" => agree = Some((PathBuf::from(value()?), PathBuf::from(value()?))),
            "--publish" => publish = Some(PathBuf::from(value()?)),
            "--force" => force = true,
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let number = |name: &str, v: &str| v.parse::<f64>().map_err(|e| format!("{name} {v}: {e}"));
    if let Some(dir) = publish {
        return Ok(Task::Publish(dir, force));
    }
    if let Some((a, b)) = agree {
        return Ok(Task::Agree(
            a,
            b,
            number("--tolerance", &tolerance)? / 100.0,
        ));
    }
    let out = out.unwrap_or_else(default_out);
    let mut settings = if quick {
        Settings::quick(out)
    } else {
        Settings::full(out)
    };
    // The re-run budget follows the rounds and the servers actually run.
    let rounds = match rounds {
        Some(r) => number("rounds", &r)? as usize,
        None => settings.rounds,
    };
    settings.set_rounds(rounds, servers::Kind::ALL.len());
    if let Some(r) = retries {
        settings.retries = number("retries", &r)? as usize;
    }
    if let Some(d) = duration {
        settings.duration = number("duration", &d)?;
    }
    if let Some(n) = noise {
        settings.noise_limit = number("noise limit", &n)? / 100.0;
    }
    Ok(Task::Bench(Box::new(settings)))
}

/// `target/bench-report/` beside this bench binary's build.
fn default_out() -> PathBuf {
    // The bench runs from target/<profile>/deps/; its target dir is three levels up.
    let from_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()));
    from_exe
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench-report")
}

/// Print how far two reports' medians agree; fails when the worst cell is over
/// `tolerance`.
fn agreement(a: &Path, b: &Path, tolerance: f64) -> std::io::Result<ExitCode> {
    let read = |dir: &Path, column: &str| {
        let path = dir.join("results.csv");
        let text = fs::read_to_string(&path)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        agree::medians(&text, column)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
    };
    // The noise watch's verdict of each run, so a disagreement can be read against it.
    let verdict = |dir: &Path| {
        fs::read_to_string(dir.join("report.md"))
            .ok()
            .and_then(|r| {
                r.lines()
                    .find(|l| l.starts_with("- verdict:"))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "- verdict: (no report.md)".to_string())
    };
    println!("A = {}\n  {}", a.display(), verdict(a));
    println!("B = {}\n  {}\n", b.display(), verdict(b));
    let (ma, mb) = (read(a, agree::MSGS)?, read(b, agree::MSGS)?);
    let (diffs, lonely) = agree::compare(&ma, &mb);
    println!("## Median msg/s (the target)\n");
    print!("{}", agree::render("msg/s", &diffs, &lonely, tolerance));
    // What the README concludes from: the ratios between servers, and CPU per message.
    let (ra, rb) = (
        agree::ratios(&ma, &agree::PAIRS),
        agree::ratios(&mb, &agree::PAIRS),
    );
    let (ratio_diffs, ratio_lonely) = agree::compare(&ra, &rb);
    println!("\n## Ratios of median msg/s between servers\n");
    print!(
        "{}",
        agree::render("ratio", &ratio_diffs, &ratio_lonely, tolerance)
    );
    let (ca, cb) = (read(a, agree::CPU)?, read(b, agree::CPU)?);
    let (cpu_diffs, cpu_lonely) = agree::compare(&ca, &cb);
    println!("\n## Median server CPU per message\n");
    print!(
        "{}",
        agree::render("CPU us/msg", &cpu_diffs, &cpu_lonely, tolerance)
    );
    let ok = agree::worst(&diffs).is_some_and(|w| w.relative() <= tolerance) && lonely.is_empty();
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
