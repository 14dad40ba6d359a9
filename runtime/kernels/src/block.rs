//! ResNet building blocks over the arena: BasicBlock, Bottleneck and the stem.

use crate::arena::Arena;
use crate::conv::PackedConv;
use crate::par::Par;
use crate::pool::maxpool_on;
use crate::tensor::{blocks, BlockedTensor, CB};
use crate::KernelError;

/// Activation bytes per sub-batch of a block (about the L2 of both cores).
const SUB_BATCH_BYTES: usize = 1 << 20;
/// Smallest sub-batch.
const MIN_SUB_BATCH: usize = 8;

/// Blocks (and stems) below this many multiply-accumulates run on the calling thread.
const SERIAL_BLOCK_MACS: u64 = 8_000_000;

/// Which residual block layout a [`ResBlock`] implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// conv1 3x3 (stride s) + ReLU; conv2 3x3 + residual + ReLU.
    Basic,
    /// 1x1 + ReLU; 3x3 (stride s) + ReLU; 1x1 + residual + ReLU.
    Bottleneck,
}

/// A residual block with folded-BN convolutions and an optional 1x1 projection shortcut.
#[derive(Debug, Clone)]
pub struct ResBlock {
    kind: BlockKind,
    convs: Vec<PackedConv>,
    downsample: Option<PackedConv>,
}

impl ResBlock {
    /// BasicBlock from its two convolutions and optional downsample (1x1, stride s).
    pub fn basic(
        conv1: PackedConv,
        conv2: PackedConv,
        downsample: Option<PackedConv>,
    ) -> Result<Self, KernelError> {
        Self::build(BlockKind::Basic, vec![conv1, conv2], downsample)
    }

    /// Bottleneck from its three convolutions and optional downsample (1x1, stride s).
    pub fn bottleneck(
        conv1: PackedConv,
        conv2: PackedConv,
        conv3: PackedConv,
        downsample: Option<PackedConv>,
    ) -> Result<Self, KernelError> {
        Self::build(BlockKind::Bottleneck, vec![conv1, conv2, conv3], downsample)
    }

    fn build(
        kind: BlockKind,
        convs: Vec<PackedConv>,
        downsample: Option<PackedConv>,
    ) -> Result<Self, KernelError> {
        for pair in convs.windows(2) {
            if pair[0].spec().cout != pair[1].spec().cin {
                return Err(KernelError::ShapeMismatch {
                    context: "ResBlock conv chain channels",
                    expected: format!("cin = {}", pair[0].spec().cout),
                    got: format!("cin = {}", pair[1].spec().cin),
                });
            }
        }
        let (cin, cout) = (convs[0].spec().cin, convs[convs.len() - 1].spec().cout);
        let stride: usize = convs.iter().map(|c| c.spec().stride).product();
        match &downsample {
            Some(ds) if (ds.spec().cin, ds.spec().cout) != (cin, cout) => {
                return Err(KernelError::ShapeMismatch {
                    context: "ResBlock downsample channels",
                    expected: format!("{cin} -> {cout}"),
                    got: format!("{} -> {}", ds.spec().cin, ds.spec().cout),
                })
            }
            None if cin != cout || stride != 1 => {
                return Err(KernelError::InvalidSpec(format!(
                    "identity shortcut needs cin == cout and stride 1, got {cin} -> {cout}, stride {stride}"
                )))
            }
            _ => {}
        }
        Ok(Self { kind, convs, downsample })
    }

    /// Block layout.
    pub fn kind(&self) -> BlockKind {
        self.kind
    }

    /// Main-path convolutions in order.
    pub fn convs(&self) -> &[PackedConv] {
        &self.convs
    }

    /// Projection shortcut, if any.
    pub fn downsample(&self) -> Option<&PackedConv> {
        self.downsample.as_ref()
    }

    /// Multiply-accumulates for `n` inputs of `h x w` (main path plus shortcut).
    pub fn macs(&self, n: usize, h: usize, w: usize) -> u64 {
        let (mut h2, mut w2, mut total) = (h, w, 0);
        for c in &self.convs {
            total += c.spec().macs(n, h2, w2);
            (h2, w2) = c.spec().output_hw(h2, w2).unwrap_or((0, 0));
        }
        total + self.downsample.as_ref().map_or(0, |d| d.spec().macs(n, h, w))
    }

    /// Runs the block on `x`; the result lives in the arena until its next use.
    pub fn forward<'a>(
        &self,
        x: &BlockedTensor,
        arena: &'a mut Arena,
        pool: &rayon::ThreadPool,
    ) -> Result<&'a BlockedTensor, KernelError> {
        // One hand-off into the pool per block instead of one per convolution (a no-op when
        // the caller already runs inside `pool.install`).
        // Small blocks (batch 1 on CIFAR-sized maps) finish faster on the calling thread than
        // the two cross-thread wake-ups a pool hand-off costs.
        if self.macs(x.n(), x.h(), x.w()) < SERIAL_BLOCK_MACS {
            self.run(x, arena, Par::Serial)?;
        } else {
            pool.install(|| self.run(x, arena, Par::Rayon(pool)))?;
        }
        Ok(&arena.out)
    }

    /// Runs the block on `par`'s threads (each convolution decides whether to split) and
    /// leaves the result in `x`.
    pub fn forward_par_inplace(
        &self,
        x: &mut BlockedTensor,
        arena: &mut Arena,
        par: Par,
    ) -> Result<(), KernelError> {
        match par {
            Par::Rayon(pool) => {
                self.forward(x, arena, pool)?;
            }
            _ => self.run(x, arena, par)?,
        }
        std::mem::swap(x, &mut arena.out);
        Ok(())
    }

    fn run(&self, x: &BlockedTensor, arena: &mut Arena, par: Par) -> Result<(), KernelError> {
        // Large batches run the whole block on sub-batches whose activations stay in L2,
        // instead of streaming every intermediate tensor of the full batch through memory.
        let n = x.n();
        let nsub = n.div_ceil(self.sub_batch(x)).max(1);
        for i in 0..nsub {
            let imgs = i * n / nsub..(i + 1) * n / nsub;
            self.run_images(x, arena, par, imgs)?;
        }
        Ok(())
    }

    /// Images per sub-batch: at least `MIN_SUB_BATCH` (weights are re-read per sub-batch),
    /// more while the block's per-image activations fit `SUB_BATCH_BYTES`.
    fn sub_batch(&self, x: &BlockedTensor) -> usize {
        let (mut h, mut w) = (x.h(), x.w());
        let mut floats = x.image_len();
        for c in self.convs.iter() {
            (h, w) = c.spec().output_hw(h, w).unwrap_or((h, w));
            floats += blocks(c.spec().cout) * h * w * CB;
        }
        if let Some(ds) = &self.downsample {
            floats += blocks(ds.spec().cout) * h * w * CB;
        }
        (SUB_BATCH_BYTES / (floats * 4).max(1)).max(MIN_SUB_BATCH)
    }

    fn run_images(
        &self,
        x: &BlockedTensor,
        arena: &mut Arena,
        par: Par,
        imgs: std::ops::Range<usize>,
    ) -> Result<(), KernelError> {
        let Arena { t1, t2, shortcut, out, .. } = arena;
        let c = &self.convs;
        let r = || imgs.clone();
        let mid = if self.kind == BlockKind::Bottleneck {
            c[0].forward_images(x, None, true, t1, par, r())?;
            c[1].forward_images(t1, None, true, t2, par, r())?;
            &*t2
        } else {
            c[0].forward_images(x, None, true, t1, par, r())?;
            &*t1
        };
        let res = match &self.downsample {
            Some(ds) => {
                ds.forward_images(x, None, false, shortcut, par, r())?;
                &*shortcut
            }
            None => x,
        };
        c[c.len() - 1].forward_images(mid, Some(res), true, out, par, r())
    }

    /// Runs the block and leaves the result in `x` by swapping buffers (no copy).
    pub fn forward_inplace(
        &self,
        x: &mut BlockedTensor,
        arena: &mut Arena,
        pool: &rayon::ThreadPool,
    ) -> Result<(), KernelError> {
        self.forward_par_inplace(x, arena, Par::Rayon(pool))
    }
}

/// Network stem: convolution + ReLU, optionally followed by 3x3/s2/p1 max pooling.
#[derive(Debug, Clone)]
pub struct Stem {
    conv: PackedConv,
    maxpool: bool,
}

impl Stem {
    /// Stem from a folded-BN convolution; `maxpool` adds the ImageNet 3x3/s2 pooling.
    pub fn new(conv: PackedConv, maxpool: bool) -> Self {
        Self { conv, maxpool }
    }

    /// The stem convolution.
    pub fn conv(&self) -> &PackedConv {
        &self.conv
    }

    /// Whether max pooling follows the convolution.
    pub fn has_maxpool(&self) -> bool {
        self.maxpool
    }

    /// Runs the stem on `x`; the result lives in the arena until its next use.
    pub fn forward<'a>(
        &self,
        x: &BlockedTensor,
        arena: &'a mut Arena,
        pool: &rayon::ThreadPool,
    ) -> Result<&'a BlockedTensor, KernelError> {
        if !self.maxpool && self.conv.spec().macs(x.n(), x.h(), x.w()) < SERIAL_BLOCK_MACS {
            self.run(x, arena, Par::Serial)?;
        } else {
            pool.install(|| self.run(x, arena, Par::Rayon(pool)))?;
        }
        Ok(&arena.out)
    }

    /// The convolution, then the max pooling if any, into `arena.out`.
    fn run(&self, x: &BlockedTensor, arena: &mut Arena, par: Par) -> Result<(), KernelError> {
        if self.maxpool {
            self.conv.forward_on(x, None, true, &mut arena.t1, par)?;
            maxpool_on(&arena.t1, &mut arena.out, par)
        } else {
            self.conv.forward_on(x, None, true, &mut arena.out, par)
        }
    }

    /// Runs the stem on `par`'s threads and leaves the result in `x`.
    pub fn forward_par_inplace(
        &self,
        x: &mut BlockedTensor,
        arena: &mut Arena,
        par: Par,
    ) -> Result<(), KernelError> {
        match par {
            Par::Rayon(pool) => {
                self.forward(x, arena, pool)?;
            }
            _ => self.run(x, arena, par)?,
        }
        std::mem::swap(x, &mut arena.out);
        Ok(())
    }

    /// Runs the stem and leaves the result in `x` by swapping buffers (no copy).
    pub fn forward_inplace(
        &self,
        x: &mut BlockedTensor,
        arena: &mut Arena,
        pool: &rayon::ThreadPool,
    ) -> Result<(), KernelError> {
        self.forward_par_inplace(x, arena, Par::Rayon(pool))
    }
}
