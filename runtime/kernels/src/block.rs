//! ResNet building blocks over the arena: BasicBlock, Bottleneck and the stem.

use crate::arena::Arena;
use crate::conv::PackedConv;
use crate::pool::maxpool_3x3_s2_p1;
use crate::tensor::BlockedTensor;
use crate::KernelError;

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
        pool.install(|| self.run(x, arena, pool))?;
        Ok(&arena.out)
    }

    fn run(&self, x: &BlockedTensor, arena: &mut Arena, pool: &rayon::ThreadPool) -> Result<(), KernelError> {
        let Arena { t1, t2, shortcut, out } = arena;
        let c = &self.convs;
        let mid = if self.kind == BlockKind::Bottleneck {
            c[0].forward(x, None, true, t1, pool)?;
            c[1].forward(t1, None, true, t2, pool)?;
            &*t2
        } else {
            c[0].forward(x, None, true, t1, pool)?;
            &*t1
        };
        let res = match &self.downsample {
            Some(ds) => {
                ds.forward(x, None, false, shortcut, pool)?;
                &*shortcut
            }
            None => x,
        };
        c[c.len() - 1].forward(mid, Some(res), true, out, pool)
    }

    /// Runs the block and leaves the result in `x` by swapping buffers (no copy).
    pub fn forward_inplace(
        &self,
        x: &mut BlockedTensor,
        arena: &mut Arena,
        pool: &rayon::ThreadPool,
    ) -> Result<(), KernelError> {
        self.forward(x, arena, pool)?;
        std::mem::swap(x, &mut arena.out);
        Ok(())
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
        pool.install(|| {
            if self.maxpool {
                self.conv.forward(x, None, true, &mut arena.t1, pool)?;
                maxpool_3x3_s2_p1(&arena.t1, &mut arena.out, pool)
            } else {
                self.conv.forward(x, None, true, &mut arena.out, pool)
            }
        })?;
        Ok(&arena.out)
    }

    /// Runs the stem and leaves the result in `x` by swapping buffers (no copy).
    pub fn forward_inplace(
        &self,
        x: &mut BlockedTensor,
        arena: &mut Arena,
        pool: &rayon::ThreadPool,
    ) -> Result<(), KernelError> {
        self.forward(x, arena, pool)?;
        std::mem::swap(x, &mut arena.out);
        Ok(())
    }
}
