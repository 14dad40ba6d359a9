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
    let offline_correct = offline.iter().zip(&test.labels).filter(|(p, l)| **p == i64::from(**l)).count();

    // Served: `dyce serve` with the embedded model on its default (full) configuration.
    let s = serve_embedded(&[]);
    let url = format!("{}/v2/models/fmnist-resnet20/infer", s.data);
    let mut served = Vec::with_capacity(test.len());
    for lo in (0..test.len()).step_by(PER_REQUEST) {
        let hi = (lo + PER_REQUEST).min(test.len());
        let (status, resp) = post(&url, body(&test, lo, hi).as_bytes());
        assert_eq!(status, 200, "{resp}");
        assert_eq!(resp["parameters"]["config_id"], "full", "{}", resp["parameters"]);
        let labels = ints(&resp, "label");
        assert_eq!(labels.len(), hi - lo);
        assert!(ints(&resp, "exit_position").iter().all(|&e| e == -1), "the full model has no exits");
        served.extend(labels);
    }
    let served_correct = served.iter().zip(&test.labels).filter(|(p, l)| **p == i64::from(**l)).count();
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
