//! SVG charts of the results (plotters, SVG backend only: text is left to the viewer, so
//! no system fonts are needed). Each point is the median over the rounds; the bar through
//! it spans the lowest to the highest round.

use std::error::Error;
use std::io;
use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::stats::Spread;
use crate::summary::{IdleSummary, Summary};

/// A fixed colour per server, so that a server keeps its colour in every chart.
fn colour(server: &str) -> RGBColor {
    match server {
        "reactor" => RGBColor(214, 39, 40),
        "threads" => RGBColor(31, 119, 180),
        "tokio-current" => RGBColor(44, 160, 44),
        "proxy" => RGBColor(255, 127, 14),
        "proxy-threads" => RGBColor(140, 86, 75),
        "reactor-tls" => RGBColor(227, 119, 194),
        "threads-tls" => RGBColor(23, 190, 207),
        "tokio-tls" => RGBColor(188, 189, 34),
        "tokio-multi" => RGBColor(148, 103, 189),
        _ => RGBColor(127, 127, 127),
    }
}

/// One line chart against connections.
struct Metric {
    /// File name without size and extension.
    stem: &'static str,
    /// What the chart shows, for the caption.
    title: &'static str,
    /// Y axis label.
    y_label: &'static str,
    /// The figure of a summary, in the axis's unit.
    value: fn(&Summary) -> Spread,
    /// Logarithmic y axis (latency spans microseconds to seconds).
    log_y: bool,
}

/// The line charts, each drawn once per message size.
const METRICS: [Metric; 4] = [
    Metric {
        stem: "throughput",
        title: "throughput",
        y_label: "thousand messages/s",
        value: |s| scale(s.msgs, 1e-3),
        log_y: false,
    },
    Metric {
        stem: "p99",
        title: "p99 latency",
        y_label: "p99 latency, ms (log scale)",
        value: |s| scale(s.p99, 1e-3),
        log_y: true,
    },
    Metric {
        stem: "cpu",
        title: "server CPU per message",
        y_label: "server CPU time per message, µs",
        value: |s| s.cpu_us,
        log_y: false,
    },
    Metric {
        stem: "memory",
        title: "server peak RSS",
        y_label: "peak RSS, MiB",
        value: |s| s.rss_mib,
        log_y: false,
    },
];

/// `s` times `factor`.
fn scale(s: Spread, factor: f64) -> Spread {
    Spread {
        median: s.median * factor,
        min: s.min * factor,
        max: s.max * factor,
    }
}

/// Draw every chart into `dir`: each metric per message size (unpipelined cells), and the
/// idle-memory bars. A `warning` (a noisy run) is printed in red above every chart, so a
/// chart copied away from its report still says so. Returns the file names.
pub fn draw_all(
    dir: &Path,
    summaries: &[Summary],
    idle: &[IdleSummary],
    warning: Option<&str>,
) -> io::Result<Vec<String>> {
    let mut sizes: Vec<usize> = summaries
        .iter()
        .filter(|s| s.cell.pipeline == 1)
        .map(|s| s.cell.size)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut files = Vec::new();
    for metric in &METRICS {
        for &size in &sizes {
            let name = format!("{}-{}B.svg", metric.stem, size);
            draw_lines(&dir.join(&name), summaries, size, metric, warning)
                .map_err(|e| io::Error::other(format!("chart {name}: {e}")))?;
            files.push(name);
        }
    }
    if !idle.is_empty() {
        let name = "idle-memory.svg".to_string();
        draw_idle(&dir.join(&name), idle, warning)
            .map_err(|e| io::Error::other(format!("chart {name}: {e}")))?;
        files.push(name);
    }
    Ok(files)
}

/// The points of one server: `(connections, figure)`.
type Series = (&'static str, Vec<(f64, Spread)>);

/// One series per server for the unpipelined cells of `size`.
fn series(summaries: &[Summary], size: usize, metric: &Metric) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for s in summaries
        .iter()
        .filter(|s| s.cell.size == size && s.cell.pipeline == 1)
    {
        let point = (s.cell.connections as f64, (metric.value)(s));
        match out.iter_mut().find(|(name, _)| *name == s.server) {
            Some((_, points)) => points.push(point),
            None => out.push((s.server, vec![point])),
        }
    }
    out
}

/// One line chart: `metric` against connection count (log scale), one line per server,
/// each point with its min–max bar. Servers are nudged apart along x so that their bars do
/// not hide each other.
fn draw_lines(
    path: &Path,
    summaries: &[Summary],
    size: usize,
    metric: &Metric,
    warning: Option<&str>,
) -> Result<(), Box<dyn Error>> {
    let series = series(summaries, size, metric);
    let mut conns: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .collect();
    conns.sort_by(f64::total_cmp);
    conns.dedup();
    let max_x = conns.last().copied().unwrap_or(1.0).max(2.0);
    let min_x = conns.first().copied().unwrap_or(1.0).min(max_x / 2.0);
    let spreads = series.iter().flat_map(|(_, p)| p.iter().map(|(_, s)| *s));
    let hi = spreads.clone().map(|s| s.max).fold(0.0, f64::max).max(1e-3);
    let lo = spreads
        .map(|s| s.min)
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let root = canvas(path, warning)?;
    // The legend gets a column of its own: with nine servers, any corner of the plot
    // would hide some of their points.
    let (plot_area, legend_area) = root.split_horizontally(PLOT_WIDTH);
    let rounds = summaries.iter().map(|s| s.rounds).max().unwrap_or(0);
    let mut builder = ChartBuilder::on(&plot_area);
    builder
        .caption(
            format!(
                "{} vs connections, {size} B echo ({}; bars: lowest to highest)",
                metric.title,
                median_of(rounds)
            ),
            ("sans-serif", 19),
        )
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(70);
    let x = (min_x / 1.5..max_x * 1.5)
        .log_scale()
        .with_key_points(conns);
    if metric.log_y {
        let lo = if lo.is_finite() { lo } else { hi / 10.0 };
        let (lo, hi) = (lo / 1.5, hi * 1.5);
        // plotters labels a log axis at powers of ten only: under two decades, too few.
        let y = (lo..hi).log_scale().with_key_points(log_ticks(lo, hi));
        let chart = builder.build_cartesian_2d(x, y)?;
        plot(chart, &series, metric)?;
    } else {
        let chart = builder.build_cartesian_2d(x, 0.0..hi * 1.15)?;
        plot(chart, &series, metric)?;
    }
    legend(&legend_area, series.iter().map(|(server, _)| *server))?;
    root.present()?;
    Ok(())
}

/// Width of a line chart's plot; the legend column takes the rest of the canvas.
const PLOT_WIDTH: u32 = 860;

/// Width of the legend column beside a line chart's plot.
const LEGEND_WIDTH: u32 = 140;

/// One line per server, in its colour, top to bottom in the order of the series.
fn legend<'a>(
    area: &DrawingArea<SVGBackend<'a>, Shift>,
    servers: impl Iterator<Item = &'a str>,
) -> Result<(), Box<dyn Error>> {
    for (i, server) in servers.enumerate() {
        let y = 60 + 24 * i as i32;
        let colour = colour(server);
        area.draw(&PathElement::new(
            vec![(0, y), (24, y)],
            colour.stroke_width(2),
        ))?;
        area.draw(&Circle::new((12, y), 4, colour.filled()))?;
        area.draw(&Text::new(
            server.to_string(),
            (32, y),
            ("sans-serif", 14)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

/// A white canvas with room for a line chart and its legend column (520 high), or below a
/// red `warning` line when there is one., or below a red `warning` line when there is one.
fn canvas<'a>(
    path: &'a Path,
    warning: Option<&str>,
) -> Result<DrawingArea<SVGBackend<'a>, Shift>, Box<dyn Error>> {
    let width = PLOT_WIDTH + LEGEND_WIDTH;
    let Some(warning) = warning else {
        let root = SVGBackend::new(path, (width, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        return Ok(root);
    };
    let root = SVGBackend::new(path, (width, 550)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(30);
    top.draw(&Text::new(
        warning.to_string(),
        (width as i32 / 2, 8),
        ("sans-serif", 15)
            .into_font()
            .color(&RED)
            .pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    Ok(body)
}

/// Mesh, lines and bars of one line chart.
fn plot<'a, X, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: &[Series],
    metric: &Metric,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc("client connections (log scale)")
        .y_desc(metric.y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| tick(*y))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    let n = series.len() as f64;
    for (i, (server, points)) in series.iter().enumerate() {
        let colour = colour(server);
        // 6% apart along the log axis: visible, yet each stays near its connection count.
        let nudge = 1.06f64.powf(i as f64 - (n - 1.0) / 2.0);
        let at: Vec<(f64, Spread)> = points.iter().map(|(x, s)| (x * nudge, *s)).collect();
        chart
            .draw_series(LineSeries::new(
                at.iter().map(|(x, s)| (*x, s.median)),
                colour.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(at.iter().map(|(x, s)| {
                PathElement::new(vec![(*x, s.min), (*x, s.max)], colour.stroke_width(2))
            }))
            .map_err(|e| e.to_string())?;
        for end in [|s: &Spread| s.min, |s: &Spread| s.max] {
            chart
                .draw_series(at.iter().map(|(x, s)| {
                    EmptyElement::at((*x, end(s)))
                        + PathElement::new(vec![(-5, 0), (5, 0)], colour.stroke_width(2))
                }))
                .map_err(|e| e.to_string())?;
        }
        chart
            .draw_series(
                at.iter()
                    .map(|(x, s)| Circle::new((*x, s.median), 4, colour.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `median of 3 rounds`, or `1 round`.
fn median_of(rounds: usize) -> String {
    if rounds == 1 {
        "1 round".to_string()
    } else {
        format!("median of {rounds} rounds")
    }
}

/// Ticks at 1, 2 and 5 times the powers of ten between `lo` and `hi`.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    (first..=last)
        .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
        .filter(|v| (lo..=hi).contains(v))
        .collect()
}

/// An axis tick: no more digits than its size needs (`50`, `2.5`, `0.25`).
fn tick(y: f64) -> String {
    let a = y.abs();
    if a >= 10.0 || a == 0.0 || (y - y.round()).abs() < 1e-9 {
        format!("{y:.0}")
    } else if a >= 1.0 {
        format!("{y:.1}")
    } else if a >= 0.01 {
        format!("{y:.2}")
    } else {
        format!("{y:.3}")
    }
}

/// Bars of server memory per idle connection, labelled with their value, with min–max bars.
fn draw_idle(
    path: &Path,
    idle: &[IdleSummary],
    warning: Option<&str>,
) -> Result<(), Box<dyn Error>> {
    let kib = |v: f64| v / 1024.0;
    let hi = idle
        .iter()
        .map(|i| kib(i.bytes_per_conn.max))
        .fold(0.0, f64::max)
        .max(0.1);
    let held = idle.iter().map(|i| i.held).max().unwrap_or(0);
    let rounds = idle.iter().map(|i| i.rounds).max().unwrap_or(0);
    let root = canvas(path, warning)?;
    let n = idle.len();
    let names: Vec<&'static str> = idle.iter().map(|i| i.server).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "server memory per idle connection, {held} held ({})",
                median_of(rounds)
            ),
            ("sans-serif", 19),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        // A segmented range has one segment more than its end: 0..n-1 gives n bars.
        .build_cartesian_2d((0..n as i32 - 1).into_segmented(), 0.0..hi * 1.2)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => names.get(*i as usize).copied().unwrap_or("").to_string(),
            _ => String::new(),
        })
        .y_label_formatter(&|y| tick(*y))
        .y_desc("KiB of RSS per connection")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    for (i, m) in idle.iter().enumerate() {
        let (i, c) = (i as i32, colour(m.server));
        let s = m.bytes_per_conn;
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), kib(s.median)),
            ],
            c.filled(),
        );
        bar.set_margin(0, 0, 50, 50);
        chart.draw_series([bar])?;
        let centre = SegmentValue::CenterOf(i);
        chart.draw_series([PathElement::new(
            vec![(centre.clone(), kib(s.min)), (centre.clone(), kib(s.max))],
            BLACK.stroke_width(1),
        )])?;
        let label = if s.median >= 1024.0 {
            format!("{:.1} KiB", kib(s.median))
        } else {
            format!("{:.0} B", s.median)
        };
        chart.draw_series([Text::new(
            label,
            (centre, kib(s.max) + hi * 0.03),
            ("sans-serif", 15)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Bottom)),
        )])?;
    }
    root.present()?;
    Ok(())
}
