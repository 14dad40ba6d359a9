//! What an exit really costs on this machine: a fixed time per call (its weights come back from
//! memory, pooling and compaction set up) plus a time per row, fitted for every exit type at
//! every position, and charged by the search in backbone-MAC equivalents.
//!
//! Measured in situ on one thread, as a shard runs when serving: every position carries a head
//! of the type being measured, with a threshold no image reaches, so each head sees exactly the
//! batch's rows and the blocks in between evict its weights as they do in serving. Batches of
//! 1, 2, 4, 8 and 16 rows give five (rows, time) points per head; a least-squares line through
//! them is the model. Heads are timed with random weights of the right shapes: their cost does
//! not depend on the values, so the costs are known before any head is trained.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dyce_api::ConfigTable;
use dyce_runtime::engine::{
    default_pool, run_profiled, ExitSlot, FastBackend, Profiler, ResolvedConfig, Stage,
};
use dyce_runtime::model::bundle::ExitInfo;
use dyce_runtime::model::random::random_checkpoint;
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::{Bundle, ExitType, Manifest};
use serde::{Deserialize, Serialize};

use crate::error::CalibrateError;

/// Rows per call at which the per-call time is spread over the images by default: a served
/// batch of 32 is two shards of 16, and every enabled exit is called once per shard while any
/// of its images is still in flight.
pub const REFERENCE_ROWS: usize = 16;

/// Row counts measured.
const ROWS: [usize; 5] = [1, 2, 4, 8, 16];

/// The machine a cost model was measured on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    /// CPU model, from /proc/cpuinfo.
    pub cpu: String,
    /// Kernels' instruction set.
    pub isa: String,
}

/// One head's fitted cost.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeadCost {
    /// Position.
    pub position: usize,
    /// Exit type.
    pub exit_type: String,
    /// Fixed time per call (ns).
    pub call_ns: f64,
    /// Time per row (ns).
    pub row_ns: f64,
}

/// Per-call plus per-row exit costs, and the backbone's time per MAC to express them in MACs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExitCostModel {
    /// Where it was measured.
    pub machine: Machine,
    /// Backbone time per MAC (ns) on the same thread, at `rows_per_call` rows.
    pub backbone_ns_per_mac: f64,
    /// Rows per call the per-call time is spread over when charging.
    pub rows_per_call: usize,
    /// Every head measured.
    pub heads: Vec<HeadCost>,
}

impl ExitCostModel {
    fn head(&self, position: usize, ty: &ExitType) -> Option<&HeadCost> {
        let name = ty.to_string();
        self.heads.iter().find(|h| h.position == position && h.exit_type == name)
    }

    /// What one image reaching the exit costs, in backbone MACs (its row). `None` if the head
    /// was not measured.
    pub fn row_macs(&self, position: usize, ty: &ExitType) -> Option<f64> {
        Some(self.head(position, ty)?.row_ns / self.backbone_ns_per_mac)
    }

    /// What every image costs while the exit is enabled, in backbone MACs: the call spread over
    /// the rows of a shard, since the exit is called once per shard while any of its images is
    /// in flight. 0 if the head was not measured.
    pub fn call_macs(&self, position: usize, ty: &ExitType) -> f64 {
        self.head(position, ty)
            .map_or(0.0, |h| h.call_ns / self.rows_per_call.max(1) as f64 / self.backbone_ns_per_mac)
    }
}

/// Per head: (rows, ns) samples, and the backbone's total.
#[derive(Default)]
struct Samples {
    counting: bool,
    heads: BTreeMap<usize, Vec<(usize, f64)>>,
    backbone: (f64, f64),
}

impl Profiler for Samples {
    const ON: bool = true;
    fn stage(&mut self, stage: Stage, rows: usize, macs: u64, took: Duration) {
        if !self.counting {
            return;
        }
        match stage {
            Stage::Backbone => {
                self.backbone.0 += took.as_nanos() as f64;
                self.backbone.1 += macs as f64;
            }
            Stage::Exit(h) => self.heads.entry(h).or_default().push((rows, took.as_nanos() as f64)),
        }
    }
}

/// Least-squares `(intercept, slope)` of the medians of `ns` at each row count, clamped to ≥ 0.
fn fit(samples: &[(usize, f64)]) -> (f64, f64) {
    let mut pts = Vec::new();
    for r in ROWS {
        let mut v: Vec<f64> = samples.iter().filter(|s| s.0 == r).map(|s| s.1).collect();
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        pts.push((r as f64, v[v.len() / 2]));
    }
    let n = pts.len() as f64;
    let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = if sxx > 0.0 { (sxy / sxx).max(0.0) } else { 0.0 };
    ((my - slope * mx).max(0.0), slope)
}

/// Measures every type of `types` at every position of `manifest`'s backbone (whose tensors are
/// in `backbone`), spending about `seconds` in all.
pub fn measure(
    manifest: &Manifest,
    backbone: &std::collections::HashMap<String, candle_core::Tensor>,
    types: &[ExitType],
    seconds: f64,
) -> Result<ExitCostModel, CalibrateError> {
    let mut tensors = backbone.clone();
    let heads = random_checkpoint(&manifest.backbone, types, 7)?;
    tensors.extend(heads.into_iter().filter(|(k, _)| k.starts_with("exits.")));
    let positions = manifest.backbone.positions().len();
    let mut m = manifest.clone();
    m.exits = (0..positions)
        .flat_map(|p| types.iter().map(move |t| ExitInfo { position: p, exit_type: t.to_string(), macs: 0 }))
        .collect();
    let bundle = Bundle::from_parts(m, &TensorStore::new(tensors), ConfigTable::full_only(&manifest.name))?;
    let shape = manifest.input.shape;
    let per: usize = shape.iter().product();
    // Values in the normalised range; the cost does not depend on them.
    let images: Vec<f32> =
        (0..per * REFERENCE_ROWS).map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0).collect();
    // One thread, as a shard runs: outside a pool the heads' kernels would use rayon's global one.
    let pool = default_pool(Some(1))?;
    let mut samples = Samples::default();
    let budget = Duration::from_secs_f64((seconds / (ROWS.len() * types.len() * 2) as f64).max(0.01));
    pool.install(|| -> Result<(), CalibrateError> {
        let mut be = FastBackend::new(&bundle.backbone, shape, pool.clone())?;
        for t in types {
            let exits = (0..positions)
                .map(|p| bundle.exit_index(p, t).map(|head| ExitSlot { head, threshold: 2.0 }))
                .collect();
            let cfg = ResolvedConfig { id: t.to_string(), generation: 0, exits };
            // Warm-up, uncounted, then interleaved row counts so drift hits them alike.
            for pass in 0..2 {
                samples.counting = pass == 1;
                for r in ROWS {
                    let start = Instant::now();
                    while start.elapsed() < budget {
                        run_profiled(&bundle, &mut be, &cfg, &images[..r * per], r, &mut samples)?;
                    }
                }
            }
        }
        Ok(())
    })?;
    let backbone_ns_per_mac = samples.backbone.0 / samples.backbone.1.max(1.0);
    let heads = samples
        .heads
        .iter()
        .map(|(&h, s)| {
            let (call_ns, row_ns) = fit(s);
            let e = &bundle.exits[h];
            HeadCost { position: e.position, exit_type: e.ty.to_string(), call_ns, row_ns }
        })
        .collect();
    Ok(ExitCostModel {
        machine: Machine { cpu: dyce_kernels::cpu_model(), isa: dyce_kernels::detect_isa().to_string() },
        backbone_ns_per_mac,
        rows_per_call: REFERENCE_ROWS,
        heads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_a_line_and_ignores_an_outlier_run() {
        let mut s: Vec<(usize, f64)> =
            ROWS.iter().flat_map(|&r| [(r, 1000.0 + 50.0 * r as f64); 3]).collect();
        s.push((4, 1e9)); // one preempted call: the median ignores it
        let (a, b) = fit(&s);
        assert!((a - 1000.0).abs() < 1e-6 && (b - 50.0).abs() < 1e-6, "{a} {b}");
        // A decreasing line (noise) is clamped to a flat one.
        let (_, b) = fit(&[(1, 200.0), (16, 100.0)]);
        assert_eq!(b, 0.0);
    }

    #[test]
    fn the_call_is_spread_over_the_reference_rows() {
        let m = ExitCostModel {
            machine: Machine { cpu: "x".into(), isa: "y".into() },
            backbone_ns_per_mac: 0.01,
            rows_per_call: 16,
            heads: vec![HeadCost {
                position: 2,
                exit_type: "mlp3x512".into(),
                call_ns: 1600.0,
                row_ns: 50.0,
            }],
        };
        let t: ExitType = "mlp3x512".parse().unwrap();
        assert!((m.row_macs(2, &t).unwrap() - 5_000.0).abs() < 1e-6);
        assert!((m.call_macs(2, &t) - 10_000.0).abs() < 1e-6);
        assert!(m.row_macs(1, &t).is_none());
        assert_eq!(m.call_macs(1, &t), 0.0);
    }
}
