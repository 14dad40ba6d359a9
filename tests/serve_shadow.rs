//! Shadow checks end to end: `dyce serve` (embedded `fmnist-resnet20`) on the cheapest config
//! with every answered image shadow-checked; on clean Fashion-MNIST test images the served
//! config agrees with the full model on nearly every image, and the counters, the estimate and
//! its bound appear on `/v1/accuracy`, `/v1/load` and `/metrics`.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{get, post};
use dyce_data::fashion_mnist as data;

/// Images per request: small, so the shadow queue (64) keeps up between requests.
const PER_REQUEST: usize = 16;

fn body(test: &data::Images, lo: usize, hi: usize) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"{{"inputs":[{{"name":"input","datatype":"UINT8","shape":[{},1,28,28],"data":["#,
        hi - lo
    );
    let pixels: Vec<String> = (lo..hi).flat_map(|i| test.image(i).iter().map(|p| p.to_string())).collect();
    s.push_str(&pixels.join(","));
    s.push_str(r#"]}],"outputs":[{"name":"label"}]}"#);
    s
}

#[test]
#[ignore = "needs the dataset-fashion-mnist package (scripts/ci/setup.sh)"]
fn every_image_shadow_checked_agrees_on_clean_data_and_shows_in_every_view() {
    let test = data::load(Path::new(data::DEFAULT_DIR)).expect("Fashion-MNIST test split").test;
    let s = common::serve_with(
        &["--shadow-rate", "1", "--initial-config", "c00", "--max-batch", "16"],
        Duration::from_secs(120),
    );
    // Warm-up batches (zeros) are not traffic: nothing is sampled from them, even from the last
    // one, whose answers go out before the runtime turns sampling on.
    std::thread::sleep(Duration::from_millis(300));
    let (_, idle) = get(&format!("{}/v1/accuracy", s.admin));
    assert_eq!(
        (idle["checked_total"].as_u64(), idle["dropped_total"].as_u64()),
        (Some(0), Some(0)),
        "{idle}"
    );
    let images = 800;
    // Shadow passes run when the model thread is idle: after each request, wait until its
    // samples are accounted for (checked or dropped), so the small shadow queue keeps up.
    let accounted = |sent: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, r) = get(&format!("{}/v1/accuracy", s.admin));
            assert_eq!(status, 200, "{r}");
            let done = r["checked_total"].as_u64().unwrap() + r["dropped_total"].as_u64().unwrap();
            if done >= sent || Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let mut report = serde_json::Value::Null;
    for lo in (0..images).step_by(PER_REQUEST) {
        let (status, resp) = post(
            &format!("{}/v2/models/fmnist-resnet20/infer", s.data),
            body(&test, lo, lo + PER_REQUEST).as_bytes(),
        );
        assert_eq!(status, 200, "{resp}");
        report = accounted((lo + PER_REQUEST) as u64);
    }
    let checked = report["checked_total"].as_u64().unwrap();
    assert_eq!(report["dropped_total"], 0, "{report}");
    assert_eq!(checked, images as u64, "{report}");
    assert_eq!(report["shadow_rate"], 1.0);
    let configs = report["configs"].as_object().unwrap();
    let table: serde_json::Value =
        serde_json::from_str(include_str!("../runtime/models/fmnist-resnet20/configs.json")).unwrap();
    assert_eq!(configs.len(), 16, "every config of the table gets samples: {report}");
    let full = &configs["full"];
    assert_eq!(full["disagreement"], 0.0, "the full model agrees with itself");
    assert_eq!(full["samples_total"].as_u64().unwrap(), checked);
    for (id, c) in configs {
        // Clean data leaves every config close to the full model.
        let d = c["disagreement"].as_f64().unwrap();
        assert!(d <= 0.08, "{id} disagrees with the full model on {d} of clean images");
        // Anchored on the configuration's own offline numbers: the estimate never exceeds its
        // expected_accuracy and equals it while disagreement stays at the calibration share.
        let (est, lb) = (c["estimate"].as_f64().unwrap(), c["lower_bound"].as_f64().unwrap());
        let entry = table["configs"].as_array().unwrap().iter().find(|e| e["id"] == id.as_str()).unwrap();
        let (acc, d_cal) =
            (entry["expected_accuracy"].as_f64().unwrap(), entry["expected_disagreement"].as_f64());
        assert!(lb <= est && est <= acc + 1e-12, "{id}: {c}");
        if let Some(d_cal) = d_cal.filter(|&d_cal| d <= d_cal) {
            assert!((est - acc).abs() < 1e-12, "{id} at {d} <= {d_cal}: {c}");
        }
        assert!(c["disagreement_upper"].as_f64().unwrap() >= d);
    }
    // The cheapest config disagrees more often than the richest early-exit one.
    assert!(configs["c00"]["disagreement"].as_f64() >= configs["c14"]["disagreement"].as_f64());

    let (_, load) = get(&format!("{}/v1/load", s.admin));
    assert_eq!(load["live_accuracy"]["configs"]["c00"]["samples_total"].as_u64().unwrap(), checked);

    let metrics = common::request("GET", &format!("{}/metrics", s.metrics), &[], b"").1;
    let text = metrics.as_str().unwrap();
    let sum = |name: &str, config: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(&format!("config=\"{config}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(sum("dyce_shadow_samples_total{", "c00"), checked as f64, "{text}");
    let agreed = sum("dyce_shadow_agreements_total{", "c00");
    assert!(agreed >= 0.92 * checked as f64 && agreed <= checked as f64, "{agreed} of {checked}");
    assert!(text.contains("dyce_shadow_samples_total{config=\"c00\",position=\"0\"}"), "{text}");
    assert!(text.contains("dyce_shadow_dropped_total "), "{text}");
    assert!(sum("dyce_live_accuracy_lower_bound{", "c00") > 0.5, "{text}");
    assert!(sum("dyce_live_accuracy_estimate{", "c00") > 0.8, "{text}");
}

#[test]
fn without_shadow_checks_the_accuracy_route_says_why() {
    let s = common::serve_with(&["--shadow-rate", "0", "--feedback-capacity", "0"], Duration::from_secs(120));
    let (status, body) = get(&format!("{}/v1/accuracy", s.admin));
    assert_eq!(status, 404);
    let why = body["error"].as_str().unwrap();
    assert!(why.contains("--shadow-rate") && why.contains("--feedback-capacity"), "{body}");
    let (_, load) = get(&format!("{}/v1/load", s.admin));
    assert!(load.get("live_accuracy").is_none(), "{load}");
    // Feedback alone (its default) keeps the route: no shadow samples, the feedback totals.
    let s = common::serve_with(&["--shadow-rate", "0"], Duration::from_secs(120));
    let (status, body) = get(&format!("{}/v1/accuracy", s.admin));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["shadow_rate"].as_f64(), body["checked_total"].as_u64()),
        (Some(0.0), Some(0)),
        "{body}"
    );
    assert_eq!(body["feedback"]["capacity"], 100_000, "{body}");
}

/// The shadow pass of the embedded model on real test images gives every config's answer exactly
/// as the executor does (the proptest in runtime/tests/shadow.rs covers a tiny random model).
#[test]
#[ignore = "needs the dataset-fashion-mnist package (scripts/ci/setup.sh)"]
fn shadow_answers_of_the_embedded_model_are_the_served_ones() {
    use dyce_runtime::engine::shadow::{needed_heads, shadow_pass};
    use dyce_runtime::engine::{default_pool, run_batch, simulate, FastBackend, ResolvedConfig};
    use dyce_runtime::model::Bundle;
    let test = data::load(Path::new(data::DEFAULT_DIR)).expect("Fashion-MNIST test split").test;
    let bundle = Bundle::embedded().unwrap();
    let configs: Vec<ResolvedConfig> =
        bundle.configs.configs.iter().map(|e| ResolvedConfig::resolve(&bundle, e, 0).unwrap()).collect();
    let needed = needed_heads(&bundle, &configs);
    let n = 96;
    let raw: Vec<f64> = test.pixels[..n * data::PIXELS].iter().map(|&p| f64::from(p)).collect();
    let x = dyce_runtime::input::normalise(&bundle.manifest.input, "UINT8", &raw).unwrap();
    let mut be =
        FastBackend::new(&bundle.backbone, bundle.manifest.input.shape, default_pool(None).unwrap()).unwrap();
    // In passes of 4, as the model thread runs them.
    let mut shadow = Vec::new();
    for lo in (0..n).step_by(4) {
        shadow.extend(
            shadow_pass(&bundle, &mut be, &needed, &x[lo * data::PIXELS..(lo + 4) * data::PIXELS], 4)
                .unwrap(),
        );
    }
    for cfg in &configs {
        let real = run_batch(&bundle, &mut be, cfg, &x, n).unwrap();
        let differ = (0..n).filter(|&i| simulate(cfg, &shadow[i]) != (real[i].exit, real[i].label)).count();
        assert_eq!(
            differ, 0,
            "config {}: {differ} of {n} simulated answers differ from the served ones",
            cfg.id
        );
    }
}
