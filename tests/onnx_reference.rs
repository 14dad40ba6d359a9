//! The engine against an implementation that shares no code with it: onnxruntime running an
//! ONNX graph that `scripts/peers/onnx_resnet.py` builds from the same torchvision-named weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use dyce_runtime::engine::{Backend, CandleBackend};
use dyce_runtime::model::random::random_checkpoint;
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::{BackboneSpec, ResNet};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers/onnx_resnet.py")
}

/// Logits of the folded backbone through the engine's backend path (stem, blocks, pool, fc).
fn engine_logits(net: &ResNet, shape: [usize; 3], x: &[f32], n: usize) -> Vec<f32> {
    let mut be = CandleBackend::new(net, shape).unwrap();
    let mut a = be.stem(x, n).unwrap();
    for i in 0..net.blocks.len() {
        a = be.block(i, a).unwrap();
    }
    net.fc.forward(&be.pool(&a).unwrap(), n, false)
}

fn check(spec: BackboneSpec, size: usize, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.safetensors");
    let tensors = random_checkpoint(&spec, &[], 42).unwrap();
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, serde_json::to_string(&spec).unwrap()).unwrap();
    let c = spec.in_channels;
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
    let net = ResNet::load(&spec, &TensorStore::new(tensors)).unwrap();
    let got = engine_logits(&net, [c, size, size], &x, n);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    assert!(err < 1e-4, "relative error {err} against onnxruntime");
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
