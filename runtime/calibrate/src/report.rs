//! The calibration report: `REPORT.md`, `calibration.json` and an SVG plot of accuracy vs MACs.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::pipeline::{CalibrationReport, FrontPoint};
use crate::error::CalibrateError;
use crate::outcome::shipped_accuracy;

fn io(path: &Path, e: impl ToString) -> CalibrateError {
    CalibrateError::Io { path: path.into(), reason: e.to_string() }
}

/// Test accuracy (%) against MACs ratio for every front, the shipped table and single exits.
pub fn plot(report: &CalibrationReport, path: &Path) -> Result<(), CalibrateError> {
    let root = SVGBackend::new(path, (860, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| io(path, e))?;
    let all: Vec<&FrontPoint> = report.fronts.values().flatten().collect();
    let full = report.full_accuracy.get("test").copied().unwrap_or(1.0) * 100.0;
    let lo =
        all.iter().map(|p| p.test_accuracy * 100.0).filter(|a| *a > full - 12.0).fold(full, f64::min) - 0.5;
    let mut chart = ChartBuilder::on(&root)
        .caption("Test accuracy vs MACs (relative to the full model)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0f64..1.05f64, lo..(full + 0.6))
        .map_err(|e| io(path, e))?;
    chart
        .configure_mesh()
        .x_desc("MACs ratio")
        .y_desc("test accuracy (%)")
        .draw()
        .map_err(|e| io(path, e))?;
    let series = |pts: &[FrontPoint]| -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> =
            pts.iter().map(|p| (p.test_macs_ratio, p.test_accuracy * 100.0)).collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    if let Some(single) = report.fronts.get("single") {
        chart
            .draw_series(
                series(single).into_iter().map(|p| Circle::new(p, 2, RGBColor(170, 170, 170).filled())),
            )
            .map_err(|e| io(path, e))?
            .label("single exits")
            .legend(|(x, y)| Circle::new((x + 10, y), 3, RGBColor(170, 170, 170).filled()));
    }
    let styles = [
        ("uniform", RGBColor(44, 160, 44)),
        ("onepass", RGBColor(255, 127, 14)),
        ("ours", RGBColor(31, 119, 180)),
    ];
    for (name, color) in styles {
        let Some(front) = report.fronts.get(name) else { continue };
        chart
            .draw_series(LineSeries::new(series(front), color.stroke_width(2)))
            .map_err(|e| io(path, e))?
            .label(match name {
                "ours" => "ours (exact coordinate search)",
                "onepass" => "onepass (DyCE)",
                _ => "same threshold everywhere",
            })
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .draw_series(series(&report.shipped).into_iter().map(|p| Cross::new(p, 6, BLACK.stroke_width(2))))
        .map_err(|e| io(path, e))?
        .label("shipped table")
        .legend(|(x, y)| Cross::new((x + 10, y), 5, BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| io(path, e))?;
    root.present().map_err(|e| io(path, e))
}

/// Writes `REPORT.md`, `calibration.json` and `accuracy_vs_macs.svg` into `dir`.
pub fn write(report: &CalibrationReport, extra: &str, dir: &Path) -> Result<(), CalibrateError> {
    let json = dir.join("calibration.json");
    let text = serde_json::to_string(report).map_err(|e| io(&json, e))?;
    std::fs::write(&json, text).map_err(|e| io(&json, e))?;
    plot(report, &dir.join("accuracy_vs_macs.svg"))?;
    let md = dir.join("REPORT.md");
    std::fs::write(&md, markdown(report, extra)).map_err(|e| io(&md, e))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v))
}

/// The report's text.
pub fn markdown(r: &CalibrationReport, extra: &str) -> String {
    let mut s = String::new();
    let full_test = r.full_accuracy.get("test").copied().unwrap_or(f64::NAN);
    let full_cal = r.full_accuracy.get("calibration").copied().unwrap_or(f64::NAN);
    let _ = writeln!(s, "# Calibration report: {}\n", r.config.name);
    let _ = writeln!(s, "{extra}");
    let _ = writeln!(s, "Samples: {:?}. Exit types: {}.\n", r.sizes, r.types.join(", "));
    let _ = writeln!(
        s,
        "Full model: **{:.2}%** test accuracy ({:.2}% on calibration).\n",
        100.0 * full_test,
        100.0 * full_cal
    );
    let _ = writeln!(s, "![accuracy vs MACs](accuracy_vs_macs.svg)\n");
    let _ = writeln!(s, "## MACs saved on the test split\n");
    let _ = writeln!(
        s,
        "Each method's configuration for a drop is picked on the calibration split (its cheapest \
         configuration within that drop of the full model there) and measured on the test split, \
         which no choice in this calibration has seen.\n"
    );
    let _ = writeln!(s, "| method | ≤ 0.0 pt drop | ≤ 0.5 pt drop | ≤ 1.0 pt drop | ≤ 2.0 pt drop |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for m in ["ours", "onepass", "uniform"] {
        let _ = writeln!(
            s,
            "| {m} | {} | {} | {} | {} |",
            pct(r.macs_saved_at(m, 0.0)),
            pct(r.macs_saved_at(m, 0.005)),
            pct(r.macs_saved_at(m, 0.01)),
            pct(r.macs_saved_at(m, 0.02))
        );
    }
    recipes_section(&mut s, r);
    compare_section(&mut s, r);
    let _ = writeln!(s, "\n## Shipped configurations\n");
    let size = |split: &str| r.sizes.get(split).copied().unwrap_or(0);
    let _ = writeln!(
        s,
        "Chosen on the calibration split. `configs.json` ships each one's MACs ratio on the calibration \
         split and, as `expected_accuracy`, the lower of its one-sided 95% lower bounds (Wilson) on the \
         calibration split ({} images) and the test split ({} images), with `expected_disagreement` from \
         the same split: the floor and the live estimates start from it, so it must hold on traffic \
         drawn like either split. No choice reads the test split.\n",
        size("calibration"),
        size("test"),
    );
    let _ = writeln!(
        s,
        "| # | MACs ratio (test) | test accuracy | calibration accuracy | expected_accuracy (shipped) | bound on | cal − test gap | exits |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for (i, p) in r.shipped.iter().enumerate() {
        let exits: Vec<String> = p
            .config
            .exits
            .iter()
            .enumerate()
            .filter_map(|(pos, e)| e.map(|(t, th)| format!("{pos}:{}@{th:.3}", r.types[t])))
            .collect();
        let (shipped, on) =
            shipped_accuracy((p.calibration_accuracy, size("calibration")), (p.test_accuracy, size("test")));
        let _ = writeln!(
            s,
            "| {i} | {:.3} | {:.2}% | {:.2}% | {:.2}% | {} | {:+.2} pt | {} |",
            p.test_macs_ratio,
            100.0 * p.test_accuracy,
            100.0 * p.calibration_accuracy,
            100.0 * shipped,
            on.name(),
            100.0 * (p.calibration_accuracy - p.test_accuracy),
            if exits.is_empty() { "none (full model)".into() } else { exits.join(" ") }
        );
    }
    let _ = writeln!(s, "\n## Time taken (seconds)\n");
    for (k, v) in &r.seconds {
        let _ = writeln!(s, "- {k}: {v:.1}");
    }
    s
}

/// Budgets (onepass configs' MACs ratios) at which ours is less accurate than onepass, on one
/// split: `(budgets, worse, largest shortfall in points, worst budget)`.
pub fn ours_vs_onepass(r: &CalibrationReport, test: bool) -> (usize, usize, f64, f64) {
    // At equal charged cost when exits were charged more than their MACs: that is what both
    // searches minimised.
    let get = |p: &FrontPoint| match (test, p.cost_ratios) {
        (true, Some(c)) => (c.test, p.test_accuracy),
        (false, Some(c)) => (c.calibration, p.calibration_accuracy),
        (true, None) => (p.test_macs_ratio, p.test_accuracy),
        (false, None) => (p.calibration_macs_ratio, p.calibration_accuracy),
    };
    let (Some(ours), Some(one)) = (r.fronts.get("ours"), r.fronts.get("onepass")) else {
        return (0, 0, 0.0, f64::NAN);
    };
    let (mut worse, mut gap, mut at) = (0, 0.0f64, f64::NAN);
    for p in one {
        let (m, a) = get(p);
        let best = ours
            .iter()
            .map(get)
            .filter(|(om, _)| *om <= m + 1e-12)
            .map(|(_, oa)| oa)
            .fold(f64::NAN, f64::max);
        let short = if best.is_nan() { a } else { a - best };
        if short > 1e-12 {
            worse += 1;
            if short > gap {
                gap = short;
                at = m;
            }
        }
    }
    (one.len(), worse, 100.0 * gap, at)
}

fn compare_section(s: &mut String, r: &CalibrationReport) {
    let charged = r.config.exit_cost.values().any(|&f| f != 1.0);
    let model = r.config.exit_cost_model.as_ref().filter(|_| !charged);
    let unit = if charged || model.is_some() { "cost" } else { "MACs" };
    let _ = writeln!(s, "\n## Ours against onepass at equal {unit}\n");
    if let Some(m) = model {
        let _ = writeln!(
            s,
            "Both searches charged each exit its measured time on this machine ({}, {} kernels, one \
             thread): a fixed time per call spread over {} rows plus a time per row, in backbone MACs \
             at {:.4} ns per MAC (`exit_cost.json`), so they are compared at equal charged cost; every \
             other figure in this report is in true MACs.\n",
            m.machine.cpu, m.machine.isa, m.rows_per_call, m.backbone_ns_per_mac
        );
    }
    if charged {
        let costs: Vec<String> = r.config.exit_cost.iter().map(|(t, f)| format!("{t} ×{f}")).collect();
        let _ = writeln!(
            s,
            "Both searches charged each exit MAC by its measured time against a backbone MAC ({}; \
             `dyce bench --profile`), so they are compared at equal charged cost; every other \
             figure in this report is in true MACs.\n",
            costs.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "For every configuration on the onepass front, the best configuration of ours that costs at most \
         as much ({unit}) on the same split:\n"
    );
    let _ = writeln!(
        s,
        "| split | onepass budgets | ours less accurate at | largest shortfall | at {unit} ratio |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (name, test) in [("calibration (searched)", false), ("test (held out)", true)] {
        let (n, worse, gap, at) = ours_vs_onepass(r, test);
        let at = if at.is_nan() { "-".into() } else { format!("{at:.3}") };
        let _ = writeln!(s, "| {name} | {n} | {worse} | {gap:.2} pt | {at} |");
    }
    let _ = writeln!(
        s,
        "\nOn the calibration split ours searches exactly what it is scored on, so it should never be \
         behind; on the test split the two differ by how well each one's thresholds generalise, and \
         the row above says where onepass comes out ahead."
    );
}

/// The exit-training recipes tried, and which one's heads ship.
fn recipes_section(s: &mut String, r: &CalibrationReport) {
    if r.recipes.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n## Exit-training recipes\n");
    let _ = writeln!(
        s,
        "Every recipe trained the same exit types from the same seed; each one's heads were searched \
         (ours) and scored by the MACs its cheapest configuration within a drop saves on the \
         calibration split. The heads of the best at ≤ 0.5 pt (then ≤ 1.0, 0.0, 2.0 pt) ship. The \
         test columns measure the same configurations on the held-out split, for reading only. \
         (With heads reused by `--exits-from`, this table is the one recorded when they were \
         trained.)\n"
    );
    let _ = writeln!(
        s,
        "| recipe | calibration ≤ 0.0 / 0.5 / 1.0 / 2.0 pt | test ≤ 0.0 / 0.5 / 1.0 / 2.0 pt | training | shipped |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    let cols = |m: &std::collections::BTreeMap<String, f64>| {
        ["0.0", "0.5", "1.0", "2.0"].iter().map(|k| pct(m.get(*k).copied())).collect::<Vec<_>>().join(" / ")
    };
    for x in &r.recipes {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} s | {} |",
            x.recipe,
            cols(&x.calibration_saved),
            cols(&x.test_saved),
            x.seconds,
            if x.chosen { "**yes**" } else { "" }
        );
    }
}
