//! The report directory: `REPORT.md`, `report.json`, `timeline.svg`, `autoscaling.svg` and one
//! per-request log per run (`requests-<run>.csv`, the `dyce load --log` format).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::analysis::{self, Costs, Row, Window};
use super::plot::{self, RunSeries};
use super::report_input::Input;
use crate::tools::load::record::{LogFormat, LogWriter};

/// An acceptance target and how the run fared against it.
#[derive(Debug, Clone)]
struct Check {
    target: String,
    measured: String,
    met: bool,
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v))
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2} s"))
}

/// The headline table in Markdown (also printed at the end of the run).
fn headline(rows: &[Row]) -> String {
    let mut s = String::from(
        "| run | SLO attainment | during burst | goodput (req/s) | shed | failed | real accuracy | MACs saved | reaction: decided / applied |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let reaction = r
            .reaction
            .as_ref()
            .map_or("-".into(), |x| format!("{} / {}", secs(x.decided_s), secs(x.applied_s)));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            r.name,
            pct(Some(r.attainment)),
            pct(Some(r.burst_attainment)),
            r.goodput,
            pct(Some(r.shed_rate)),
            pct(Some(r.failed_rate)),
            pct(r.accuracy),
            pct(r.macs_saved),
            reaction
        );
    }
    s
}

fn checks(rows: &[Row]) -> Vec<Check> {
    let (full, dyce) = (&rows[0], &rows[rows.len() - 1]);
    let mut v = vec![
        Check {
            target: "dyce: SLO attainment ≥ 99% over the run".into(),
            measured: pct(Some(dyce.attainment)),
            met: dyce.attainment >= 0.99,
        },
        Check {
            target: format!("{}: SLO attainment < 50% during the burst", full.name),
            measured: pct(Some(full.burst_attainment)),
            met: full.burst_attainment < 0.5,
        },
    ];
    if let (Some(a), Some(b)) = (dyce.accuracy, full.accuracy) {
        v.push(Check {
            target: format!("dyce: real accuracy within 1 point of {} ({})", full.name, pct(Some(b))),
            measured: format!("{} ({:+.2} points)", pct(Some(a)), 100.0 * (a - b)),
            met: b - a <= 0.01,
        });
    }
    let reaction = dyce.reaction.as_ref();
    for (what, v_s) in
        [("decided", reaction.and_then(|r| r.decided_s)), ("applied", reaction.and_then(|r| r.applied_s))]
    {
        v.push(Check {
            target: format!("dyce: degrade {what} ≤ 1 s after the burst starts"),
            measured: secs(v_s),
            met: v_s.is_some_and(|s| s <= 1.0),
        });
    }
    v
}

/// Writes the report into `dir`; returns the headline table.
pub fn write(dir: &Path, input: &Input) -> Result<String> {
    let sc = input.scenario;
    let spec = &input.policy.spec;
    let slo_s = spec.objective.latency.threshold.secs();
    let table = &input.bundle.configs;
    let rank = |id: &str| table.configs.iter().position(|c| c.id == id);
    let costs = Costs::new(&input.bundle.manifest, table);
    let windows: Vec<Vec<Window>> = input.runs.iter().map(|r| analysis::windows(&r.records, slo_s)).collect();
    let rows: Vec<Row> = input
        .runs
        .iter()
        .zip(&windows)
        .map(|(r, w)| analysis::row(r, w, sc.burst, sc.duration, &costs, &rank))
        .collect();
    let checks = checks(&rows);
    for r in input.runs {
        let path = dir.join(format!("requests-{}.csv", r.key));
        let mut log = LogWriter::create(&path, Some(LogFormat::Csv))?;
        for rec in &r.records {
            log.write(rec)?;
        }
        log.finish()?;
    }
    let series: Vec<RunSeries> =
        input.runs.iter().zip(&windows).map(|(run, w)| RunSeries { run, windows: w }).collect();
    plot::timeline(
        &dir.join("timeline.svg"),
        &series,
        slo_s * 1e3,
        sc.duration,
        sc.burst,
        &rank,
        table.configs.len(),
    )?;
    plot::autoscaling(&dir.join("autoscaling.svg"), input.sim)?;
    let json = json!({
        "scenario": sc.json(),
        "model": input.bundle.manifest.name,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "policy": {
            "name": input.policy.metadata.name,
            "latency_quantile": spec.objective.latency.quantile,
            "latency_threshold_ms": slo_s * 1e3,
            "accuracy_floor": spec.accuracy_floor,
            "max_accuracy_drop": spec.max_accuracy_drop,
        },
        "capacity": input.capacity.json(),
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "checks": checks.iter().map(|c| json!({"target": c.target, "measured": c.measured, "met": c.met})).collect::<Vec<_>>(),
        "runs": input.runs.iter().zip(&windows).map(|(r, w)| json!({
            "name": r.name, "key": r.key, "initial_config": r.initial, "summary": r.summary,
            "windows": w.iter().map(Window::json).collect::<Vec<_>>(),
            "config_samples": r.samples.iter().map(|s| s.json()).collect::<Vec<_>>(),
            "changes": r.changes.iter().map(|c| c.json()).collect::<Vec<_>>(),
            "cpu_burst_cores": r.cpu_burst.map(|c| c.json()),
        })).collect::<Vec<_>>(),
        "simulation": input.sim.json(),
    });
    let path = dir.join("report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let head = headline(&rows);
    let md = super::report_md::markdown(input, &head, &checks_md(&checks), &rows);
    let path = dir.join("REPORT.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    Ok(head)
}

fn checks_md(checks: &[Check]) -> String {
    let mut s = String::from("| target | measured | |\n|---|---|---|\n");
    for c in checks {
        let _ =
            writeln!(s, "| {} | {} | {} |", c.target, c.measured, if c.met { "met" } else { "**missed**" });
    }
    s
}
