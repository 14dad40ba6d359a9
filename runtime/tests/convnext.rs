//! ConvNeXt-V2: timm-named checkpoints load (and broken ones say which tensor and which
//! shapes), the fast backend agrees with the candle reference, and a bundle with exits runs.
//! `DYCE_KERNELS=portable` (scripts/test.sh) covers the portable path; the kernels' own tests
//! (`convnext_block.rs`) run every ISA in one process.

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use dyce_api::ConfigTable;
use dyce_runtime::engine::{
    default_pool, run_batch, run_profiled, Backend, CandleBackend, FastBackend, Profiler, ResolvedConfig,
    Stage,
};
use dyce_runtime::model::random::random_checkpoint;
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::{Backbone, BackboneSpec, Bundle, ConvNextSpec, ExitType, Manifest};

fn logits<B: Backend>(be: &mut B, net: &Backbone, x: &[f32], n: usize) -> Vec<f32> {
    let mut a = be.stem(x, n).unwrap();
    for i in 0..net.positions() {
        a = be.block(i, a).unwrap();
    }
    let pooled = be.pool(&a).unwrap();
    be.recycle(a);
    net.head(&pooled, n)
}

fn compare(spec: BackboneSpec, size: usize, batches: &[usize]) {
    let net = Backbone::load(&spec, &TensorStore::new(random_checkpoint(&spec, &[], 5).unwrap())).unwrap();
    let shape = [spec.in_channels(), size, size];
    let per: usize = shape.iter().product();
    let mut fast = FastBackend::new(&net, shape, default_pool(None).unwrap()).unwrap();
    let mut reference = CandleBackend::new(&net, shape).unwrap();
    for &n in batches {
        let x = random_input(n, per, n as u64);
        let want = logits(&mut reference, &net, &x, n);
        for _ in 0..2 {
            let got = logits(&mut fast, &net, &x, n);
            let err = rel_err(&got, &want);
            assert!(err < 1e-4, "{spec:?} @{size} batch {n}: relative error {err}");
        }
    }
}

fn small(depths: Vec<usize>, widths: Vec<usize>, patch: usize, in_channels: usize) -> BackboneSpec {
    BackboneSpec::ConvNextV2(ConvNextSpec { depths, widths, stem_patch: patch, in_channels, num_classes: 11 })
}

#[test]
fn small_input_variant_matches_candle() {
    compare(BackboneSpec::builtin("convnextv2_atto_s").unwrap(), 28, &[1, 3, 8]);
}

#[test]
fn odd_widths_and_sizes_match_candle() {
    // Widths off the channel blocks, an odd input (45 → 11 → 5 → 2), 3 channels, batches that
    // shard unevenly.
    compare(small(vec![1, 2, 1], vec![12, 20, 36], 4, 3), 45, &[1, 5]);
    compare(small(vec![2], vec![9], 1, 2), 13, &[3]);
}

#[test]
fn atto_at_imagenet_shapes_matches_candle() {
    compare(BackboneSpec::builtin("convnextv2_atto").unwrap(), 64, &[2]);
}

fn load_err(
    spec: &BackboneSpec,
    edit: impl FnOnce(&mut std::collections::HashMap<String, Tensor>),
) -> String {
    let mut t = random_checkpoint(spec, &[], 0).unwrap();
    edit(&mut t);
    Backbone::load(spec, &TensorStore::new(t)).unwrap_err().to_string()
}

#[test]
fn timm_checkpoints_load_from_disk_and_name_broken_tensors() {
    let spec = BackboneSpec::builtin("convnextv2_atto").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    // timm ships f16/bf16 files too: the store converts.
    let half: std::collections::HashMap<String, Tensor> = random_checkpoint(&spec, &[], 1)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(DType::BF16).unwrap()))
        .collect();
    candle_core::safetensors::save(&half, &path).unwrap();
    let net = Backbone::load(&spec, &TensorStore::load(&path).unwrap()).unwrap();
    assert_eq!(net.positions(), 12);
    assert_eq!(net.channels_at(11), 320);

    let e = load_err(&spec, |t| {
        t.remove("stages.2.blocks.4.mlp.grn.weight");
    });
    assert_eq!(
        e,
        "missing tensor \"stages.2.blocks.4.mlp.grn.weight\" (expected shape [640]) in the weights file"
    );
    let e = load_err(&spec, |t| {
        t.insert(
            "stages.1.downsample.1.weight".into(),
            Tensor::zeros((80, 40, 3, 3), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    assert_eq!(
        e,
        "tensor \"stages.1.downsample.1.weight\" has shape [80, 40, 3, 3], expected [80, 40, 2, 2]"
    );
    // fc1 is a Linear in timm ([out, in]), not a 1×1 convolution.
    let e = load_err(&spec, |t| {
        let w = t["stages.0.blocks.0.mlp.fc1.weight"].reshape((160, 40, 1, 1)).unwrap();
        t.insert("stages.0.blocks.0.mlp.fc1.weight".into(), w);
    });
    assert!(e.contains("has shape [160, 40, 1, 1], expected [160, 40]") && !e.contains('\n'), "{e}");
    let e = load_err(&spec, |t| {
        t.remove("head.norm.bias");
    });
    assert!(e.contains("\"head.norm.bias\" (expected shape [320])"), "{e}");
}

fn convnext_bundle(dir: &std::path::Path) -> Bundle {
    let spec = small(vec![1, 2], vec![8, 16], 2, 1);
    let types: Vec<ExitType> = ["mlp1", "mlp2x16"].iter().map(|s| s.parse().unwrap()).collect();
    let tensors = random_checkpoint(&spec, &types, 8).unwrap();
    let exits: Vec<(usize, &str)> = (0..3).flat_map(|p| [(p, "mlp1"), (p, "mlp2x16")]).collect();
    let mut table = ConfigTable::full_only("tiny");
    table.configs.insert(0, entry("a", &[(0, "mlp1", 0.3), (1, "mlp2x16", 0.4)]));
    Bundle::write(dir, manifest(&spec, 12, &exits), &tensors, &table).unwrap()
}

#[test]
fn bundle_names_the_family_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let b = convnext_bundle(dir.path());
    let text = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    assert!(text.contains("\"family\": \"convnextv2\""), "{text}");
    assert_eq!(b.manifest.positions[1].block, "stages.1.blocks.0");
    assert_eq!(Bundle::load(dir.path()).unwrap().backbone, b.backbone);
    // A ResNet manifest has no family (bundles written before ConvNeXt load unchanged), and an
    // explicit `resnet` family reads the same.
    let m = manifest(&tiny_spec(), 12, &[]);
    let json = serde_json::to_value(&m).unwrap();
    assert!(json["backbone"].get("family").is_none());
    let mut tagged = json.clone();
    tagged["backbone"]["family"] = "resnet".into();
    assert_eq!(serde_json::from_value::<Manifest>(tagged).unwrap(), m);
    let mut bad = json;
    bad["backbone"]["family"] = "vit".into();
    assert!(serde_json::from_value::<Manifest>(bad).is_err());
    // Too small an input for the stages (12 px with a 2-pixel patch needs 4 after 2 stages: fine;
    // 3 px is not).
    let mut m = b.manifest.clone();
    m.input.shape = [1, 3, 3];
    assert!(m.validate().unwrap_err().to_string().contains("outside 4..4096"));
}

#[test]
fn executor_gives_the_same_answers_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let b = convnext_bundle(dir.path());
    let shape = b.manifest.input.shape;
    let mut fast = FastBackend::new(&b.backbone, shape, default_pool(Some(2)).unwrap()).unwrap();
    let mut reference = CandleBackend::new(&b.backbone, shape).unwrap();
    for id in ["a", "full"] {
        let cfg = ResolvedConfig::resolve(&b, b.configs.get(id).unwrap(), 0).unwrap();
        for n in [1, 2, 7, 16] {
            let x = random_input(n, 144, 7 + n as u64);
            let got = run_batch(&b, &mut fast, &cfg, &x, n).unwrap();
            let want = run_batch(&b, &mut reference, &cfg, &x, n).unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert_eq!((g.exit, g.label, g.macs), (w.exit, w.label, w.macs), "config {id}");
                assert!(rel_err(&g.probs, &w.probs) < 1e-4);
            }
        }
    }
}

/// Sums the MACs a profile reports.
#[derive(Default)]
struct Macs(u64);

impl Profiler for Macs {
    const ON: bool = true;
    fn stage(&mut self, _: Stage, _: usize, macs: u64, _: std::time::Duration) {
        self.0 += macs;
    }
}

/// `dyce bench --profile` and the exit-cost measurement run `run_profiled`: on ConvNeXt too it
/// answers as `run_batch` does, and its stages add up to the answers' MACs.
#[test]
fn profiled_runs_answer_as_served_ones() {
    let dir = tempfile::tempdir().unwrap();
    let b = convnext_bundle(dir.path());
    let shape = b.manifest.input.shape;
    let mut fast = FastBackend::new(&b.backbone, shape, default_pool(Some(2)).unwrap()).unwrap();
    for id in ["a", "full"] {
        let cfg = ResolvedConfig::resolve(&b, b.configs.get(id).unwrap(), 0).unwrap();
        for n in [1, 5, 16] {
            let x = random_input(n, 144, 31 + n as u64);
            let want = run_batch(&b, &mut fast, &cfg, &x, n).unwrap();
            let mut macs = Macs::default();
            let got = run_profiled(&b, &mut fast, &cfg, &x, n, &mut macs).unwrap();
            assert_eq!(got, want, "config {id}, {n} images");
            assert_eq!(macs.0, want.iter().map(|r| r.macs).sum::<u64>(), "config {id}, {n} images");
        }
    }
}
