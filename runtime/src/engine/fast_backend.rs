//! The serving backend: dyce-kernels' blocked-layout convolutions with fused epilogues.

use std::sync::Arc;

use dyce_kernels::{
    gather_batch, global_avg_pool_into, Arena, BlockedTensor, ConvNextBlock, ConvNextStem, Par, ResBlock,
    Stem, Team,
};

use super::backend::Backend;
use super::packing::pack;
use super::EngineError;
use crate::model::spec::{BlockKind, StemKind};
use crate::model::{Backbone, ResNet};

impl From<dyce_kernels::KernelError> for EngineError {
    fn from(e: dyce_kernels::KernelError) -> Self {
        EngineError::Tensor(e.to_string())
    }
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

/// Batches of at least two images per thread and at most this many MACs per thread run as
/// shards, one per thread, each through the whole network on its own (see `Backend::shard`):
/// one fork-join per batch instead of one per layer, and early-exit tails, which shrink after
/// every exit, stay on one thread each. Smaller batches run whole, split layer by layer (on the
/// spinning team up to `TEAM_MACS`, else on rayon). No limit by default: the ImageNet ResNets
/// gain too (resnet50 on 2 threads, AVX-512, median of 4 alternating runs: batch 8 23.9 against
/// 22.7 img/s layer by layer, batch 32 24.3 against 21.8), and a shard's images take as long
/// one after another as the whole batch does split across threads, so batch latency does not
/// grow. `DYCE_SHARD_MACS` sets a limit (side-by-side benchmarks).
const SHARD_MACS_PER_THREAD: u64 = u64::MAX;

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

/// Whole batches of up to this many backbone MACs run on the spinning team; bigger ones (an
/// ImageNet ResNet even at batch 1) on the rayon pool, whose range splitting keeps a thread on
/// neighbouring tasks that share weights (measured: resnet50 batch 8 about 4% faster there).
const TEAM_MACS: u64 = 1_000_000_000;

/// `DYCE_NO_TEAM=1` runs whole batches on the rayon pool instead of the spinning team (for
/// side-by-side benchmarks).
fn no_team() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("DYCE_NO_TEAM").is_some_and(|v| v != "0"))
}

/// `DYCE_SERIAL_IMAGES=N` runs the stem and blocks of a whole batch serially on the model
/// thread, without the team, while they hold at most N images (for side-by-side benchmarks of
/// small batches under load, where the helper's spinning competes with the HTTP threads for
/// the cores: `scripts/bench/serial_small.py`).
fn serial_images() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::env::var("DYCE_SERIAL_IMAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Shards each read every weight once per batch, where a whole batch reads them once: below
/// this many MACs per weight and image the doubled weight traffic costs more than the fork-join
/// per layer that shards save. Measured on `convnextv2_atto_s` at 28 px (7 MACs per weight,
/// 3.7 M weights, 2 threads, under load): batch 8 ran at 76 img/s as shards and 143 whole;
/// resnet20 at 28 (150 MACs per weight) and the ImageNet networks (over 100) keep sharding.
const SHARD_MACS_PER_WEIGHT: u64 = 32;

/// Weights of the backbone's convolutions and linear layers.
fn weight_count(net: &Backbone) -> u64 {
    let n = match net {
        Backbone::ResNet(r) => {
            let convs = r.blocks.iter().flat_map(|b| b.convs.iter().chain(b.downsample.as_ref()));
            convs.chain([&r.stem]).map(|c| c.weight.len()).sum::<usize>()
        }
        Backbone::ConvNext(c) => {
            let per_block = c.blocks.iter().map(|b| {
                let ds = b.downsample.as_ref().map_or(0, |(_, d)| d.weight.len());
                ds + b.conv_dw.weight.len() + b.fc1.weight.len() + b.fc2.weight.len()
            });
            per_block.sum::<usize>() + c.stem.weight.len()
        }
    };
    (n + net.fc().weight.len()) as u64
}

/// The packed weights, shared by a backend and its shards.
enum PackedNet {
    /// A folded ResNet.
    ResNet { stem: Stem, blocks: Vec<ResBlock> },
    /// A ConvNeXt-V2.
    ConvNext { stem: ConvNextStem, blocks: Vec<ConvNextBlock> },
}

fn pack_resnet(net: &ResNet) -> Result<PackedNet, EngineError> {
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
    Ok(PackedNet::ResNet { stem, blocks })
}

/// Runs a backbone on packed weights; buffers are reused, so steady state allocates nothing.
pub struct FastBackend {
    net: Arc<PackedNet>,
    full_macs: u64,
    /// Whether an image does enough work per weight for shards to pay (see `ways`).
    weight_reuse: bool,
    shape: [usize; 3],
    pool: Arc<rayon::ThreadPool>,
    /// Runs the layers of a batch that is not sharded (a single image above all): its helpers
    /// spin for the length of the pass, so even 20 µs convolutions split across threads.
    team: Option<Arc<Team>>,
    // Shards run every kernel on their own thread (the caller's pool thread).
    serial: bool,
    arena: Arena,
    // Buffers handed back by `recycle` and `select`, reused for the next input and gather.
    spare: Vec<BlockedTensor>,
    shards: Vec<FastBackend>,
}

impl FastBackend {
    /// Packs a backbone for images of `[c, h, w]`, running on `pool`.
    pub fn new(net: &Backbone, shape: [usize; 3], pool: Arc<rayon::ThreadPool>) -> Result<Self, EngineError> {
        let packed = match net {
            Backbone::ResNet(r) => pack_resnet(r)?,
            Backbone::ConvNext(c) => {
                let (stem, blocks) = super::fast_convnext::pack_convnext(c)?;
                PackedNet::ConvNext { stem, blocks }
            }
        };
        let full_macs = crate::model::macs::backbone_macs(&net.spec(), shape[1], shape[2]).total;
        let threads = pool.current_num_threads();
        let team = if threads > 1 && !no_team() {
            Some(Arc::new(Team::new(threads).map_err(|e| EngineError::Tensor(format!("kernel team: {e}")))?))
        } else {
            None
        };
        let mut be = Self::on(Arc::new(packed), full_macs, shape, pool, false);
        be.team = team;
        be.weight_reuse = full_macs >= SHARD_MACS_PER_WEIGHT.saturating_mul(weight_count(net));
        Ok(be)
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
            weight_reuse: true,
            shape,
            pool,
            team: None,
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
        // Fewer than two images per thread run whole on the team: measured side by side,
        // 2 images on 2 threads ran about 14% faster that way (3 as shards would also idle a
        // thread for a whole image); from 4 images up shards are as fast or faster.
        let too_few = n < 2 * ways;
        let light = !self.weight_reuse;
        if self.serial || ways < 2 || too_few || light || per_thread > shard_limit() || no_shards() {
            0
        } else {
            ways
        }
    }

    /// A serial copy sharing the packed weights, with its own buffers.
    fn shard_copy(&self) -> Self {
        Self::on(self.net.clone(), self.full_macs, self.shape, self.pool.clone(), true)
    }

    /// The team, when a batch of `n` runs on it: whole batches of up to `TEAM_MACS`.
    fn team_for(&self, n: usize) -> Option<Arc<Team>> {
        self.team
            .clone()
            .filter(|_| !self.serial_for(n) && self.full_macs.saturating_mul(n as u64) <= TEAM_MACS)
    }

    /// Whether `n` images run on the calling thread alone: a shard, or a small batch under
    /// `DYCE_SERIAL_IMAGES`.
    fn serial_for(&self, n: usize) -> bool {
        self.serial || n <= serial_images()
    }

    /// Where the kernels run; takes the fields it needs (not `&self`) so that the arena stays
    /// free to borrow mutably.
    fn par<'a>(team: Option<&'a Team>, pool: &'a rayon::ThreadPool, serial: bool) -> Par<'a> {
        match team {
            Some(team) => Par::Team(team),
            None if serial => Par::Serial,
            None => Par::Rayon(pool),
        }
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
        let team = self.team_for(n);
        let par = Self::par(team.as_deref(), &self.pool, self.serial_for(n));
        match &*self.net {
            PackedNet::ResNet { stem, .. } => stem.forward_par_inplace(&mut x, &mut self.arena, par)?,
            PackedNet::ConvNext { stem, .. } => stem.forward_par_inplace(&mut x, &mut self.arena, par)?,
        }
        Ok(x)
    }

    fn block(&mut self, i: usize, mut x: BlockedTensor) -> Result<BlockedTensor, EngineError> {
        let team = self.team_for(x.n());
        let par = Self::par(team.as_deref(), &self.pool, self.serial_for(x.n()));
        match &*self.net {
            PackedNet::ResNet { blocks, .. } => {
                blocks[i].forward_par_inplace(&mut x, &mut self.arena, par)?
            }
            PackedNet::ConvNext { blocks, .. } => {
                blocks[i].forward_par_inplace(&mut x, &mut self.arena, par)?
            }
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
            shards
                .par_iter_mut()
                .enumerate()
                .map(|(k, s)| dyce_kernels::serial(|| f(s, k * n / ways..(k + 1) * n / ways)))
                .collect()
        }))
    }

    fn sharded_or_whole<R: Send>(
        &mut self,
        n: usize,
        f: &(dyn Fn(&mut Self, std::ops::Range<usize>) -> R + Sync),
    ) -> Vec<R> {
        if let Some(parts) = self.shard(n, f) {
            return parts;
        }
        match self.team_for(n) {
            // The helpers stay awake from the first layer to the last head of the pass (and
            // only when the team runs it: spinning beside rayon's workers would slow them).
            Some(team) => team.session(|| vec![f(self, 0..n)]),
            None => vec![f(self, 0..n)],
        }
    }
}
