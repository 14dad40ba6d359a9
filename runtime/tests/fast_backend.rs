//! The fast backend (dyce-kernels) against the candle reference: whole networks, odd sizes,
//! and the early-exit executor on top. Run with `DYCE_KERNELS=portable` too (scripts/test.sh
//! does) to cover the portable path.

mod common;

use common::*;
use dyce_runtime::engine::{default_pool, run_batch, Backend, CandleBackend, FastBackend, ResolvedConfig};
use dyce_runtime::model::random::random_checkpoint;
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::{Backbone, BackboneSpec, BlockKind, ResNetSpec, StemKind};

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
        // Twice: the second run reuses the arena's buffers, which must not leak old values.
        for _ in 0..2 {
            let got = logits(&mut fast, &net, &x, n);
            let err = rel_err(&got, &want);
            assert!(err < 1e-4, "{spec:?} @{size} batch {n}: relative error {err}");
        }
    }
}

#[test]
fn small_resnets_match_candle() {
    compare(BackboneSpec::builtin("resnet20").unwrap(), 28, &[1, 8, 33]);
    // Widths that are not multiples of the channel block, an odd input size, 3 channels.
    compare(BackboneSpec::small(vec![1, 2, 1], vec![5, 13, 17], 3, 7), 15, &[1, 4]);
}

#[test]
fn bottleneck_with_imagenet_stem_matches_candle() {
    let spec = ResNetSpec {
        block: BlockKind::Bottleneck,
        depths: vec![1, 2, 1],
        widths: vec![8, 12, 16],
        stem: StemKind::Imagenet,
        stem_width: 16,
        in_channels: 3,
        num_classes: 11,
    };
    compare(BackboneSpec::ResNet(spec), 57, &[1, 3]);
}

#[test]
fn resnet18_matches_candle() {
    compare(BackboneSpec::torchvision("resnet18").unwrap(), 64, &[2]);
}

#[test]
fn executor_gives_the_same_answers_on_both_backends() {
    let cfgs = vec![entry("a", &[(0, "mlp1", 0.3), (2, "mlp2x16", 0.5)]), entry("b", &[(1, "mlp2x16", 0.4)])];
    let (b, _) = tiny_bundle(21, cfgs);
    let shape = b.manifest.input.shape;
    // Two threads whatever the machine: batches of 2 to 7 then run as shards, one per thread,
    // each through its own exits and compaction; the answers must not change.
    let mut fast = FastBackend::new(&b.backbone, shape, default_pool(Some(2)).unwrap()).unwrap();
    let mut reference = CandleBackend::new(&b.backbone, shape).unwrap();
    for id in ["a", "b", "full"] {
        let cfg = ResolvedConfig::resolve(&b, b.configs.get(id).unwrap(), 0).unwrap();
        for n in [1, 2, 3, 7, 32] {
            let x = random_input(n, 144, 99 + n as u64);
            let got = run_batch(&b, &mut fast, &cfg, &x, n).unwrap();
            let want = run_batch(&b, &mut reference, &cfg, &x, n).unwrap();
            for (g, w) in got.iter().zip(&want) {
                // A confidence within rounding of its threshold could go either way; none is here.
                assert_eq!((g.exit, g.label, g.macs), (w.exit, w.label, w.macs), "config {id}");
                assert!(rel_err(&g.probs, &w.probs) < 1e-4);
            }
        }
    }
}
