//! What the executor needs from a compute backend.

use super::EngineError;

/// Runs the backbone one residual block at a time on a batch of activations.
///
/// Backends are used from one model thread, so they take `&mut self` and may keep scratch
/// buffers between calls.
pub trait Backend {
    /// Activations between blocks.
    type Act;

    /// Runs the stem on `n` normalised NCHW images.
    fn stem(&mut self, input: &[f32], n: usize) -> Result<Self::Act, EngineError>;

    /// Runs residual block `i`.
    fn block(&mut self, i: usize, x: Self::Act) -> Result<Self::Act, EngineError>;

    /// Global average pool: `n × channels`, row-major.
    fn pool(&mut self, x: &Self::Act) -> Result<Vec<f32>, EngineError>;

    /// Keeps only the batch rows `keep` (in that order).
    fn select(&mut self, x: Self::Act, keep: &[usize]) -> Result<Self::Act, EngineError>;

    /// Takes back activations the executor is done with, so their buffers can be reused.
    fn recycle(&mut self, _x: Self::Act) {}

    /// Runs `f` on shards of a batch of `n` images (contiguous ranges, in order) in parallel,
    /// each on an independent copy of the backend that shares its weights; `None` when the
    /// batch is better run whole (the default).
    fn shard<R: Send>(
        &mut self,
        _n: usize,
        _f: &(dyn Fn(&mut Self, std::ops::Range<usize>) -> R + Sync),
    ) -> Option<Vec<R>>
    where
        Self: Sized,
    {
        None
    }

    /// `f` over shards of `n` when [`Backend::shard`] splits the batch, else once over `0..n`
    /// on this backend: what every caller of `shard` does.
    fn sharded_or_whole<R: Send>(
        &mut self,
        n: usize,
        f: &(dyn Fn(&mut Self, std::ops::Range<usize>) -> R + Sync),
    ) -> Vec<R>
    where
        Self: Sized,
    {
        self.shard(n, f).unwrap_or_else(|| vec![f(self, 0..n)])
    }
}
