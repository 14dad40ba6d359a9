//! The report's SVGs: the three live runs second by second, and the simulated autoscaling.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::analysis::{RunData, Window};
use super::simulation::SimOutcome;

/// One colour per run, in run order (full, cheapest, dyce), then more for the simulation.
const COLORS: [RGBColor; 4] =
    [RGBColor(214, 39, 40), RGBColor(255, 127, 14), RGBColor(31, 119, 180), RGBColor(44, 160, 44)];

/// A run's series for the timeline.
pub struct RunSeries<'a> {
    /// The run.
    pub run: &'a RunData,
    /// Its windows.
    pub windows: &'a [Window],
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the SVG: {e}")
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A panel with `x` seconds and `y` range, the burst shaded, mesh drawn; `draw` adds series.
fn panel(
    area: &Area,
    title: &str,
    y_desc: &str,
    x: f64,
    y: (f64, f64),
    burst: (f64, f64),
    draw: impl FnOnce(&mut ChartContext<SVGBackend, Cartesian2d<RangedCoordf64, RangedCoordf64>>) -> Result<()>,
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .margin_right(24)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x, y.0..y.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(y_desc)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(burst.0, y.0), (burst.1, y.1)],
            RGBColor(235, 235, 235).filled(),
        )))
        .map_err(err)?;
    draw(&mut chart)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// Points of a step function from `(t, value)` changes, held until `end`.
fn steps(points: &[(f64, f64)], end: f64) -> Vec<(f64, f64)> {
    let mut v = Vec::new();
    for (i, &(t, y)) in points.iter().enumerate() {
        let next = points.get(i + 1).map_or(end, |p| p.0);
        v.extend([(t.max(0.0), y), (next.min(end), y)]);
    }
    v
}

/// `timeline.svg`: offered load and goodput, p99 against the target, active config and real
/// accuracy, second by second, for every run; the burst is shaded.
pub fn timeline(
    path: &Path,
    runs: &[RunSeries],
    slo_ms: f64,
    duration: f64,
    burst: (f64, f64),
    rank: &dyn Fn(&str) -> Option<usize>,
    configs: usize,
) -> Result<()> {
    let root = SVGBackend::new(path, (1000, 1300)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((4, 1));
    let mid = |w: &Window| w.second as f64 + 0.5;
    let offered: Vec<(f64, f64)> = runs
        .first()
        .map(|r| r.windows.iter().map(|w| (mid(w), w.offered as f64)).collect())
        .unwrap_or_default();
    let top = offered.iter().map(|p| p.1).fold(1.0, f64::max) * 1.15;
    panel(
        &areas[0],
        "Offered load and goodput (answers within the target)",
        "requests/s",
        duration,
        (0.0, top),
        burst,
        |c| {
            c.draw_series(LineSeries::new(offered.clone(), BLACK.stroke_width(2)))
                .map_err(err)?
                .label("offered")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
            for (i, r) in runs.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                c.draw_series(LineSeries::new(
                    r.windows.iter().map(|w| (mid(w), w.good as f64)),
                    color.stroke_width(2),
                ))
                .map_err(err)?
                .label(format!("goodput, {}", r.run.name))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
            Ok(())
        },
    )?;
    // Windows whose p99 is infinite (more than 1 % of requests unanswered) sit on the top edge.
    let cap = 4.0 * slo_ms;
    panel(
        &areas[1],
        "p99 latency per second (unanswered requests count as late)",
        "ms",
        duration,
        (0.0, cap),
        burst,
        |c| {
            c.draw_series(LineSeries::new([(0.0, slo_ms), (duration, slo_ms)], BLACK.stroke_width(1)))
                .map_err(err)?
                .label(format!("target {slo_ms:.0} ms"))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
            for (i, r) in runs.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let pts = r.windows.iter().map(|w| (mid(w), w.p99_ms.unwrap_or(cap).min(cap)));
                c.draw_series(LineSeries::new(pts, color.stroke_width(2)))
                    .map_err(err)?
                    .label(r.run.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
            Ok(())
        },
    )?;
    let y_cfg = (-0.5, configs as f64 - 0.5);
    panel(
        &areas[2],
        "Active config (rank in the table: 0 = cheapest, top = full model)",
        "config rank",
        duration,
        y_cfg,
        burst,
        |c| {
            for (i, r) in runs.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let pts: Vec<(f64, f64)> =
                    r.run.samples.iter().filter_map(|s| Some((s.t, rank(&s.id)? as f64))).collect();
                c.draw_series(LineSeries::new(steps(&pts, duration), color.stroke_width(2)))
                    .map_err(err)?
                    .label(r.run.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
            Ok(())
        },
    )?;
    let accs: Vec<f64> = runs.iter().flat_map(|r| r.windows.iter().filter_map(|w| w.accuracy)).collect();
    let lo = accs.iter().copied().fold(1.0, f64::min).min(0.85) * 100.0;
    panel(
        &areas[3],
        "Real accuracy per second (answered images)",
        "accuracy (%)",
        duration,
        (lo, 100.0),
        burst,
        |c| {
            for (i, r) in runs.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let pts = r.windows.iter().filter_map(|w| Some((mid(w), w.accuracy? * 100.0)));
                c.draw_series(LineSeries::new(pts, color.stroke_width(2)))
                    .map_err(err)?
                    .label(r.run.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
            Ok(())
        },
    )?;
    root.present().map_err(err)
}

/// `autoscaling.svg`: the simulated offered load and every setup's replicas over time.
pub fn autoscaling(path: &Path, sim: &SimOutcome) -> Result<()> {
    let root = SVGBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((2, 1));
    let d = sim.seconds;
    let load: Vec<(f64, f64)> =
        sim.offered.iter().enumerate().map(|(k, r)| (k as f64, r / sim.replica_capacity)).collect();
    let top = load.iter().map(|p| p.1).fold(1.0, f64::max) * 1.15;
    panel(
        &areas[0],
        "Simulated offered load",
        "× one replica's capacity",
        d,
        (0.0, top),
        (0.0, 0.0),
        |c| {
            c.draw_series(LineSeries::new(load.clone(), BLACK.stroke_width(1)))
                .map_err(err)?
                .label("offered")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
            Ok(())
        },
    )?;
    let most = sim.rows.iter().map(|r| r.peak_replicas).max().unwrap_or(1) as f64 + 1.0;
    let rows = sim.rows.len() as u32;
    panel(
        &areas[1],
        "Replicas (serving or starting) after each autoscaler sync",
        "replicas",
        d,
        (0.0, most),
        (0.0, 0.0),
        |c| {
            for (i, r) in sim.rows.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let pts: Vec<(f64, f64)> = r.replicas.iter().map(|&(t, n)| (t, n as f64)).collect();
                // Setups often agree for minutes: earlier ones are drawn wider so later ones
                // do not hide them.
                let width = 1 + 2 * (rows - 1 - i as u32);
                c.draw_series(LineSeries::new(steps(&pts, d), color.stroke_width(width)))
                    .map_err(err)?
                    .label(r.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
                    });
            }
            Ok(())
        },
    )?;
    root.present().map_err(err)
}
