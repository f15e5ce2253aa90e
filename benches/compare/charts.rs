//! SVG charts of the results (plotters, SVG backend only: text is left to the viewer, so
//! no system fonts are needed).

use std::io;
use std::path::Path;

use std::error::Error;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;

use crate::Row;

/// A fixed colour per server, so that a server keeps its colour in every chart.
fn colour(server: &str) -> RGBColor {
    match server {
        "reactor" => RGBColor(214, 39, 40),
        "threads" => RGBColor(31, 119, 180),
        "tokio-current" => RGBColor(44, 160, 44),
        _ => RGBColor(148, 103, 189),
    }
}

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
    /// Where the legend hides the fewest points.
    legend: SeriesLabelPosition,
    /// Logarithmic y axis.
    log_y: bool,
}

const METRICS: [Metric; 3] = [
    Metric {
        stem: "throughput",
        title: "throughput",
        y_label: "messages/s",
        value: |r| r.load.messages_per_sec,
        legend: SeriesLabelPosition::LowerLeft,
        log_y: false,
    },
    Metric {
        stem: "p99",
        title: "p99 latency",
        y_label: "p99 latency (us)",
        value: |r| r.load.latency_us.p99,
        legend: SeriesLabelPosition::UpperLeft,
        log_y: true,
    },
    Metric {
        stem: "memory",
        title: "server peak RSS",
        y_label: "peak RSS (MiB)",
        value: |r| r.rss_peak_kib as f64 / 1024.0,
        legend: SeriesLabelPosition::UpperLeft,
        log_y: false,
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
/// Latency spans microseconds to seconds, so its axis is logarithmic too.
fn draw(path: &Path, rows: &[Row], size: usize, metric: &Metric) -> Result<(), Box<dyn Error>> {
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
    let values = cells.iter().map(|r| (metric.value)(r));
    let max_y = values.clone().fold(0.0, f64::max).max(1.0) * 1.2;
    let min_y = values.fold(f64::INFINITY, f64::min).clamp(1.0, max_y) / 1.2;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(
            format!("{} vs connections, {size} B echo", metric.title),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80);
    let x = (1.0..max_x * 1.2).log_scale();
    if metric.log_y {
        let chart = builder.build_cartesian_2d(x, (min_y..max_y).log_scale())?;
        lines(chart, &cells, metric)?;
    } else {
        let chart = builder.build_cartesian_2d(x, 0.0..max_y)?;
        lines(chart, &cells, metric)?;
    }
    root.present()?;
    Ok(())
}

/// Draw the mesh, one line per server, and the legend.
fn lines<'a, X, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    cells: &[&Row],
    metric: &Metric,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc("connections")
        .y_desc(metric.y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 100.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .draw()
        .map_err(|e| e.to_string())?;
    let mut servers: Vec<&str> = Vec::new();
    for r in cells {
        if !servers.contains(&r.server) {
            servers.push(r.server);
        }
    }
    for server in servers {
        let colour = colour(server);
        let points: Vec<(f64, f64)> = cells
            .iter()
            .filter(|r| r.server == server)
            .map(|r| (r.cell.connections as f64, (metric.value)(r)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(server)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, colour.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(metric.legend.clone())
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}
