//! Records of every exit's top-1 prediction and confidence on a split: the search's input.

use dyce_search::{ExitRecords, Records};

use crate::cache::CachedFeatures;
use crate::error::CalibrateError;
use dyce_runtime::model::linear::{argmax, softmax_rows};
use dyce_runtime::model::macs::BackboneMacs;
use dyce_runtime::model::{ExitHead, ExitType};

/// What `record` needs besides the split's features and labels.
/// Per-sample cost of an enabled exit at a position, by type.
pub type CallCost<'a> = &'a dyn Fn(usize, &ExitType) -> f64;

pub struct RecordContext<'a> {
    /// Exit types, in the order records index them.
    pub types: &'a [ExitType],
    /// Cumulative backbone MACs.
    pub macs: &'a BackboneMacs,
    /// Cost (MACs, or charged MACs) of an exit, per sample that reaches it.
    pub exit_macs: &'a dyn Fn(usize, &ExitType) -> u64,
    /// Cost of an exit per sample of the split while it is enabled (its per-call share), if
    /// charged.
    pub call_macs: Option<CallCost<'a>>,
}

/// Top-1 class and confidence of every exit head on the split's features, one position in
/// memory at a time; run once per split and re-costed by [`costed`].
pub struct HeadOutputs {
    /// Per position, per type: (predictions, confidences).
    pub per_exit: Vec<Vec<(Vec<u32>, Vec<f32>)>>,
    /// The full model's predictions.
    pub final_pred: Vec<u32>,
}

/// Runs every head over the cached features.
pub fn head_outputs(
    feats: &CachedFeatures,
    heads: &[ExitHead],
    types: &[ExitType],
    classes: usize,
) -> Result<HeadOutputs, CalibrateError> {
    let top1 = |logits: &mut Vec<f32>| -> (Vec<u32>, Vec<f32>) {
        softmax_rows(logits, classes);
        logits.chunks_exact(classes).map(argmax).map(|(l, c)| (l as u32, c.clamp(0.0, 1.0))).unzip()
    };
    let mut per_exit = Vec::with_capacity(feats.channels.len());
    for p in 0..feats.channels.len() {
        let rows = feats.position(p)?;
        let mut per_type = Vec::with_capacity(types.len());
        for t in types {
            let head = heads.iter().find(|h| h.position == p && h.ty == *t).expect("every head was trained");
            per_type.push(top1(&mut head.forward(&rows, feats.n)));
        }
        per_exit.push(per_type);
    }
    Ok(HeadOutputs { per_exit, final_pred: feats.final_top1()?.0 })
}

/// The search's records from head outputs, with each exit costed by `ctx.exit_macs`.
pub fn costed(out: &HeadOutputs, labels: &[u32], ctx: &RecordContext) -> Result<Records, CalibrateError> {
    let exits = out
        .per_exit
        .iter()
        .enumerate()
        .map(|(p, per_type)| {
            per_type
                .iter()
                .zip(ctx.types)
                .map(|((pred, conf), t)| ExitRecords {
                    macs: (ctx.exit_macs)(p, t) as f64,
                    call_macs: ctx.call_macs.map_or(0.0, |f| f(p, t)),
                    pred: pred.clone(),
                    conf: conf.clone(),
                })
                .collect()
        })
        .collect();
    Ok(Records::new(
        labels.to_vec(),
        out.final_pred.clone(),
        ctx.macs.cumulative.iter().map(|&m| m as f64).collect(),
        ctx.macs.total as f64,
        exits,
    )?)
}
