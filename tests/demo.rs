//! `dyce demo` at a tenth of its size on the embedded model: the report is written and complete.

use std::process::Command;

use serde_json::Value;

#[test]
#[ignore = "needs the dataset-fashion-mnist package (scripts/ci/setup.sh)"]
fn a_short_demo_writes_a_complete_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let run = Command::new(env!("CARGO_BIN_EXE_dyce"))
        .args(["demo", "--scale", "0.1", "--out", out.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .output()
        .expect("dyce runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{stderr}");
    // The last line is where the report is.
    assert_eq!(stdout.trim().lines().last(), Some(out.join("REPORT.md").to_str().unwrap()), "{stdout}");
    // The live view: the load generator's line every second of every run.
    assert!(stderr.matches("] offered ").count() >= 3 * 3, "{stderr}");
    for name in ["static full", "static c00", "dyce"] {
        assert!(stderr.contains(&format!(": {name} ==")), "{name}: {stderr}");
        assert!(stdout.lines().any(|l| l.starts_with(&format!("| {name} |"))), "{name}: {stdout}");
    }

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{report}");
    for r in rows {
        for share in ["attainment", "burst_attainment", "shed_rate", "accuracy", "macs_saved"] {
            let v = r[share].as_f64().unwrap_or_else(|| panic!("{share}: {r}"));
            assert!((0.0..=1.0).contains(&v), "{share}: {r}");
        }
    }
    // Only the controlled run saves MACs by switching, and it has a reaction time.
    assert_eq!(rows[0]["macs_saved"], 0.0);
    assert!(rows[1]["macs_saved"].as_f64().unwrap() > 0.5, "c00 runs a third of the MACs");
    assert!(rows[2]["reaction"].is_object());
    assert!(report["capacity"]["full_per_second"].as_f64().unwrap() > 0.0);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for r in runs {
        assert!(!r["windows"].as_array().unwrap().is_empty());
        assert!(!r["config_samples"].as_array().unwrap().is_empty(), "the active config was polled");
    }
    assert_eq!(report["simulation"]["rows"].as_array().unwrap().len(), 4);
    // No --peak: the burst is what the cheapest config carries at the policy's 80% target.
    let sc = &report["scenario"];
    assert_eq!(sc["peak_choice"]["rule"], "absorbable", "{sc}");
    let (full, cheap) = (
        report["capacity"]["full_per_second"].as_f64().unwrap(),
        report["capacity"]["cheapest_per_second"].as_f64().unwrap(),
    );
    let expect = ((0.8 * cheap / full * 100.0).floor() / 100.0).min(2.0);
    assert!((sc["peak"].as_f64().unwrap() - expect).abs() < 1e-9, "{sc} vs {expect}");
    // Where the cores went during the burst: the model worked in every run.
    for r in runs {
        let cores = &r["cpu_burst_cores"];
        assert!(cores["model"].as_f64().is_some_and(|m| m > 0.0), "{}: {cores}", r["name"]);
    }

    let md = std::fs::read_to_string(out.join("REPORT.md")).unwrap();
    let headline = md.split("## Headline").nth(1).unwrap().split("\n\n").nth(1).unwrap();
    assert_eq!(headline.lines().count(), 2 + 3, "header, rule and three rows: {headline}");
    assert!(md.contains("is the most this policy can absorb"), "the report says how the burst was chosen");
    assert!(md.contains("Cores busy during the burst"), "{md}");
    for file in ["timeline.svg", "autoscaling.svg"] {
        let svg = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{file}");
    }
    for key in ["full", "cheapest", "dyce"] {
        let csv = std::fs::read_to_string(out.join(format!("requests-{key}.csv"))).unwrap();
        assert!(csv.lines().count() > 10, "{key}");
    }
}
