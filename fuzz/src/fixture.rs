//! The tiny model the targets serve and load against: 4 positions, 12×12 grayscale, 5 classes,
//! `mlp1` exits everywhere. Small enough that an accepted input costs microseconds to run.

use std::collections::{BTreeMap, HashMap};

use candle_core::Tensor;
use dyce_api::{ConfigEntry, ConfigTable, ExitChoice};
use dyce_runtime::model::bundle::{ExitInfo, FORMAT};
use dyce_runtime::model::random::random_checkpoint;
use dyce_runtime::model::{BackboneSpec, ExitType, InputSpec, Manifest};

/// The model's name, as served.
pub const MODEL: &str = "tiny";

/// The backbone.
pub fn spec() -> BackboneSpec {
    BackboneSpec::small(vec![2, 1, 1], vec![4, 8, 12], 1, 5)
}

/// The manifest, derived fields left for the loader to fill in.
pub fn manifest() -> Manifest {
    let spec = spec();
    let positions = spec.positions().len();
    Manifest {
        format: FORMAT,
        name: MODEL.into(),
        input: InputSpec {
            shape: [1, 12, 12],
            mean: vec![0.5],
            std: vec![0.25],
            labels: (0..spec.num_classes()).map(|i| format!("class{i}")).collect(),
            transform: Default::default(),
        },
        backbone: spec,
        positions: vec![],
        full_macs: 0,
        exits: (0..positions).map(|p| ExitInfo { position: p, exit_type: "mlp1".into(), macs: 0 }).collect(),
        provenance: BTreeMap::new(),
    }
}

/// Backbone and exit weights, torchvision-named.
pub fn tensors() -> HashMap<String, Tensor> {
    let mlp1: ExitType = "mlp1".parse().expect("mlp1 is an exit type");
    random_checkpoint(&spec(), &[mlp1], 7).expect("the tiny spec is valid")
}

/// A table with one early-exit configuration before the full model.
pub fn configs() -> ConfigTable {
    let mut t = ConfigTable::full_only(MODEL);
    let early = ConfigEntry {
        id: "early".into(),
        exits: vec![ExitChoice { position: 1, exit_type: "mlp1".into(), threshold: 0.5 }],
        expected_accuracy: Some(0.9),
        macs_ratio: Some(0.5),
        latency_ratio: None,
        expected_disagreement: None,
    };
    t.configs.insert(0, early);
    t
}
