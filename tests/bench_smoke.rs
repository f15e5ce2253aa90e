//! A smoke run of the benchmark (`benches/compare`): a tiny matrix against all six
//! servers, two rounds, then a check that every file of the report was written and holds
//! what it should. Nothing about speed is asserted.
//!
//! This test has its own `main` (`harness = false`): the bench starts its tokio echo
//! servers by re-executing itself with a special first argument, and so does this binary.
//! Otherwise `libtest-mimic` runs the smoke run as one test, with libtest's arguments and
//! its `test result:` line. The report goes to a temporary directory removed at the end,
//! passed or failed; so do the TLS servers' certificates and keys.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use bench::plan::{Cell, Settings};
use bench::{harness, servers};
use libtest_mimic::{Arguments, Failed, Trial};

/// Two rounds of two unpipelined cells and a pipelined one, a fifth of a second each.
fn smoke_settings(out: &Path) -> Settings {
    let cell = |connections, pipeline| Cell {
        connections,
        size: 64,
        pipeline,
    };
    let cells = vec![cell(4, 1), cell(16, 1), cell(8, 4)];
    let mut s = Settings::with_cells("smoke", cells, 0.2, 100, out.to_path_buf());
    s.set_rounds(2, servers::Kind::ALL.len());
    s.retries = 1;
    s
}

/// Runs like a libtest binary (filters, `--list`, `--exact`, `--ignored`, the summary
/// line), unless asked to be a tokio echo server.
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = servers::serve_if_asked(&args) {
        return code;
    }
    let trials = vec![Trial::test(
        "the_smoke_run_writes_every_report_file",
        smoke_run,
    )];
    libtest_mimic::run(&Arguments::from_args(), trials).exit_code()
}

/// The smoke run, into a temporary directory removed at the end, failed or not.
fn smoke_run() -> Result<(), Failed> {
    let out = tempfile::Builder::new()
        .prefix("tcp-reactor-bench-smoke-")
        .tempdir()
        .map_err(|e| format!("no temporary directory: {e}"))?;
    let settings = smoke_settings(out.path());
    harness::run(&settings).map_err(|e| format!("smoke run failed: {e}"))?;
    check_report(out.path(), &settings)?;
    Ok(())
}

/// The contents of `dir/name`, which must exist and not be empty.
fn read(dir: &Path, name: &str) -> Result<String, String> {
    let text = fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
    if text.trim().is_empty() {
        return Err(format!("{name} is empty"));
    }
    Ok(text)
}

/// Every file the report promises, with the rows and sections the settings call for.
fn check_report(dir: &Path, settings: &Settings) -> Result<(), String> {
    let servers = servers::Kind::ALL.map(servers::Kind::name);
    let (cells, rounds) = (settings.cells.len(), settings.rounds);
    let results = read(dir, "results.csv")?;
    expect_rows("results.csv", &results, cells * servers.len())?;
    let runs = read(dir, "runs.csv")?;
    let kept = runs
        .lines()
        .filter(|l| l.split(',').nth(2) == Some("true"))
        .count();
    if kept != cells * servers.len() * rounds {
        return Err(format!(
            "runs.csv: {kept} kept runs, want {}",
            cells * servers.len() * rounds
        ));
    }
    expect_rows("idle.csv", &read(dir, "idle.csv")?, 3 * rounds)?;
    let report = read(dir, "report.md")?;
    for heading in [
        "## Conditions",
        "## Noise per cell",
        "## Results",
        "## Reactor compared",
        "## Idle connections",
        "## Charts",
        "load average",
        "smoke profile: 3 cells × 9 servers × 2 rounds",
    ] {
        if !report.contains(heading) {
            return Err(format!("report.md lacks {heading:?}"));
        }
    }
    for chart in ["throughput-64B", "p99-64B", "cpu-64B", "memory-64B"] {
        let svg = read(dir, &format!("{chart}.svg"))?;
        if !svg.contains("<svg") || servers.iter().any(|s| !svg.contains(s)) {
            return Err(format!(
                "{chart}.svg is not a chart with every server in its legend"
            ));
        }
        if !report.contains(&format!("({chart}.svg)")) {
            return Err(format!("{chart}.svg is not linked from report.md"));
        }
    }
    let idle = read(dir, "idle-memory.svg")?;
    if !idle.contains("<svg") || !idle.contains("reactor") {
        return Err("idle-memory.svg is not a chart of the servers".to_string());
    }
    Ok(())
}

/// `text` must be a header and `rows` rows.
fn expect_rows(name: &str, text: &str, rows: usize) -> Result<(), String> {
    let got = text.lines().count().saturating_sub(1);
    if got != rows {
        return Err(format!("{name}: {got} rows, want {rows}"));
    }
    Ok(())
}
