//! SVG charts of the results (plotters, SVG backend only: text is left to the viewer, so
//! no system fonts are needed).

use std::io;
use std::path::Path;

use plotters::prelude::*;

use crate::Row;

/// Colours of the servers, in `Kind::ALL` order.
const COLOURS: [RGBColor; 4] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// A chart: file stem, title, axis label, and the value plotted.
struct Metric {
    /// File name without size and extension.
    stem: &'static str,
    /// Caption.
    title: &'static str,
    /// Y axis label.
    y_label: &'static str,
    /// The value of a row.
    value: fn(&Row) -> f64,
}

const METRICS: [Metric; 3] = [
    Metric {
        stem: "throughput",
        title: "throughput",
        y_label: "messages/s",
        value: |r| r.load.messages_per_sec,
    },
    Metric {
        stem: "p99",
        title: "p99 latency",
        y_label: "p99 latency (us)",
        value: |r| r.load.latency_us.p99,
    },
    Metric {
        stem: "memory",
        title: "server peak RSS",
        y_label: "peak RSS (MiB)",
        value: |r| r.rss_peak_kib as f64 / 1024.0,
    },
];

/// Draw every chart (per metric and message size, unpipelined cells) into `dir`; returns
/// the file names.
pub fn draw_all(dir: &Path, rows: &[Row]) -> io::Result<Vec<String>> {
    let mut sizes: Vec<usize> = rows
        .iter()
        .filter(|r| r.cell.pipeline == 1)
        .map(|r| r.cell.size)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut files = Vec::new();
    for size in sizes {
        for metric in &METRICS {
            let name = format!("{}-{}B.svg", metric.stem, size);
            draw(&dir.join(&name), rows, size, metric)
                .map_err(|e| io::Error::other(format!("chart {name}: {e}")))?;
            files.push(name);
        }
    }
    Ok(files)
}

/// One line chart: `metric` against connection count (log scale), one line per server.
fn draw(
    path: &Path,
    rows: &[Row],
    size: usize,
    metric: &Metric,
) -> Result<(), Box<dyn std::error::Error>> {
    let cells: Vec<&Row> = rows
        .iter()
        .filter(|r| r.cell.size == size && r.cell.pipeline == 1)
        .collect();
    let max_x = cells
        .iter()
        .map(|r| r.cell.connections)
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let max_y = cells
        .iter()
        .map(|r| (metric.value)(r))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} vs connections, {size} B echo", metric.title),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((1.0..max_x * 1.2).log_scale(), 0.0..max_y)?;
    chart
        .configure_mesh()
        .x_desc("connections")
        .y_desc(metric.y_label)
        .draw()?;
    let mut servers: Vec<&str> = Vec::new();
    for r in &cells {
        if !servers.contains(&r.server) {
            servers.push(r.server);
        }
    }
    for (i, server) in servers.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<(f64, f64)> = cells
            .iter()
            .filter(|r| r.server == *server)
            .map(|r| (r.cell.connections as f64, (metric.value)(r)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(*server)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, colour.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
