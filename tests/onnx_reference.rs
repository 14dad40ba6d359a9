//! The engine against an implementation that shares no code with it: onnxruntime running an
//! ONNX graph that `scripts/peers/onnx_resnet.py` builds from the same weights (torchvision's
//! names for the ResNets, timm's for ConvNeXt-V2). Both backends are checked: the candle
//! reference and the fast kernels (on the process's ISA; scripts/test.sh also runs this file with
//! `DYCE_KERNELS=portable`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use dyce_runtime::engine::{default_pool, Backend, CandleBackend, FastBackend};
use dyce_runtime::model::random::random_checkpoint;
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::{Backbone, BackboneSpec};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers/onnx_resnet.py")
}

/// Logits of the backbone through a backend (stem, blocks, pool, head).
fn engine_logits<B: Backend>(be: &mut B, net: &Backbone, x: &[f32], n: usize) -> Vec<f32> {
    let mut a = be.stem(x, n).unwrap();
    for i in 0..net.positions() {
        a = be.block(i, a).unwrap();
    }
    net.head(&be.pool(&a).unwrap(), n)
}

fn check(spec: BackboneSpec, size: usize, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.safetensors");
    let tensors = random_checkpoint(&spec, &[], 42).unwrap();
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, serde_json::to_string(&spec).unwrap()).unwrap();
    let c = spec.in_channels();
    let x: Vec<f32> = (0..n * c * size * size).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let input = dir.path().join("x.safetensors");
    let xt = Tensor::from_slice(&x, (n, c, size, size), &Device::Cpu).unwrap();
    candle_core::safetensors::save(&HashMap::from([("input".to_string(), xt)]), &input).unwrap();
    let out = dir.path().join("y.safetensors");
    let status = Command::new("python3")
        .arg(script())
        .args(["reference", "--spec"])
        .arg(&spec_path)
        .arg("--weights")
        .arg(&weights)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "onnx_resnet.py reference failed: run scripts/ci/setup.sh");
    let want = candle_core::safetensors::load(&out, &Device::Cpu).unwrap()["logits"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let net = Backbone::load(&spec, &TensorStore::new(tensors)).unwrap();
    let shape = [c, size, size];
    let candle = engine_logits(&mut CandleBackend::new(&net, shape).unwrap(), &net, &x, n);
    let fast =
        engine_logits(&mut FastBackend::new(&net, shape, default_pool(None).unwrap()).unwrap(), &net, &x, n);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (name, got) in [("candle", candle), ("fast", fast)] {
        let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
        assert!(err < 1e-4, "{name}: relative error {err} against onnxruntime");
    }
}

#[test]
#[ignore = "needs python3 with onnxruntime and onnx (scripts/ci/setup.sh); run by scripts/test.sh"]
fn resnet18_matches_onnxruntime() {
    check(BackboneSpec::torchvision("resnet18").unwrap(), 224, 2);
}

#[test]
#[ignore = "needs python3 with onnxruntime and onnx (scripts/ci/setup.sh); run by scripts/test.sh"]
fn resnet20_small_input_matches_onnxruntime() {
    check(BackboneSpec::builtin("resnet20").unwrap(), 28, 3);
}

#[test]
#[ignore = "needs python3 with onnxruntime and onnx (scripts/ci/setup.sh); run by scripts/test.sh"]
fn convnextv2_atto_matches_onnxruntime() {
    // An odd size: 75 → 18 → 9 → 4 → 2 (the 2×2/2 downsamples drop a row and a column).
    check(BackboneSpec::builtin("convnextv2_atto").unwrap(), 75, 3);
}

#[test]
#[ignore = "needs python3 with onnxruntime and onnx (scripts/ci/setup.sh); run by scripts/test.sh"]
fn convnextv2_small_input_matches_onnxruntime() {
    check(BackboneSpec::builtin("convnextv2_atto_s").unwrap(), 28, 5);
}
