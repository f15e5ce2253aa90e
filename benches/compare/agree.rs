//! Do two bench runs agree? Compares a median column (msg/s, the target; server CPU per
//! message) of every server and cell in two `results.csv` files, and the ratios between
//! servers the README draws from them, and names the worst difference. No I/O besides
//! what the caller passes in.

use std::fmt::Write as _;

/// One server under one cell, in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// `server, N conns, S B[, pipeline P]`.
    pub key: String,
    /// The figure in the first run.
    pub a: f64,
    /// The figure in the second run.
    pub b: f64,
}

impl Difference {
    /// The larger over the smaller, minus one (0.1 = the runs differ by 10%); infinite
    /// when one side is 0 and the other is not.
    pub fn relative(&self) -> f64 {
        let (lo, hi) = (self.a.min(self.b), self.a.max(self.b));
        if hi == 0.0 {
            0.0
        } else if lo <= 0.0 {
            f64::INFINITY
        } else {
            hi / lo - 1.0
        }
    }
}

/// The median column the agreement target is about.
pub const MSGS: &str = "msgs_per_sec_median";

/// Server CPU time per message, the figure least moved by the load generator.
pub const CPU: &str = "cpu_us_per_msg_median";

/// The pairs of servers whose msg/s ratio the README reads: each model against its peers
/// over the same transport.
pub const PAIRS: [(&str, &str); 6] = [
    ("reactor", "threads"),
    ("reactor", "tokio-current"),
    ("reactor", "tokio-multi"),
    ("reactor-tls", "threads-tls"),
    ("reactor-tls", "tokio-tls"),
    ("proxy", "proxy-threads"),
];

/// `(key, value of column)` of every row of a `results.csv`; `column` is one of the
/// `*_median` columns, such as [`MSGS`] or [`CPU`].
pub fn medians(csv: &str, column: &str) -> Result<Vec<(String, f64)>, String> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or("empty results.csv")?
        .split(',')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or(format!("results.csv has no column {name}"))
    };
    let (server, conns, size, pipe, msgs) = (
        col("server")?,
        col("connections")?,
        col("size")?,
        col("pipeline")?,
        col(column)?,
    );
    let mut out = Vec::new();
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let get = |i: usize| {
            f.get(i)
                .copied()
                .ok_or(format!("row {}: too few fields", n + 2))
        };
        let mut key = format!("{}, {} conns, {} B", get(server)?, get(conns)?, get(size)?);
        if get(pipe)? != "1" {
            key.push_str(&format!(", pipeline {}", get(pipe)?));
        }
        let value: f64 = get(msgs)?
            .parse()
            .map_err(|e| format!("row {}: {column}: {e}", n + 2))?;
        out.push((key, value));
    }
    Ok(out)
}

/// For each of `pairs` and each cell that has both servers, the first server's figure
/// over the second's, keyed `first / second, cell`; from [`medians`] of one run.
pub fn ratios(medians: &[(String, f64)], pairs: &[(&str, &str)]) -> Vec<(String, f64)> {
    let value = |server: &str, cell: &str| {
        medians
            .iter()
            .find(|(key, _)| key.split_once(", ") == Some((server, cell)))
            .map(|(_, v)| *v)
    };
    let mut out = Vec::new();
    for (key, _) in medians {
        let Some((server, cell)) = key.split_once(", ") else {
            continue;
        };
        for &(first, second) in pairs.iter().filter(|(first, _)| *first == server) {
            if let (Some(x), Some(y)) = (value(first, cell), value(second, cell))
                && y > 0.0
            {
                out.push((format!("{first} / {second}, {cell}"), x / y));
            }
        }
    }
    out
}

/// The rows both runs measured, in the first run's order; keys only one run has are
/// returned second.
pub fn compare(a: &[(String, f64)], b: &[(String, f64)]) -> (Vec<Difference>, Vec<String>) {
    let mut both = Vec::new();
    let mut lonely = Vec::new();
    for (key, va) in a {
        match b.iter().find(|(k, _)| k == key) {
            Some((_, vb)) => both.push(Difference {
                key: key.clone(),
                a: *va,
                b: *vb,
            }),
            None => lonely.push(key.clone()),
        }
    }
    lonely.extend(
        b.iter()
            .filter(|(k, _)| !a.iter().any(|(ka, _)| ka == k))
            .map(|(k, _)| k.clone()),
    );
    (both, lonely)
}

/// The difference with the largest relative gap.
pub fn worst(diffs: &[Difference]) -> Option<&Difference> {
    diffs
        .iter()
        .max_by(|x, y| x.relative().total_cmp(&y.relative()))
}

/// The agreement table of one `figure` (`msg/s`, `CPU us/msg`, `ratio`) and a last line
/// naming the worst difference against `tolerance`.
pub fn render(figure: &str, diffs: &[Difference], lonely: &[String], tolerance: f64) -> String {
    let mut md = format!(
        "| server, cell | run A {figure} | run B {figure} | difference |\n|---|---|---|---|\n"
    );
    // Large figures (msg/s) read best whole; small ones (µs, ratios) with two decimals.
    let shown = |v: f64| {
        if v >= 1000.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    };
    for d in diffs {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1}%{} |",
            d.key,
            shown(d.a),
            shown(d.b),
            d.relative() * 100.0,
            if d.relative() > tolerance {
                " **over**"
            } else {
                ""
            }
        );
    }
    for key in lonely {
        let _ = writeln!(md, "| {key} | only in one run | | |");
    }
    let within = diffs.iter().filter(|d| d.relative() <= tolerance).count();
    match worst(diffs) {
        Some(w) => {
            let _ = writeln!(
                md,
                "\nworst: {:.1}% ({}); {within} of {} within {:.0}%",
                w.relative() * 100.0,
                w.key,
                diffs.len(),
                tolerance * 100.0
            );
        }
        None => md.push_str("\nno cell in common\n"),
    }
    md
}
