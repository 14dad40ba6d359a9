//! The commands take ConvNeXt-V2 like the ResNets, with no case of their own: `dyce inspect`
//! (an arch and a bundle), `dyce bench-backbone`, `dyce bench` and `dyce serve` on a bundle whose
//! manifest names the family.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use dyce_api::ConfigTable;
use dyce_runtime::model::bundle::{ExitInfo, FORMAT};
use dyce_runtime::model::random::random_checkpoint;
use dyce_runtime::model::{BackboneSpec, Bundle, InputSpec, Manifest};

fn dyce(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dyce")).args(args).env("RUST_LOG", "warn").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A random `convnextv2_atto_s` bundle for 28×28 grayscale with `mlp1` exits at positions 0
/// and 5 and a configuration that answers everything at position 0.
fn convnext_bundle(dir: &Path) -> Bundle {
    let spec = BackboneSpec::builtin("convnextv2_atto_s").unwrap();
    let tensors = random_checkpoint(&spec, &["mlp1".parse().unwrap()], 3).unwrap();
    let manifest = Manifest {
        format: FORMAT,
        name: "tiny".into(),
        input: InputSpec {
            shape: [1, 28, 28],
            mean: vec![0.286],
            std: vec![0.353],
            labels: (0..10).map(|i| format!("c{i}")).collect(),
            transform: Default::default(),
        },
        backbone: spec,
        positions: vec![],
        full_macs: 0,
        exits: [0, 5].iter().map(|&p| ExitInfo { position: p, exit_type: "mlp1".into(), macs: 0 }).collect(),
        provenance: BTreeMap::new(),
    };
    let mut table = ConfigTable::full_only("tiny");
    let mut first = dyce_api::ConfigEntry {
        id: "first".into(),
        exits: vec![dyce_api::ExitChoice { position: 0, exit_type: "mlp1".into(), threshold: 0.0 }],
        expected_accuracy: None,
        macs_ratio: None,
        latency_ratio: None,
        expected_disagreement: None,
    };
    table.configs.insert(0, first.clone());
    first.id = "fifth".into();
    first.exits[0].position = 5;
    table.configs.insert(1, first);
    Bundle::write(dir, manifest, &tensors, &table).unwrap()
}

#[test]
fn inspect_counts_convnextv2_tiny_as_timm_does() {
    let (ok, out) = dyce(&["inspect", "--arch", "convnextv2_tiny", "--input", "224"]);
    assert!(ok, "{out}");
    // timm publishes 4.47 GMACs; the count is within 0.4% of it.
    assert!(out.starts_with("convnextv2_tiny at 224x224: 4.4555 G MACs in total"), "{out}");
    assert!(out.contains("stages.3.blocks.2"), "{out}");
    let (ok, out) = dyce(&["inspect", "--arch", "convnextv2_atto", "--input", "16"]);
    assert!(!ok && out.contains("needs at least 32 pixels"), "{out}");
}

#[test]
fn bench_backbone_and_inspect_take_the_family() {
    let (ok, out) = dyce(&[
        "bench-backbone",
        "--arch",
        "convnextv2_atto_s",
        "--batches",
        "1,3",
        "--repeats",
        "1",
        "--min-seconds",
        "0.01",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("convnextv2_atto_s @28") && out.contains("batch   3"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    convnext_bundle(dir.path());
    let (ok, out) = dyce(&["inspect", "--model", dir.path().to_str().unwrap()]);
    assert!(ok && out.contains("stages.1.blocks.0") && out.contains("fifth"), "{out}");
}

#[test]
fn a_convnext_bundle_is_served_and_exits_early() {
    let dir = tempfile::tempdir().unwrap();
    let b = convnext_bundle(dir.path());
    let s = serve(dir.path(), &["--initial-config", "first"]);
    let (status, body) =
        post(&format!("{}/v2/models/tiny/infer", s.data), infer_body(3, 5).to_string().as_bytes());
    assert_eq!(status, 200, "{body}");
    let out = body["outputs"].as_array().unwrap();
    assert!(!out.is_empty(), "{body}");
    // Every image (warm-up's included) answers at position 0: no other exit counts any.
    let (_, metrics) = request("GET", &format!("{}/metrics", s.metrics), &[], b"");
    let text = metrics.as_str().unwrap_or_default().to_string();
    let exits: Vec<&str> = text.lines().filter(|l| l.starts_with("dyce_exits_total{")).collect();
    assert!(exits.iter().any(|l| l.contains("position=\"0\"")), "{text}");
    assert!(exits.iter().all(|l| l.contains("position=\"0\"") || l.ends_with(" 0")), "{exits:?}");
    drop(s);
    let model = dir.path().to_str().unwrap();
    let (ok, out) = dyce(&["bench", "--model", model, "--batch", "2", "--seconds", "0.02", "--rounds", "1"]);
    assert!(ok, "{out}");
    assert!(b.manifest.positions.len() == 12);
}
