//! The benchmark's output: a table on the terminal and `target/bench-report/` with
//! `results.csv`, `report.md` and the charts.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::PathBuf;

use crate::{Idle, Mode, Row, charts};

/// Server CPU time per echoed message, in microseconds.
pub fn cpu_us_per_msg(row: &Row) -> f64 {
    if row.load.messages == 0 {
        0.0
    } else {
        row.cpu_secs * 1e6 / row.load.messages as f64
    }
}

/// Bytes of server memory per idle connection.
pub fn bytes_per_conn(idle: &Idle) -> f64 {
    if idle.held == 0 {
        0.0
    } else {
        idle.after_kib.saturating_sub(idle.before_kib) as f64 * 1024.0 / idle.held as f64
    }
}

/// The table header, shared by the terminal and `report.md`.
const HEADER: &str = "| server | policy | conns | size | pipe | msg/s | MiB/s | p50 us | p99 us | peak RSS MiB | threads | CPU s | CPU us/msg | load CPU s | errors |";

/// One row of the table.
fn table_row(r: &Row) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.1} | {:.1} | {:.1} | {} | {:.2} | {:.2} | {:.2} | {} |",
        r.server,
        r.policy,
        r.cell.connections,
        r.cell.size,
        r.cell.pipeline,
        r.load.messages_per_sec,
        r.load.mib_per_sec,
        r.load.latency_us.p50,
        r.load.latency_us.p99,
        r.rss_peak_kib as f64 / 1024.0,
        r.threads,
        r.cpu_secs,
        cpu_us_per_msg(r),
        r.load_cpu_secs,
        r.load.error_count()
    )
}

/// Print one finished cell on the terminal.
pub fn print_row(r: &Row) {
    println!("{}", table_row(r));
    if let Some(line) = r.load.failure_line() {
        println!("    {line}");
    }
}

/// Print one idle measurement on the terminal.
pub fn print_idle(i: &Idle) {
    println!(
        "idle {}: {} connections held ({} failed), RSS {} -> {} KiB, {:.0} bytes per connection, {} threads",
        i.server,
        i.held,
        i.failed,
        i.before_kib,
        i.after_kib,
        bytes_per_conn(i),
        i.threads
    );
}

/// Where the report goes: `target/bench-report/` beside this bench binary's build.
fn report_dir() -> PathBuf {
    // The bench runs from target/<profile>/deps/; its target dir is three levels up.
    let from_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()));
    from_exe
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench-report")
}

/// Write `results.csv`, `report.md` and the charts; returns the directory.
pub fn write_all(
    mode: &Mode,
    rows: &[Row],
    idle: &[Idle],
    skipped: &[String],
    load_after: &str,
) -> io::Result<PathBuf> {
    let dir = report_dir();
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("results.csv"), csv(rows))?;
    let chart_files = charts::draw_all(&dir, rows)?;
    fs::write(
        dir.join("report.md"),
        markdown(mode, rows, idle, skipped, load_after, &chart_files),
    )?;
    Ok(dir)
}

/// Every cell as CSV.
fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "server,policy,connections,size,pipeline,sent,messages,errors,msgs_per_sec,mib_per_sec,p50_us,p90_us,p99_us,p999_us,max_us,\
         server_rss_peak_kib,server_threads,server_cpu_secs,server_cpu_us_per_msg,load_cpu_secs,elapsed_secs,rate_secs\n",
    );
    for r in rows {
        let l = &r.load.latency_us;
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{:.1},{:.3},{:.1},{:.1},{:.1},{:.1},{:.1},{},{},{:.3},{:.3},{:.3},{:.3},{:.3}",
            r.server,
            r.policy,
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
            r.rss_peak_kib,
            r.threads,
            r.cpu_secs,
            cpu_us_per_msg(r),
            r.load_cpu_secs,
            r.load.elapsed_secs,
            r.load.rate_secs
        );
    }
    out
}

/// The Markdown report.
fn markdown(
    mode: &Mode,
    rows: &[Row],
    idle: &[Idle],
    skipped: &[String],
    load_after: &str,
    charts: &[String],
) -> String {
    let mut md = String::from("# tcp-reactor benchmark: reactor vs threads vs tokio\n\n");
    md.push_str(&setup(mode, skipped, load_after));
    md.push_str("\n## Results\n\n");
    md.push_str(HEADER);
    md.push_str("\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        md.push_str(&table_row(r));
        md.push('\n');
    }
    md.push_str(&ratios(rows));
    md.push_str(&idle_table(idle));
    md.push_str("\n## Charts\n\n");
    for c in charts {
        let _ = writeln!(md, "![{c}]({c})");
    }
    md
}

/// How the figures were taken.
fn setup(mode: &Mode, skipped: &[String], load_after: &str) -> String {
    let pin = match mode.pin {
        Some((s, l)) => {
            format!("server pinned to CPU {s}, load generator (one thread) pinned to CPU {l}")
        }
        None => "not pinned: server and load generator share the CPUs".to_string(),
    };
    let mut md = String::new();
    let kind = if mode.quick { "quick" } else { "full" };
    let _ = writeln!(
        md,
        "- mode: {kind} ({} s of traffic per cell, a fresh server process per cell)",
        mode.duration
    );
    let _ = writeln!(md, "- CPUs: {pin}");
    let _ = writeln!(
        md,
        "- machine load average (1, 5, 15 min) before: {}, after: {load_after} (work of other processes skews the figures; the after figure also counts the runnable threads of the bench's own thread-per-client servers)",
        mode.load_before
    );
    md.push_str(
        "- load: echo ping-pong, every byte verified; latency from send to the last echoed byte\n",
    );
    md.push_str("- peak RSS is the server's VmHWM, threads the most seen during the cell, CPU the server's utime+stime\n");
    md.push_str("- load CPU is the load generator's own CPU time in the cell: when it nears the cell's length, the load generator was the limit, not the server\n");
    for note in skipped {
        let _ = writeln!(md, "- not measured: {note}");
    }
    md
}

/// Server memory with idle connections.
fn idle_table(idle: &[Idle]) -> String {
    let mut md = String::from(
        "\n## Idle connections\n\n| server | held | failed | RSS before KiB | RSS after KiB | bytes per connection | threads |\n|---|---|---|---|---|---|---|\n",
    );
    for i in idle {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.0} | {} |",
            i.server,
            i.held,
            i.failed,
            i.before_kib,
            i.after_kib,
            bytes_per_conn(i),
            i.threads
        );
    }
    md
}

/// Find the row of `server` for a cell.
fn find<'a>(
    rows: &'a [Row],
    server: &str,
    conns: usize,
    size: usize,
    pipeline: usize,
) -> Option<&'a Row> {
    rows.iter().find(|r| {
        r.server == server
            && r.cell.connections == conns
            && r.cell.size == size
            && r.cell.pipeline == pipeline
    })
}

/// The comparisons the project's targets are stated in. Throughput ratios are reactor over
/// other (above 1: the reactor is faster); CPU ratios are other over reactor (above 1: the
/// other spends more server CPU per message), which noise from other processes disturbs less.
fn ratios(rows: &[Row]) -> String {
    let mut md = String::from(
        "\n## Reactor compared\n\n\
         | cell | reactor / threads msg/s | threads / reactor CPU per msg | reactor / tokio-current msg/s \
         | tokio-current / reactor CPU per msg | reactor p99 / tokio-current p99 |\n|---|---|---|---|---|---|\n",
    );
    for r in rows.iter().filter(|r| r.server == "reactor") {
        let c = r.cell;
        // `f(numerator) / f(denominator)`, or "-" when the other server was not measured.
        let ratio = |other: &str, f: fn(&Row) -> f64, reactor_first: bool| {
            let o = find(rows, other, c.connections, c.size, c.pipeline);
            let (num, den) = match o {
                Some(o) if reactor_first => (f(r), f(o)),
                Some(o) => (f(o), f(r)),
                None => return "-".to_string(),
            };
            if den > 0.0 {
                format!("{:.2}", num / den)
            } else {
                "-".to_string()
            }
        };
        let _ = writeln!(
            md,
            "| {} conns, {} B, pipeline {} | {} | {} | {} | {} | {} |",
            c.connections,
            c.size,
            c.pipeline,
            ratio("threads", |x| x.load.messages_per_sec, true),
            ratio("threads", cpu_us_per_msg, false),
            ratio("tokio-current", |x| x.load.messages_per_sec, true),
            ratio("tokio-current", cpu_us_per_msg, false),
            ratio("tokio-current", |x| x.load.latency_us.p99, true)
        );
    }
    md
}
