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

/// Batches of at least two images and at most this many MACs per thread run as shards, one
/// per thread, each through the whole network on its own (see `Backend::shard`). Splitting each
/// convolution across threads instead costs a fork-join per layer, which small maps cannot
/// amortise (at batch 2, resnet20 @28 even ran on one thread); one fork-join per batch can, and
/// early-exit tails, which shrink after every exit, stay on one thread each instead of running
/// tiny batches across both. Networks of GMACs per image (ImageNet ResNets) stay on per-layer
/// parallelism, which keeps their batch-1 latency low. `DYCE_SHARD_MACS` overrides the limit.
const SHARD_MACS_PER_THREAD: u64 = 1_000_000_000;

fn shard_limit() -> u64 {
    static L: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *L.get_or_init(|| {
        std::env::var("DYCE_SHARD_MACS").ok().and_then(|v| v.parse().ok()).unwrap_or(SHARD_MACS_PER_THREAD)
    })
}

/// `DYCE_NO_SHARDS=1` turns sharding off (for side-by-side benchmarks).
fn no_shards() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("DYCE_NO_SHARDS").is_some_and(|v| v != "0"))
}

/// The packed weights, shared by a backend and its shards.
struct PackedNet {
    stem: Stem,
    blocks: Vec<ResBlock>,
}

/// Runs a folded ResNet on packed weights; buffers are reused, so steady state allocates nothing.
pub struct FastBackend {
    net: Arc<PackedNet>,
    full_macs: u64,
    shape: [usize; 3],
    pool: Arc<rayon::ThreadPool>,
    // Shards run every kernel on their own thread (the caller's pool thread).
    serial: bool,
    arena: Arena,
    // Buffers handed back by `recycle` and `select`, reused for the next input and gather.
    spare: Vec<BlockedTensor>,
    shards: Vec<FastBackend>,
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
        let full_macs = crate::model::macs::backbone_macs(&net.spec, shape[1], shape[2]).total;
        Ok(Self::on(Arc::new(PackedNet { stem, blocks }), full_macs, shape, pool, false))
    }

    fn on(
        net: Arc<PackedNet>,
        full_macs: u64,
        shape: [usize; 3],
        pool: Arc<rayon::ThreadPool>,
        serial: bool,
    ) -> Self {
        Self {
            net,
            full_macs,
            shape,
            pool,
            serial,
            arena: Arena::new(),
            spare: Vec::new(),
            shards: Vec::new(),
        }
    }

    /// Shards for a batch of `n`, or 0 when it runs whole.
    fn ways(&self, n: usize) -> usize {
        let threads = self.pool.current_num_threads();
        let ways = threads.min(n);
        let per_thread = self.full_macs.saturating_mul(n.div_ceil(ways.max(1)) as u64);
        // Uneven shares idle a thread for a whole image: 3 images on 2 threads would run at 75%
        // (below what splitting each convolution gives), 5 on 2 at 83%, 2 or 4 at 100%.
        let uneven_small = !n.is_multiple_of(ways.max(1)) && n < 2 * ways + 1;
        if self.serial || ways < 2 || uneven_small || per_thread > shard_limit() || no_shards() {
            0
        } else {
            ways
        }
    }

    /// A serial copy sharing the packed weights, with its own buffers.
    fn shard_copy(&self) -> Self {
        Self::on(self.net.clone(), self.full_macs, self.shape, self.pool.clone(), true)
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
        if self.serial {
            self.net.stem.forward_serial_inplace(&mut x, &mut self.arena)?;
        } else {
            self.net.stem.forward_inplace(&mut x, &mut self.arena, &self.pool)?;
        }
        Ok(x)
    }

    fn block(&mut self, i: usize, mut x: BlockedTensor) -> Result<BlockedTensor, EngineError> {
        if self.serial {
            self.net.blocks[i].forward_serial_inplace(&mut x, &mut self.arena)?;
        } else {
            self.net.blocks[i].forward_inplace(&mut x, &mut self.arena, &self.pool)?;
        }
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
        if self.serial {
            f()
        } else {
            self.pool.install(f)
        }
    }

    fn shard<R: Send>(
        &mut self,
        n: usize,
        f: &(dyn Fn(&mut Self, std::ops::Range<usize>) -> R + Sync),
    ) -> Option<Vec<R>> {
        use rayon::prelude::*;
        let ways = self.ways(n);
        if ways == 0 {
            return None;
        }
        while self.shards.len() < ways {
            let s = self.shard_copy();
            self.shards.push(s);
        }
        let shards = &mut self.shards[..ways];
        Some(self.pool.install(|| {
            shards.par_iter_mut().enumerate().map(|(k, s)| f(s, k * n / ways..(k + 1) * n / ways)).collect()
        }))
    }
}
