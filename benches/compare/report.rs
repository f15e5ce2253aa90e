//! The benchmark's output: a line per run on the terminal, and in the output directory
//! `report.md` (conditions, noise, results, ratios, idle memory, charts), `results.csv`
//! (one row per server and cell), `runs.csv` (every attempt), `idle.csv` and the charts.
//! Publishing quotes part of `report.md` in `docs/bench/README.md` (see `publish`).

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use crate::charts;
use crate::measure::{Outcome, Run};
use crate::noise::LoadAvg;
use crate::plan::{Cell, Settings};
use crate::stats::Spread;
use crate::summary::{IdleSummary, Summary, ratio, summarise, summarise_idle};

/// The conditions the figures were taken under.
#[derive(Debug, Clone)]
pub struct Conditions {
    /// When the bench started, UTC.
    pub date: String,
    /// CPUs, CPU model, kernel.
    pub machine: String,
    /// `release` or `debug`.
    pub build: &'static str,
    /// How the server and the load generator were placed on the CPUs.
    pub pinning: String,
    /// The reactor's write policy (`BENCH_POLICY`, else the library's default).
    pub policy: String,
    /// The servers, in the order they run within a round.
    pub servers: Vec<&'static str>,
    /// Load averages when the bench started.
    pub load_start: Option<LoadAvg>,
    /// Load averages when it ended.
    pub load_end: Option<LoadAvg>,
}

/// Every file of the report, as written by [`write_all`].
pub const FILES: [&str; 4] = ["report.md", "results.csv", "runs.csv", "idle.csv"];

/// Print one finished run on the terminal.
pub fn print_run(r: &Run) {
    println!(
        "round {} | {:<13} | {:<26} | {:>9.0} msg/s | p50 {:>9.1} us | p99 {:>9.1} us | CPU {:>6.2} us/msg | others {:>3.0}% | load busy {:>3.0}%{}",
        r.round + 1,
        r.server,
        r.cell.label(),
        r.load.messages_per_sec,
        r.load.latency_us.p50,
        r.load.latency_us.p99,
        r.cpu_us_per_msg(),
        r.noise.disturbance() * 100.0,
        r.load_busy * 100.0,
        if r.noisy {
            format!(" NOISY ({})", r.others_top)
        } else {
            String::new()
        }
    );
    if let Some(line) = r.load.failure_line() {
        println!("    {line}");
    }
}

/// Write every file of the report into `settings.out`; returns the chart file names.
pub fn write_all(
    settings: &Settings,
    conditions: &Conditions,
    outcome: &Outcome,
) -> io::Result<Vec<String>> {
    let dir = &settings.out;
    fs::create_dir_all(dir)?;
    let summaries = summarise(&outcome.runs, settings);
    let idle = summarise_idle(&outcome.idle);
    let kept = outcome.runs.iter().filter(|r| r.kept);
    let noisy = kept.clone().filter(|r| r.noisy).count();
    let warning = (noisy > 0).then(|| {
        format!(
            "NOISY: {noisy} of {} runs were disturbed by other processes; see report.md",
            kept.count()
        )
    });
    let charts = charts::draw_all(dir, &summaries, &idle, warning.as_deref())?;
    fs::write(dir.join("results.csv"), results_csv(&summaries))?;
    fs::write(dir.join("runs.csv"), runs_csv(&outcome.runs))?;
    fs::write(dir.join("idle.csv"), idle_csv(outcome))?;
    let tables = Tables {
        settings,
        outcome,
        summaries: &summaries,
        idle: &idle,
    };
    let report = tables.sections(conditions, &charts);
    fs::write(
        dir.join("report.md"),
        format!("# tcp-reactor benchmark: reactor vs threads vs tokio\n\n{report}"),
    )?;
    Ok(charts)
}

/// One row per server and cell: medians and ranges.
fn results_csv(summaries: &[Summary]) -> String {
    let mut out = String::from(
        "server,connections,size,pipeline,rounds,noisy_rounds,attempts,\
         msgs_per_sec_median,msgs_per_sec_min,msgs_per_sec_max,mib_per_sec_median,\
         p50_us_median,p50_us_min,p50_us_max,p99_us_median,p99_us_min,p99_us_max,\
         cpu_us_per_msg_median,cpu_us_per_msg_min,cpu_us_per_msg_max,\
         peak_rss_mib_median,threads_max,load_busy_median,server_busy_median,\
         others_steal_share_median,others_steal_share_max,steal_share_max,errors,load_bound\n",
    );
    for s in summaries {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{:.1},{:.1},{:.1},{:.3},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.3},{:.3},{:.3},{:.2},{},{:.3},{:.3},{:.4},{:.4},{:.4},{},{}",
            s.server,
            s.cell.connections,
            s.cell.size,
            s.cell.pipeline,
            s.rounds,
            s.noisy_rounds,
            s.attempts,
            s.msgs.median,
            s.msgs.min,
            s.msgs.max,
            s.mib.median,
            s.p50.median,
            s.p50.min,
            s.p50.max,
            s.p99.median,
            s.p99.min,
            s.p99.max,
            s.cpu_us.median,
            s.cpu_us.min,
            s.cpu_us.max,
            s.rss_mib.median,
            s.threads,
            s.load_busy.median,
            s.server_busy.median,
            s.disturbance.median,
            s.disturbance.max,
            s.steal_max,
            s.errors,
            s.load_saturated
        );
    }
    out
}

/// Every attempt, kept or not, with its noise figures.
fn runs_csv(runs: &[Run]) -> String {
    let mut out = String::from(
        "round,attempt,kept,server,connections,size,pipeline,sent,messages,errors,msgs_per_sec,\
         mib_per_sec,p50_us,p90_us,p99_us,p999_us,max_us,server_cpu_secs,cpu_us_per_msg,\
         peak_rss_kib,threads,server_busy,load_busy,others_share,steal_share,load1_before,\
         load1_after,noisy,others_top\n",
    );
    for r in runs {
        let l = &r.load.latency_us;
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{:.1},{:.3},{:.1},{:.1},{:.1},{:.1},{:.1},{:.3},{:.3},{},{},{:.3},{:.3},{:.4},{:.4},{:.2},{:.2},{},\"{}\"",
            r.round + 1,
            r.attempt,
            r.kept,
            r.server,
            r.cell.connections,
            r.cell.size,
            r.cell.pipeline,
            r.load.sent,
            r.load.messages,
            r.load.error_count(),
            r.load.messages_per_sec,
            r.load.mib_per_sec,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            r.cpu_secs,
            r.cpu_us_per_msg(),
            r.rss_peak_kib,
            r.threads,
            r.noise.server_busy,
            r.load_busy,
            r.noise.others,
            r.noise.steal,
            r.noise.load1_before,
            r.noise.load1_after,
            r.noisy,
            r.others_top.replace('"', "'")
        );
    }
    out
}

/// Every idle measurement.
fn idle_csv(outcome: &Outcome) -> String {
    let mut out = String::from(
        "round,server,held,failed,rss_before_kib,rss_after_kib,bytes_per_conn,threads\n",
    );
    for i in &outcome.idle {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.0},{}",
            i.round + 1,
            i.server,
            i.held,
            i.failed,
            i.before_kib,
            i.after_kib,
            i.bytes_per_conn(),
            i.threads
        );
    }
    out
}

/// Everything the Markdown tables are made from.
struct Tables<'a> {
    /// The settings of the run.
    settings: &'a Settings,
    /// What was measured.
    outcome: &'a Outcome,
    /// One per server and cell.
    summaries: &'a [Summary],
    /// One per server.
    idle: &'a [IdleSummary],
}

impl Tables<'_> {
    /// Every section under its `##` heading: the body of `report.md`, whose chart links are
    /// relative to its own directory.
    fn sections(&self, c: &Conditions, charts: &[String]) -> String {
        let parts = [
            ("Conditions", self.conditions(c)),
            ("Noise per cell", self.noise_table()),
            ("Results", self.results_table()),
            ("Reactor compared", self.ratio_table()),
            ("Idle connections", self.idle_table()),
            ("Charts", chart_links(charts)),
        ];
        let mut md = String::new();
        for (heading, body) in parts {
            let _ = write!(md, "## {heading}\n\n{body}\n");
        }
        md
    }

    /// The conditions, as a list.
    fn conditions(&self, c: &Conditions) -> String {
        let s = self.settings;
        let o = self.outcome;
        let kept: Vec<&Run> = o.runs.iter().filter(|r| r.kept).collect();
        let noisy = kept.iter().filter(|r| r.noisy).count();
        let mut md = String::new();
        let _ = writeln!(
            md,
            "- date: {} (took {:.1} min); machine: {}; {} build",
            c.date,
            o.elapsed_secs / 60.0,
            c.machine,
            c.build
        );
        let _ = writeln!(md, "- pinning: {}", c.pinning);
        let _ = writeln!(
            md,
            "- reactor write policy: {} (`BENCH_POLICY` picks another)",
            c.policy
        );
        let _ = writeln!(
            md,
            "- {} profile: {} cells × {} servers × {} round{}, {} s of traffic per run, a fresh server process per run; rounds outermost, the servers alternating within each round ({})",
            s.profile,
            s.cells.len(),
            c.servers.len(),
            s.rounds,
            if s.rounds == 1 { "" } else { "s" },
            s.duration,
            c.servers.join(", ")
        );
        let _ = writeln!(
            md,
            "- noise watch: `/proc/stat`, the server's and the load generator's `/proc/PID/stat` and `/proc/loadavg` around every run; a run is noisy when other processes plus steal took more than {:.0}% of all CPU time; a noisy run is repeated up to {} times (at most {} repeats in all; {} made) and its quietest attempt kept",
            s.noise_limit * 100.0,
            s.retries,
            s.rerun_budget,
            o.reruns
        );
        let _ = writeln!(
            md,
            "- load-bound: the load generator was busy more than {:.0}% of its core (median round); there it set the pace as much as the server did, and server CPU per message is the figure to compare",
            s.load_limit * 100.0
        );
        let show = |l: &Option<LoadAvg>| {
            l.map_or("?".to_string(), |l| {
                format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen)
            })
        };
        let _ = writeln!(
            md,
            "- load average (1, 5, 15 min): {} at the start, {} at the end (it counts the bench's own runnable threads too)",
            show(&c.load_start),
            show(&c.load_end)
        );
        let verdict = if noisy == 0 {
            format!("**quiet**: none of the {} kept runs was noisy", kept.len())
        } else {
            format!(
                "**noisy**: {noisy} of {} kept runs stayed noisy after re-runs; their cells are marked, and their figures are not to be trusted",
                kept.len()
            )
        };
        let _ = writeln!(md, "- verdict: {verdict}");
        md.push_str("- latency: from sending a message to the last byte of its echo (every byte verified); figures are the median over the rounds, with the lowest and highest round in brackets\n");
        for note in &o.skipped {
            let _ = writeln!(md, "- not measured: {note}");
        }
        md
    }

    /// Per cell: how much the rest of the machine took, and whether it stayed noisy.
    fn noise_table(&self) -> String {
        let mut md = String::from(
            "Others = CPU time of processes other than the server and the load generator, plus \
             steal, as a share of all CPUs, over the whole run; load busy = the load generator's \
             CPU time while messages flowed (connect ramp excluded), % of its core, median round \
             per server.\n\n\
             | cell | runs kept | re-runs | noisy kept | others % median (max) | steal % max | load avg 1 min | load busy % (by server) | top others in the noisiest run | verdict |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
        );
        for &cell in &self.settings.cells {
            let of: Vec<&Summary> = self.summaries.iter().filter(|s| s.cell == cell).collect();
            if of.is_empty() {
                continue;
            }
            let kept: Vec<&Run> = self
                .outcome
                .runs
                .iter()
                .filter(|r| r.kept && r.cell == cell)
                .collect();
            let others = Spread::of(
                &kept
                    .iter()
                    .map(|r| r.noise.disturbance())
                    .collect::<Vec<_>>(),
            );
            let noisiest = kept
                .iter()
                .max_by(|a, b| a.noise.disturbance().total_cmp(&b.noise.disturbance()))
                .map_or("-", |r| r.others_top.as_str());
            let rounds: usize = of.iter().map(|s| s.rounds).sum();
            let attempts: usize = of.iter().map(|s| s.attempts).sum();
            let noisy: usize = of.iter().map(|s| s.noisy_rounds).sum();
            let steal = of.iter().map(|s| s.steal_max).fold(0.0, f64::max);
            let lo = of.iter().map(|s| s.load1.0).fold(f64::INFINITY, f64::min);
            let hi = of.iter().map(|s| s.load1.1).fold(0.0, f64::max);
            let busy: Vec<String> = of
                .iter()
                .map(|s| format!("{:.0}", s.load_busy.median * 100.0))
                .collect();
            let mut verdict = if noisy == 0 { "quiet" } else { "**noisy**" }.to_string();
            if of.iter().any(|s| s.load_saturated) {
                verdict.push_str(", load-bound");
            }
            let _ = writeln!(
                md,
                "| {} | {rounds} | {} | {noisy} | {} | {:.1} | {lo:.2}–{hi:.2} | {} | {noisiest} | {verdict} |",
                cell.label(),
                attempts - rounds,
                others.map_or("-".to_string(), |o| format!(
                    "{:.1} ({:.1})",
                    o.median * 100.0,
                    o.max * 100.0
                )),
                steal * 100.0,
                busy.join(" / ")
            );
        }
        md
    }

    /// One row per server and cell.
    fn results_table(&self) -> String {
        let mut md = String::from(
            "| cell | server | msg/s | p50 us | p99 us | server CPU us/msg | peak RSS MiB | threads | load busy % | flags |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
        );
        for s in self.summaries {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {:.1} | {} | {:.0} | {} |",
                s.cell.label(),
                s.server,
                s.msgs.show(0),
                s.p50.show(0),
                s.p99.show(0),
                s.cpu_us.show(2),
                s.rss_mib.median,
                s.threads,
                s.load_busy.median * 100.0,
                s.flags()
            );
        }
        md
    }

    /// Ratios of the reactor to the others, round by round.
    fn ratio_table(&self) -> String {
        let mut md = String::from(
            "Ratios are taken round by round (round k of one server against round k of the \
             other, which ran moments apart): median (lowest–highest) over the rounds. \
             Throughput: reactor over the other, above 1 favours the reactor; CPU per message: \
             the other over the reactor, above 1 favours the reactor; p99: reactor over the \
             other, below 1 favours the reactor.\n\n\
             | cell | reactor / threads msg/s | threads / reactor CPU per msg | reactor / tokio-current msg/s | tokio-current / reactor CPU per msg | reactor / tokio-current p99 | flags |\n\
             |---|---|---|---|---|---|---|\n",
        );
        let runs = &self.outcome.runs;
        let show = |s: Option<Spread>| s.map_or("-".to_string(), |s| s.show(2));
        for &cell in &self.settings.cells {
            let flags = cell_flags(self.summaries, cell);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {flags} |",
                cell.label(),
                show(ratio(runs, "reactor", "threads", cell, |r| r
                    .load
                    .messages_per_sec)),
                show(ratio(runs, "threads", "reactor", cell, Run::cpu_us_per_msg)),
                show(ratio(runs, "reactor", "tokio-current", cell, |r| r
                    .load
                    .messages_per_sec)),
                show(ratio(
                    runs,
                    "tokio-current",
                    "reactor",
                    cell,
                    Run::cpu_us_per_msg
                )),
                show(ratio(runs, "reactor", "tokio-current", cell, |r| r
                    .load
                    .latency_us
                    .p99)),
            );
        }
        md
    }

    /// Server memory with idle connections.
    fn idle_table(&self) -> String {
        let held = self.idle.iter().map(|i| i.held).max().unwrap_or(0);
        let mut md = format!(
            "Idle connections: {} opened by the bench, each echoing once, then left idle; the \
             server's RSS growth per connection, median (lowest–highest) over the rounds.\n\n\
             | server | rounds | held | failed | bytes per connection | RSS with all open, MiB | threads |\n\
             |---|---|---|---|---|---|---|\n",
            held.max(self.settings.idle)
        );
        for i in self.idle {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.1} | {} |",
                i.server,
                i.rounds,
                i.held,
                i.failed,
                i.bytes_per_conn.show(0),
                i.after_kib.median / 1024.0,
                i.threads
            );
        }
        md
    }
}

/// `noisy` and `load-bound` for a cell when any of its servers was.
fn cell_flags(summaries: &[Summary], cell: Cell) -> String {
    let of = || summaries.iter().filter(|s| s.cell == cell);
    let mut flags = Vec::new();
    if of().any(|s| s.noisy_rounds > 0) {
        flags.push("noisy");
    }
    if of().any(|s| s.load_saturated) {
        flags.push("load-bound");
    }
    flags.join(", ")
}

/// Markdown image links to the charts, beside the report.
fn chart_links(charts: &[String]) -> String {
    let mut md = String::new();
    for c in charts {
        let _ = writeln!(md, "![{}]({c})", c.trim_end_matches(".svg"));
    }
    md
}

/// The files of the report and charts missing or empty in `dir` (for the smoke test).
pub fn missing_files(dir: &Path, charts: &[String]) -> Vec<String> {
    FILES
        .iter()
        .map(|f| f.to_string())
        .chain(charts.iter().cloned())
        .filter(|f| fs::metadata(dir.join(f)).map_or(true, |m| m.len() == 0))
        .collect()
}
