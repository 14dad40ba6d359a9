//! The served default model answers Fashion-MNIST's whole test split exactly as the offline
//! evaluation does: `dyce serve` (embedded `fmnist-resnet20`, full config) over OIP v2 against
//! the same bundle run in-process, and both against the calibration report's 93.39%.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use common::{post, Server};
use dyce_data::{augment, fashion_mnist as data};
use dyce_runtime::engine::{default_pool, run_batch, FastBackend, ResolvedConfig};
use dyce_runtime::input;
use dyce_runtime::model::Bundle;

/// Test images correct under the full model in `runtime/models/fmnist-resnet20/REPORT.md`
/// (93.39% of 10,000).
const REPORTED_CORRECT: usize = 9339;

/// Images per request, and so per batch on both paths.
const PER_REQUEST: usize = 200;

/// `dyce serve` with no `--model` (the embedded default model), ready within 120 s.
fn serve_embedded(extra: &[&str]) -> Server {
    common::serve_with(extra, Duration::from_secs(120))
}

/// An OIP v2 infer request of test images `lo..hi` as UINT8 JSON, asking for the outputs the
/// test reads.
fn body(test: &data::Images, lo: usize, hi: usize) -> String {
    let mut s = String::with_capacity((hi - lo) * data::PIXELS * 4 + 200);
    let _ = write!(
        s,
        r#"{{"id":"acc{lo}","inputs":[{{"name":"input","datatype":"UINT8","shape":[{},1,28,28],"data":["#,
        hi - lo
    );
    for i in lo..hi {
        for (j, p) in test.image(i).iter().enumerate() {
            if i > lo || j > 0 {
                s.push(',');
            }
            let _ = write!(s, "{p}");
        }
    }
    s.push_str(r#"]}],"outputs":[{"name":"label"},{"name":"exit_position"}]}"#);
    s
}

fn ints(resp: &serde_json::Value, name: &str) -> Vec<i64> {
    let out = resp["outputs"].as_array().unwrap().iter().find(|o| o["name"] == name);
    let data = out.unwrap_or_else(|| panic!("no {name} output in {resp}"))["data"].as_array().unwrap();
    data.iter().map(|v| v.as_i64().unwrap()).collect()
}

/// Labels and exit positions of the whole test split through OIP v2, `PER_REQUEST` images per
/// request; every answer must come from `config`.
fn served_answers(s: &Server, model: &str, config: &str, test: &data::Images) -> (Vec<i64>, Vec<i64>) {
    let url = format!("{}/v2/models/{model}/infer", s.data);
    let (mut labels, mut exits) = (Vec::with_capacity(test.len()), Vec::with_capacity(test.len()));
    for lo in (0..test.len()).step_by(PER_REQUEST) {
        let hi = (lo + PER_REQUEST).min(test.len());
        let (status, resp) = post(&url, body(test, lo, hi).as_bytes());
        assert_eq!(status, 200, "{resp}");
        assert_eq!(resp["parameters"]["config_id"], config, "{}", resp["parameters"]);
        let got = ints(&resp, "label");
        assert_eq!(got.len(), hi - lo);
        labels.extend(got);
        exits.extend(ints(&resp, "exit_position"));
    }
    (labels, exits)
}

/// Predicted labels that match the test split's.
fn correct(predicted: &[i64], test: &data::Images) -> usize {
    predicted.iter().zip(&test.labels).filter(|(p, l)| **p == i64::from(**l)).count()
}

#[test]
#[ignore = "needs the dataset-fashion-mnist package (scripts/ci/setup.sh)"]
fn served_full_model_matches_offline_accuracy_on_the_whole_test_split() {
    let test = data::load(Path::new(data::DEFAULT_DIR)).expect("Fashion-MNIST test split").test;
    assert_eq!(test.len(), 10_000);

    // Offline: the embedded bundle in-process, normalised as calibration evaluated it.
    let bundle = Bundle::embedded().unwrap();
    let idx: Vec<usize> = (0..test.len()).collect();
    let x = augment::batch(&test, &idx, 0, false, &mut rand::rng());
    // The server normalises UINT8 pixels from the manifest's mean/std (input::normalise, shared
    // by every route); it must feed the model bit-for-bit the same numbers.
    let raw: Vec<f64> = test.pixels.iter().map(|&p| f64::from(p)).collect();
    let served_x = input::normalise(&bundle.manifest.input, "UINT8", &raw).unwrap();
    assert!(x == served_x, "offline and served normalisation differ");

    let full = bundle.configs.configs.iter().find(|c| c.id == "full").expect("a full config");
    let cfg = ResolvedConfig::resolve(&bundle, full, 0).unwrap();
    let mut be =
        FastBackend::new(&bundle.backbone, bundle.manifest.input.shape, default_pool(None).unwrap()).unwrap();
    let per = data::PIXELS;
    let mut offline = Vec::with_capacity(test.len());
    for lo in (0..test.len()).step_by(PER_REQUEST) {
        let hi = (lo + PER_REQUEST).min(test.len());
        let out = run_batch(&bundle, &mut be, &cfg, &x[lo * per..hi * per], hi - lo).unwrap();
        offline.extend(out.iter().map(|r| r.label as i64));
    }
    drop(be);
    let offline_correct = correct(&offline, &test);

    // Served: `dyce serve` with the embedded model on its default (full) configuration.
    let s = serve_embedded(&[]);
    let (served, exits) = served_answers(&s, "fmnist-resnet20", "full", &test);
    assert!(exits.iter().all(|&e| e == -1), "the full model has no exits");
    let served_correct = correct(&served, &test);
    let disagree = served.iter().zip(&offline).filter(|(a, b)| a != b).count();
    eprintln!(
        "full model on {} test images: served {served_correct} correct, offline {offline_correct}, \
         report {REPORTED_CORRECT}; {disagree} images labelled differently",
        test.len()
    );
    assert_eq!(served_correct, offline_correct, "served and offline accuracy differ");
    assert_eq!(offline_correct, REPORTED_CORRECT, "offline accuracy is not the report's 93.39%");
    assert_eq!(disagree, 0, "served and offline predictions differ image by image");
}

/// The shipped ConvNeXt-V2 bundle (issue 24), beside the embedded ResNet one.
const CONVNEXT_BUNDLE: &str = "runtime/models/fmnist-convnextv2-atto";

/// Correct answers over the whole test split through OIP v2 on `config`, set on the admin port
/// first; every answer must come from that configuration.
fn served_correct(s: &common::Server, model: &str, config: &str, test: &data::Images) -> usize {
    let (status, resp) = common::put(&format!("{}/v1/config", s.admin), &serde_json::json!({ "id": config }));
    assert_eq!(status, 200, "{resp}");
    correct(&served_answers(s, model, config, test).0, test)
}

/// The second bundle through `dyce serve --model`: the full model and the configuration the
/// report names for at most 0.5 point of drop answer the test split through HTTP exactly as the
/// report says, and that configuration saves at least 40% of the MACs.
#[test]
#[ignore = "needs the dataset-fashion-mnist package (scripts/ci/setup.sh)"]
fn served_convnext_bundle_matches_its_report() {
    let test = data::load(Path::new(data::DEFAULT_DIR)).expect("Fashion-MNIST test split").test;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(CONVNEXT_BUNDLE);
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap()
    };
    let (report, table, manifest) = (read("calibration.json"), read("configs.json"), read("manifest.json"));
    let model = manifest["name"].as_str().unwrap().to_string();
    let configs = table["configs"].as_array().unwrap();
    let shipped = report["shipped"].as_array().unwrap();
    // The cheapest configuration within 0.5 point of the full model on the calibration split
    // (where configurations are chosen); its test figures are what the report publishes.
    let full_cal = report["full_accuracy"]["calibration"].as_f64().unwrap();
    let (pick, row) = configs
        .iter()
        .zip(shipped)
        .filter(|(c, _)| c["id"] != "full")
        .filter(|(_, r)| r["calibration_accuracy"].as_f64().unwrap() >= full_cal - 0.005)
        .min_by(|a, b| a.0["macs_ratio"].as_f64().unwrap().total_cmp(&b.0["macs_ratio"].as_f64().unwrap()))
        .expect("a configuration within 0.5 point on the calibration split");
    let pick = pick["id"].as_str().unwrap();
    assert!(row["test_macs_ratio"].as_f64().unwrap() <= 0.60, "{pick} saves under 40% of MACs: {row}");

    let s = common::serve(&dir, &[]);
    let want = |acc: f64| (acc * test.len() as f64).round() as usize;
    let full = served_correct(&s, &model, "full", &test);
    let cheap = served_correct(&s, &model, pick, &test);
    eprintln!(
        "{model}: full {full}/10000 (report {}), {pick} {cheap}/10000 (report {}, {:.1}% of MACs saved)",
        report["full_accuracy"]["test"],
        row["test_accuracy"],
        100.0 * (1.0 - row["test_macs_ratio"].as_f64().unwrap())
    );
    assert_eq!(full, want(report["full_accuracy"]["test"].as_f64().unwrap()), "full model");
    assert_eq!(cheap, want(row["test_accuracy"].as_f64().unwrap()), "{pick}");
}
