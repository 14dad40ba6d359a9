//! Loading and saving bundles, and the errors a user sees for broken ones.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use dyce_api::ConfigTable;
use dyce_runtime::engine::{ConfigSwitch, EngineError};
use dyce_runtime::model::random::random_checkpoint;
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::{Backbone, BackboneSpec, Bundle, ModelError};

fn err_of(spec: &BackboneSpec, edit: impl FnOnce(&mut std::collections::HashMap<String, Tensor>)) -> String {
    let mut t = random_checkpoint(spec, &[], 0).unwrap();
    edit(&mut t);
    Backbone::load(spec, &TensorStore::new(t)).unwrap_err().to_string()
}

#[test]
fn torchvision_checkpoints_load_and_name_broken_tensors() {
    for arch in ["resnet18", "resnet50"] {
        let spec = BackboneSpec::torchvision(arch).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        candle_core::safetensors::save(&random_checkpoint(&spec, &[], 1).unwrap(), &path).unwrap();
        let net = Backbone::load(&spec, &TensorStore::load(&path).unwrap()).unwrap();
        assert_eq!(net.positions(), spec.positions().len());

        let e = err_of(&spec, |t| {
            t.remove("layer3.1.bn2.running_var");
        });
        assert!(e.contains("missing tensor \"layer3.1.bn2.running_var\" (expected shape ["), "{e}");
        let e = err_of(&spec, |t| {
            t.insert(
                "layer2.0.downsample.0.weight".into(),
                Tensor::zeros((3, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
            );
        });
        assert!(e.contains("\"layer2.0.downsample.0.weight\" has shape [3, 3], expected ["), "{e}");
    }
}

#[test]
fn bundle_round_trips_through_disk() {
    let spec = tiny_spec();
    let types = vec!["mlp1".parse().unwrap()];
    let tensors = random_checkpoint(&spec, &types, 4).unwrap();
    let mut table = ConfigTable::full_only("tiny");
    table.configs.insert(0, entry("cheap", &[(0, "mlp1", 0.5)]));
    let dir = tempfile::tempdir().unwrap();
    let b = Bundle::write(dir.path(), manifest(&spec, 12, &[(0, "mlp1"), (2, "mlp1")]), &tensors, &table)
        .unwrap();
    assert_eq!(b.manifest.positions.len(), 4);
    assert_eq!(b.manifest.full_macs, b.macs.total);
    assert_eq!(b.manifest.exits[0].macs, 4 * 5);
    let again = Bundle::load(dir.path()).unwrap();
    assert_eq!(again.manifest, b.manifest);
    assert_eq!(again.backbone, b.backbone);
    assert_eq!(again.configs, table);
}

fn bundle_err(exits: &[(usize, &str)], table: ConfigTable) -> String {
    let spec = tiny_spec();
    let tensors = random_checkpoint(&spec, &["mlp1".parse().unwrap()], 4).unwrap();
    Bundle::from_parts(manifest(&spec, 12, exits), &TensorStore::new(tensors), table).unwrap_err().to_string()
}

#[test]
fn broken_bundles_say_what_is_wrong() {
    let full = ConfigTable::full_only("tiny");
    let e = bundle_err(&[(0, "conv9")], full.clone());
    assert!(e.contains("unknown exit type \"conv9\""), "{e}");
    let e = bundle_err(&[(0, "mlp2x64")], full.clone());
    assert!(e.contains("missing tensor \"exits.0.mlp2x64.0.weight\""), "{e}");
    let e = bundle_err(&[(7, "mlp1")], full.clone());
    assert!(e.contains("position 7"), "{e}");

    let mut t = full.clone();
    t.configs.insert(0, entry("c", &[(1, "mlp1", 0.5)]));
    let e = bundle_err(&[(0, "mlp1")], t);
    assert!(e.contains("config \"c\" uses exit mlp1 at position 1, which the bundle has not trained"), "{e}");

    let mut t = full.clone();
    t.configs.insert(0, entry("c", &[(0, "mlp1", 1.5)]));
    let e = bundle_err(&[(0, "mlp1")], t);
    assert!(e.contains("threshold 1.5 at position 0 is outside [0, 1]"), "{e}");
}

#[test]
fn missing_files_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let e = Bundle::load(dir.path()).unwrap_err();
    assert!(matches!(e, ModelError::Io { .. }));
    assert!(e.to_string().contains("manifest.json"), "{e}");
    std::fs::write(dir.path().join("manifest.json"), "{\"format\": 1,").unwrap();
    let e = Bundle::load(dir.path()).unwrap_err();
    assert!(matches!(e, ModelError::Json { .. }), "{e}");
}

#[test]
fn config_switch_is_fenced_by_generation() {
    let (b, _) = tiny_bundle(1, vec![entry("a", &[(0, "mlp1", 0.5)]), entry("b", &[(1, "mlp1", 0.5)])]);
    let sw = ConfigSwitch::new(std::sync::Arc::new(b), "full").unwrap();
    assert_eq!(sw.current().generation, 0);
    let held = sw.current();
    assert_eq!(sw.switch("a", None).unwrap().generation, 1);
    assert_eq!(held.id, "full", "a snapshot taken before the switch does not change");
    assert_eq!(sw.switch("b", Some(5)).unwrap().generation, 5);
    assert_eq!(sw.switch("b", Some(5)).unwrap().id, "b", "a retry of the same write is accepted");
    assert!(matches!(sw.switch("a", Some(5)), Err(EngineError::StaleGeneration { given: 5, active: 5 })));
    assert!(matches!(sw.switch("a", Some(3)), Err(EngineError::StaleGeneration { .. })));
    assert!(matches!(sw.switch("nope", None), Err(EngineError::UnknownConfig(_))));
    assert_eq!(sw.current().id, "b");
}

/// Issue 19, defect 4: `u64::MAX` was accepted and the next write without a generation wrapped
/// to 0, after which every fenced write was stale. Nothing above `MAX_GENERATION` goes in, and
/// at the ceiling a write without a generation is refused instead of wrapping.
#[test]
fn generations_never_wrap() {
    use dyce_runtime::engine::active::MAX_GENERATION;
    let (b, _) = tiny_bundle(1, vec![entry("a", &[(0, "mlp1", 0.5)])]);
    let sw = ConfigSwitch::new(std::sync::Arc::new(b), "full").unwrap();
    for g in [u64::MAX, MAX_GENERATION + 1] {
        let e = sw.switch("a", Some(g)).unwrap_err();
        assert!(matches!(e, EngineError::GenerationTooLarge { .. }), "{e}");
        assert!(e.to_string().contains("above the largest accepted"), "{e}");
    }
    assert_eq!((sw.current().id.as_str(), sw.current().generation), ("full", 0), "nothing applied");
    assert_eq!(sw.switch("a", None).unwrap().generation, 1);
    assert_eq!(sw.switch("full", Some(MAX_GENERATION)).unwrap().generation, MAX_GENERATION);
    let e = sw.switch("a", None).unwrap_err();
    assert!(matches!(e, EngineError::GenerationExhausted { active: MAX_GENERATION }), "{e}");
    assert_eq!(sw.switch("full", Some(MAX_GENERATION)).unwrap().id, "full", "a retry still succeeds");
    assert_eq!(sw.current().generation, MAX_GENERATION);
}
