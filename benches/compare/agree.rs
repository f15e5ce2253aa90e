//! Do two bench runs agree? Compares the median msg/s of every server and cell in two
//! `results.csv` files and names the worst difference. No I/O besides what the caller
//! passes in.

use std::fmt::Write as _;

/// One server under one cell, in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// `server, N conns, S B[, pipeline P]`.
    pub key: String,
    /// Median msg/s in the first run.
    pub a: f64,
    /// Median msg/s in the second run.
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

/// `(key, median msg/s)` of every row of a `results.csv`.
pub fn medians(csv: &str) -> Result<Vec<(String, f64)>, String> {
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
        col("msgs_per_sec_median")?,
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
            .map_err(|e| format!("row {}: msgs_per_sec_median: {e}", n + 2))?;
        out.push((key, value));
    }
    Ok(out)
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

/// The agreement table and a last line naming the worst difference against `tolerance`.
pub fn render(diffs: &[Difference], lonely: &[String], tolerance: f64) -> String {
    let mut md = String::from(
        "| server, cell | run A msg/s | run B msg/s | difference |\n|---|---|---|---|\n",
    );
    for d in diffs {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.1}%{} |",
            d.key,
            d.a,
            d.b,
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
