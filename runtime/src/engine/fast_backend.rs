//! The serving backend: dyce-kernels' blocked-layout convolutions with fused epilogues.

use std::sync::Arc;

use dyce_kernels::{
    gather_batch, global_avg_pool_into, Arena, BlockedTensor, ConvSpec, PackedConv, ResBlock, Stem,
};

use super::backend::Backend;
use super::EngineError;
use crate::model::resnet::FoldedConv;
use crate::model::spec::{BlockKind, StemKind};
use crate::model::ResNet;

impl From<dyce_kernels::KernelError> for EngineError {
    fn from(e: dyce_kernels::KernelError) -> Self {
        EngineError::Tensor(e.to_string())
    }
}

fn pack(c: &FoldedConv) -> Result<PackedConv, EngineError> {
    let g = c.geom;
    let spec = ConvSpec { cin: g.cin, cout: g.cout, kh: g.k, kw: g.k, stride: g.stride, pad: g.pad };
    Ok(PackedConv::new(spec, &c.weight, &c.bias)?)
}

/// A thread pool sized to the CPUs this process may really use (cgroup quota included).
pub fn default_pool(threads: Option<usize>) -> Result<Arc<rayon::ThreadPool>, EngineError> {
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("dyce-kernel-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| EngineError::Tensor(format!("thread pool: {e}")))
}

/// Runs a folded ResNet on packed weights; buffers are reused, so steady state allocates nothing.
pub struct FastBackend {
    stem: Stem,
    blocks: Vec<ResBlock>,
    shape: [usize; 3],
    pool: Arc<rayon::ThreadPool>,
    arena: Arena,
    // Buffers handed back by `recycle` and `select`, reused for the next input and gather.
    spare: Vec<BlockedTensor>,
}

impl FastBackend {
    /// Packs a folded backbone for images of `[c, h, w]`, running on `pool`.
    pub fn new(net: &ResNet, shape: [usize; 3], pool: Arc<rayon::ThreadPool>) -> Result<Self, EngineError> {
        let blocks = net
            .blocks
            .iter()
            .map(|b| {
                let c = b.convs.iter().map(pack).collect::<Result<Vec<_>, _>>()?;
                let ds = b.downsample.as_ref().map(pack).transpose()?;
                let mut c = c.into_iter();
                let mut next =
                    || c.next().ok_or_else(|| EngineError::Tensor(format!("{}: missing conv", b.name)));
                Ok(match net.spec.block {
                    BlockKind::Basic => ResBlock::basic(next()?, next()?, ds)?,
                    BlockKind::Bottleneck => ResBlock::bottleneck(next()?, next()?, next()?, ds)?,
                })
            })
            .collect::<Result<_, EngineError>>()?;
        let stem = Stem::new(pack(&net.stem)?, net.spec.stem == StemKind::Imagenet);
        Ok(Self { stem, blocks, shape, pool, arena: Arena::new(), spare: Vec::new() })
    }

    fn buffer(&mut self) -> BlockedTensor {
        self.spare.pop().unwrap_or_default()
    }
}

impl Backend for FastBackend {
    type Act = BlockedTensor;

    fn stem(&mut self, input: &[f32], n: usize) -> Result<BlockedTensor, EngineError> {
        let [c, h, w] = self.shape;
        let mut x = self.buffer();
        x.load_nchw(input, n, c, h, w)?;
        self.stem.forward_inplace(&mut x, &mut self.arena, &self.pool)?;
        Ok(x)
    }

    fn block(&mut self, i: usize, mut x: BlockedTensor) -> Result<BlockedTensor, EngineError> {
        self.blocks[i].forward_inplace(&mut x, &mut self.arena, &self.pool)?;
        Ok(x)
    }

    fn pool(&mut self, x: &BlockedTensor) -> Result<Vec<f32>, EngineError> {
        let mut out = Vec::new();
        global_avg_pool_into(x, &mut out);
        Ok(out)
    }

    fn select(&mut self, x: BlockedTensor, keep: &[usize]) -> Result<BlockedTensor, EngineError> {
        let mut out = self.buffer();
        gather_batch(&x, keep, &mut out)?;
        self.spare.push(x);
        Ok(out)
    }

    fn recycle(&mut self, x: BlockedTensor) {
        self.spare.push(x);
    }

    fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}
