//! Fixtures shared by the runtime's integration tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use candle_core::{Device, Tensor, D};
use dyce_api::{ConfigEntry, ConfigTable, ExitChoice};
use dyce_runtime::model::bundle::{ExitInfo, FORMAT};
use dyce_runtime::model::random::random_checkpoint;
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::{BackboneSpec, Bundle, ExitType, InputSpec, Manifest};

/// A tiny small-input ResNet: 4 positions, 12×12 grayscale, 5 classes.
pub fn tiny_spec() -> BackboneSpec {
    BackboneSpec::small(vec![2, 1, 1], vec![4, 8, 12], 1, 5)
}

pub fn manifest(spec: &BackboneSpec, size: usize, exits: &[(usize, &str)]) -> Manifest {
    let c = spec.in_channels();
    Manifest {
        format: FORMAT,
        name: "tiny".into(),
        input: InputSpec {
            shape: [c, size, size],
            mean: vec![0.5; c],
            std: vec![0.25; c],
            labels: (0..spec.num_classes()).map(|i| format!("class{i}")).collect(),
            transform: Default::default(),
        },
        backbone: spec.clone(),
        positions: vec![],
        full_macs: 0,
        exits: exits.iter().map(|&(p, t)| ExitInfo { position: p, exit_type: t.into(), macs: 0 }).collect(),
        provenance: BTreeMap::new(),
    }
}

/// Tiny bundle with `mlp1` and `mlp2x16` at every position and a table of `configs`.
pub fn tiny_bundle(seed: u64, configs: Vec<ConfigEntry>) -> (Bundle, HashMap<String, Tensor>) {
    let spec = tiny_spec();
    let types: Vec<ExitType> = ["mlp1", "mlp2x16"].iter().map(|s| s.parse().unwrap()).collect();
    let tensors = random_checkpoint(&spec, &types, seed).unwrap();
    let n = spec.positions().len();
    let exits: Vec<(usize, &str)> = (0..n).flat_map(|p| [(p, "mlp1"), (p, "mlp2x16")]).collect();
    let mut table = ConfigTable::full_only("tiny");
    table.configs.splice(0..0, configs);
    let b =
        Bundle::from_parts(manifest(&spec, 12, &exits), &TensorStore::new(tensors.clone()), table).unwrap();
    (b, tensors)
}

pub fn entry(id: &str, exits: &[(usize, &str, f32)]) -> ConfigEntry {
    ConfigEntry {
        id: id.into(),
        exits: exits
            .iter()
            .map(|&(p, t, th)| ExitChoice { position: p, exit_type: t.into(), threshold: th })
            .collect(),
        expected_accuracy: None,
        macs_ratio: None,
        latency_ratio: None,
        expected_disagreement: None,
    }
}

pub fn random_input(n: usize, per: usize, seed: u64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * per).map(|_| r.random_range(-2.0f32..2.0)).collect()
}

/// The plain backbone, unfolded BatchNorm and all, straight from torchvision-named tensors:
/// an implementation independent of the folding and of the executor.
pub fn plain_logits(spec: &BackboneSpec, t: &HashMap<String, Tensor>, x: &Tensor) -> Tensor {
    let BackboneSpec::ResNet(spec) = spec else { panic!("plain_logits is written for ResNets") };
    let bn = |x: &Tensor, p: &str| -> Tensor {
        let g = |s: &str| t[&format!("{p}.{s}")].reshape((1, (), 1, 1)).unwrap();
        let norm = x.broadcast_sub(&g("running_mean")).unwrap();
        let denom = (g("running_var") + 1e-5).unwrap().sqrt().unwrap();
        norm.broadcast_div(&denom)
            .unwrap()
            .broadcast_mul(&g("weight"))
            .unwrap()
            .broadcast_add(&g("bias"))
            .unwrap()
    };
    let conv = |x: &Tensor, name: &str, stride: usize, pad: usize| {
        x.conv2d(&t[&format!("{name}.weight")], pad, stride, 1, 1).unwrap()
    };
    let sc = spec.stem_conv();
    let mut y = bn(&conv(x, "conv1", sc.stride, sc.pad), "bn1").relu().unwrap();
    if spec.stem == dyce_runtime::model::StemKind::Imagenet {
        y = y
            .pad_with_zeros(2, 1, 1)
            .unwrap()
            .pad_with_zeros(3, 1, 1)
            .unwrap()
            .max_pool2d_with_stride(3, 2)
            .unwrap();
    }
    for b in spec.blocks() {
        let mut z = y.clone();
        for (i, g) in b.convs.iter().enumerate() {
            z = bn(
                &conv(&z, &format!("{}.conv{}", b.name, i + 1), g.stride, g.pad),
                &format!("{}.bn{}", b.name, i + 1),
            );
            if i + 1 < b.convs.len() {
                z = z.relu().unwrap();
            }
        }
        let short = match b.downsample {
            Some(d) => bn(
                &conv(&y, &format!("{}.downsample.0", b.name), d.stride, 0),
                &format!("{}.downsample.1", b.name),
            ),
            None => y.clone(),
        };
        y = (z + short).unwrap().relu().unwrap();
    }
    let pooled = y.mean((2, 3)).unwrap();
    pooled.matmul(&t["fc.weight"].t().unwrap()).unwrap().broadcast_add(&t["fc.bias"]).unwrap()
}

pub fn softmax(x: &Tensor) -> Vec<Vec<f32>> {
    candle_nn_softmax(x).to_vec2::<f32>().unwrap()
}

fn candle_nn_softmax(x: &Tensor) -> Tensor {
    let max = x.max_keepdim(D::Minus1).unwrap();
    let e = x.broadcast_sub(&max).unwrap().exp().unwrap();
    let s = e.sum_keepdim(D::Minus1).unwrap();
    e.broadcast_div(&s).unwrap()
}

pub fn tensor(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
}

/// Largest |a − b| relative to the largest |b|.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}
