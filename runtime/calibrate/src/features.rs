//! Pooled features of a frozen backbone at every exit position, computed once per split so
//! that every exit head can be trained and recorded without running the backbone again.

use dyce_data::augment;
use dyce_data::fashion_mnist::Images;
use dyce_runtime::engine::{Backend, EngineError, FastBackend};
use dyce_runtime::model::ResNet;

/// Features of one split.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Per position: `n × channels[p]` globally pooled activations, row-major.
    pub per_position: Vec<Vec<f32>>,
    /// Channels at each position.
    pub channels: Vec<usize>,
    /// Final head logits, `n × classes`.
    pub final_logits: Vec<f32>,
    /// Number of samples.
    pub n: usize,
}

impl Features {
    /// Row `i` of position `p`.
    pub fn row(&self, p: usize, i: usize) -> &[f32] {
        let c = self.channels[p];
        &self.per_position[p][i * c..(i + 1) * c]
    }
}

/// Runs the backbone over `set` (normalised, no augmentation) in batches of `batch`.
pub fn extract(
    net: &ResNet,
    be: &mut FastBackend,
    set: &Images,
    batch: usize,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Features, EngineError> {
    let positions = net.blocks.len();
    let channels: Vec<usize> = (0..positions).map(|p| net.channels_at(p)).collect();
    let mut per_position: Vec<Vec<f32>> =
        channels.iter().map(|c| Vec::with_capacity(c * set.len())).collect();
    let mut final_logits = Vec::with_capacity(set.len() * net.spec.num_classes);
    let idx: Vec<usize> = (0..set.len()).collect();
    let mut rng = rand::rng();
    for chunk in idx.chunks(batch.max(1)) {
        let x = augment::batch(set, chunk, 0, false, &mut rng);
        let mut a = be.stem(&x, chunk.len())?;
        let mut pooled = Vec::new();
        for (p, feats) in per_position.iter_mut().enumerate() {
            a = be.block(p, a)?;
            pooled = be.pool(&a)?;
            feats.extend_from_slice(&pooled);
        }
        be.recycle(a);
        final_logits.extend(net.fc.forward(&pooled, chunk.len(), false));
        on_batch(chunk.len());
    }
    Ok(Features { per_position, channels, final_logits, n: set.len() })
}
