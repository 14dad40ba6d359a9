//! Records of every exit's top-1 prediction and confidence on a split: the search's input.

use dyce_search::{ExitRecords, Records, RecordsError};

use super::features::Features;
use dyce_runtime::model::linear::{argmax, softmax_rows};
use dyce_runtime::model::macs::BackboneMacs;
use dyce_runtime::model::{ExitHead, ExitType};

/// Builds the search records: `heads` must hold every type of `types` at every position.
pub fn record(
    feats: &Features,
    labels: &[u8],
    heads: &[ExitHead],
    types: &[ExitType],
    macs: &BackboneMacs,
    classes: usize,
    exit_macs: &dyn Fn(usize, &ExitType) -> u64,
) -> Result<Records, RecordsError> {
    let top1 = |logits: &mut Vec<f32>| -> (Vec<u32>, Vec<f32>) {
        softmax_rows(logits, classes);
        logits.chunks_exact(classes).map(argmax).map(|(l, c)| (l as u32, c.clamp(0.0, 1.0))).unzip()
    };
    let mut exits = Vec::with_capacity(feats.channels.len());
    for p in 0..feats.channels.len() {
        let mut per_type = Vec::with_capacity(types.len());
        for t in types {
            let head = heads.iter().find(|h| h.position == p && h.ty == *t).expect("every head was trained");
            let mut logits = head.forward(&feats.per_position[p], feats.n);
            let (pred, conf) = top1(&mut logits);
            per_type.push(ExitRecords { macs: exit_macs(p, t) as f64, pred, conf });
        }
        exits.push(per_type);
    }
    let mut logits = feats.final_logits.clone();
    let (final_pred, _) = top1(&mut logits);
    Records::new(
        labels.iter().map(|&l| l as u32).collect(),
        final_pred,
        macs.cumulative.iter().map(|&m| m as f64).collect(),
        macs.total as f64,
        exits,
    )
}
