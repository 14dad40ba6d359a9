//! Exactness of the early-exit executor on the candle backend.

mod common;

use common::*;
use dyce_runtime::engine::{
    default_pool, run_batch, run_profiled, Backend, CandleBackend, FastBackend, Profiler, ResolvedConfig,
    Stage,
};
use dyce_runtime::model::Bundle;
use proptest::prelude::*;

const PER: usize = 12 * 12;

#[test]
fn no_exit_equals_plain_backbone() {
    // Every exit enabled at threshold 1.0: the heads run, but with random weights no softmax
    // reaches exactly 1.0, so every sample must come out of the final head unchanged.
    let all: Vec<(usize, &str, f32)> = (0..4).map(|p| (p, "mlp2x16", 1.0)).collect();
    let (b, raw) = tiny_bundle(7, vec![entry("never", &all)]);
    let mut be = CandleBackend::new(&b.backbone, b.manifest.input.shape).unwrap();
    let n = 9;
    let x = random_input(n, PER, 1);
    let cfg = ResolvedConfig::resolve(&b, b.configs.get("never").unwrap(), 0).unwrap();
    let got = run_batch(&b, &mut be, &cfg, &x, n).unwrap();
    let want = softmax(&plain_logits(&b.manifest.backbone, &raw, &tensor(&x, &[n, 1, 12, 12])));
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.exit, None);
        assert_eq!(g.macs, b.macs.total + exits_macs(&b, &cfg));
        assert!(rel_err(&g.probs, w) < 1e-5, "{:?} vs {:?}", g.probs, w);
    }
}

fn exits_macs(b: &dyce_runtime::model::Bundle, cfg: &ResolvedConfig) -> u64 {
    cfg.exits.iter().flatten().map(|s| b.manifest.exits[s.head].macs).sum()
}

#[test]
fn full_config_equals_plain_backbone() {
    let (b, raw) = tiny_bundle(3, vec![]);
    let mut be = CandleBackend::new(&b.backbone, b.manifest.input.shape).unwrap();
    let x = random_input(5, PER, 2);
    let cfg = ResolvedConfig::resolve(&b, b.configs.get("full").unwrap(), 0).unwrap();
    let got = run_batch(&b, &mut be, &cfg, &x, 5).unwrap();
    let want = softmax(&plain_logits(&b.manifest.backbone, &raw, &tensor(&x, &[5, 1, 12, 12])));
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((g.exit, g.macs), (None, b.macs.total));
        assert!(rel_err(&g.probs, w) < 1e-5);
    }
}

#[test]
fn zero_threshold_exits_everything_at_the_first_enabled_exit() {
    let (b, _) = tiny_bundle(3, vec![entry("zero", &[(1, "mlp1", 0.0), (3, "mlp1", 0.0)])]);
    let mut be = CandleBackend::new(&b.backbone, b.manifest.input.shape).unwrap();
    let x = random_input(4, PER, 2);
    let cfg = ResolvedConfig::resolve(&b, b.configs.get("zero").unwrap(), 0).unwrap();
    for r in run_batch(&b, &mut be, &cfg, &x, 4).unwrap() {
        assert_eq!(r.exit, Some(1));
        assert_eq!(r.macs, b.macs.cumulative[1] + b.manifest.exits[2].macs);
    }
}

#[test]
fn rejects_wrong_input_length() {
    let (b, _) = tiny_bundle(3, vec![]);
    let mut be = CandleBackend::new(&b.backbone, b.manifest.input.shape).unwrap();
    let cfg = ResolvedConfig::resolve(&b, b.configs.get("full").unwrap(), 0).unwrap();
    let err = run_batch(&b, &mut be, &cfg, &[0.0; 10], 1).unwrap_err();
    assert!(err.to_string().contains("expected 144"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Batched results equal single-sample results, so compaction keeps every sample's identity
    /// and order, for random thresholds, exit choices and batch sizes.
    #[test]
    fn compaction_keeps_identity_and_order(
        n in 1usize..20,
        seed in 0u64..1000,
        slots in proptest::collection::vec(proptest::option::of((0usize..2, 0.2f32..0.6)), 4),
    ) {
        let exits: Vec<(usize, &str, f32)> = slots
            .iter()
            .enumerate()
            .filter_map(|(p, s)| s.map(|(t, th)| (p, if t == 0 { "mlp1" } else { "mlp2x16" }, th)))
            .collect();
        let (b, _) = tiny_bundle(11, vec![entry("c", &exits)]);
        let cfg = ResolvedConfig::resolve(&b, b.configs.get("c").unwrap(), 0).unwrap();
        let x = random_input(n, PER, seed);
        let mut candle = CandleBackend::new(&b.backbone, b.manifest.input.shape).unwrap();
        check_batched_equals_single(&b, &mut candle, &cfg, &x, n)?;
        let mut fast = FastBackend::new(&b.backbone, b.manifest.input.shape, default_pool(None).unwrap()).unwrap();
        check_batched_equals_single(&b, &mut fast, &cfg, &x, n)?;
        check_profiled(&b, &mut fast, &cfg, &x, n)?;
    }
}

/// Sums what a profiler is told.
#[derive(Default)]
struct Sums {
    backbone_macs: u64,
    exit_macs: u64,
    exit_calls: usize,
}

impl Profiler for Sums {
    const ON: bool = true;
    fn stage(&mut self, stage: Stage, _rows: usize, macs: u64, _took: std::time::Duration) {
        match stage {
            Stage::Backbone => self.backbone_macs += macs,
            Stage::Exit(_) => {
                self.exit_macs += macs;
                self.exit_calls += 1;
            }
        }
    }
}

/// `run_profiled` answers as `run_batch` does, and the MACs it reports per stage add up to the
/// MACs the answers say they took: the profile accounts for every stage exactly once.
fn check_profiled<B: Backend>(
    b: &Bundle,
    be: &mut B,
    cfg: &ResolvedConfig,
    x: &[f32],
    n: usize,
) -> Result<(), TestCaseError> {
    let want = run_batch(b, be, cfg, x, n).unwrap();
    let mut sums = Sums::default();
    let got = run_profiled(b, be, cfg, x, n, &mut sums).unwrap();
    prop_assert_eq!(&got, &want);
    prop_assert_eq!(sums.backbone_macs + sums.exit_macs, want.iter().map(|r| r.macs).sum::<u64>());
    prop_assert!(sums.exit_calls <= cfg.exits.iter().flatten().count());
    Ok(())
}

fn check_batched_equals_single<B: Backend>(
    b: &Bundle,
    be: &mut B,
    cfg: &ResolvedConfig,
    x: &[f32],
    n: usize,
) -> Result<(), TestCaseError> {
    let batched = run_batch(b, be, cfg, x, n).unwrap();
    prop_assert_eq!(batched.len(), n);
    for (i, got) in batched.iter().enumerate() {
        let one = run_batch(b, be, cfg, &x[i * PER..(i + 1) * PER], 1).unwrap().remove(0);
        prop_assert_eq!(got.exit, one.exit);
        prop_assert_eq!(got.label, one.label);
        prop_assert_eq!(got.macs, one.macs);
        prop_assert!(rel_err(&got.probs, &one.probs) < 1e-5);
    }
    Ok(())
}
