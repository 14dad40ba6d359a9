//! Convolutions with packed weights and fused bias/residual/ReLU epilogues.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod driver;
mod gemm;
pub(crate) mod kernel;
mod pack;
mod portable;
use portable::lanes16 as portable16;

use crate::par::Par;
use crate::tensor::BlockedTensor;
use crate::{isa, Isa, KernelError};

/// Geometry of a 2-D convolution (square stride and padding, no dilation, no groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every border.
    pub pad: usize,
}

impl ConvSpec {
    /// Output `(oh, ow)` for an `ih x iw` input, or an error if the window does not fit.
    pub fn output_hw(&self, ih: usize, iw: usize) -> Result<(usize, usize), KernelError> {
        if ih + 2 * self.pad < self.kh || iw + 2 * self.pad < self.kw || ih == 0 || iw == 0 {
            return Err(KernelError::InvalidSpec(format!(
                "{}x{} kernel with pad {} does not fit a {ih}x{iw} input",
                self.kh, self.kw, self.pad
            )));
        }
        Ok(((ih + 2 * self.pad - self.kh) / self.stride + 1, (iw + 2 * self.pad - self.kw) / self.stride + 1))
    }

    /// Multiply-accumulates for a batch of `n` inputs of `ih x iw` (0 if the shape is invalid).
    pub fn macs(&self, n: usize, ih: usize, iw: usize) -> u64 {
        self.output_hw(ih, iw)
            .map_or(0, |(oh, ow)| (n * oh * ow * self.cout * self.cin * self.kh * self.kw) as u64)
    }

    fn validate(&self) -> Result<(), KernelError> {
        if self.cin == 0 || self.cout == 0 || self.kh == 0 || self.kw == 0 || self.stride == 0 {
            return Err(KernelError::InvalidSpec(format!("zero-sized convolution {self:?}")));
        }
        Ok(())
    }
}

/// A convolution whose weights are packed once for the direct micro-kernels.
#[derive(Debug, Clone)]
pub struct PackedConv {
    spec: ConvSpec,
    isa: Isa,
    /// `[cout/lanes][cin/8][kh][kw][8 in][lanes out]`, zero padded (`lanes` = `isa.lanes()`).
    weights: Vec<f32>,
    /// `ceil(cout/lanes) * lanes` values, zero padded.
    bias: Vec<f32>,
}

impl PackedConv {
    /// Packs OIHW weights (BN already folded) and bias using the process-wide ISA.
    pub fn new(spec: ConvSpec, weight_oihw: &[f32], bias: &[f32]) -> Result<Self, KernelError> {
        Self::with_isa(spec, weight_oihw, bias, isa::detect_isa())
    }

    /// Like [`PackedConv::new`] but forcing `isa` (errors if this CPU lacks it).
    pub fn with_isa(
        spec: ConvSpec,
        weight_oihw: &[f32],
        bias: &[f32],
        isa: Isa,
    ) -> Result<Self, KernelError> {
        spec.validate()?;
        if !isa::isa_available(isa) {
            return Err(KernelError::UnsupportedIsa(isa));
        }
        let wlen = spec.cout * spec.cin * spec.kh * spec.kw;
        if weight_oihw.len() != wlen {
            return Err(KernelError::ShapeMismatch {
                context: "PackedConv weight (OIHW)",
                expected: format!("[{}, {}, {}, {}] = {wlen} values", spec.cout, spec.cin, spec.kh, spec.kw),
                got: format!("{} values", weight_oihw.len()),
            });
        }
        if bias.len() != spec.cout {
            return Err(KernelError::ShapeMismatch {
                context: "PackedConv bias",
                expected: format!("[{}]", spec.cout),
                got: format!("[{}]", bias.len()),
            });
        }
        let lanes = isa.lanes();
        let mut padded_bias = vec![0.0; spec.cout.div_ceil(lanes) * lanes];
        padded_bias[..spec.cout].copy_from_slice(bias);
        Ok(Self { spec, isa, weights: pack::pack_oihw(&spec, weight_oihw, lanes), bias: padded_bias })
    }

    /// The convolution geometry.
    pub fn spec(&self) -> &ConvSpec {
        &self.spec
    }

    /// The ISA this convolution's kernels run with.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Output shape `(n, cout, oh, ow)` for `input`, validating channels and window fit.
    pub fn output_shape(&self, input: &BlockedTensor) -> Result<(usize, usize, usize, usize), KernelError> {
        if input.c() != self.spec.cin {
            return Err(KernelError::ShapeMismatch {
                context: "PackedConv input channels",
                expected: format!("[n, {}, h, w]", self.spec.cin),
                got: input.shape_string(),
            });
        }
        let (oh, ow) = self.spec.output_hw(input.h(), input.w())?;
        Ok((input.n(), self.spec.cout, oh, ow))
    }

    /// `out = act(conv(input) + bias [+ residual])`, epilogue fused into the kernel's store.
    pub fn forward(
        &self,
        input: &BlockedTensor,
        residual: Option<&BlockedTensor>,
        relu: bool,
        out: &mut BlockedTensor,
        pool: &rayon::ThreadPool,
    ) -> Result<(), KernelError> {
        self.forward_on(input, residual, relu, out, Par::Rayon(pool))
    }

    /// [`PackedConv::forward`] on `par`'s threads.
    pub fn forward_on(
        &self,
        input: &BlockedTensor,
        residual: Option<&BlockedTensor>,
        relu: bool,
        out: &mut BlockedTensor,
        par: Par,
    ) -> Result<(), KernelError> {
        self.forward_images(input, residual, relu, out, par, 0..input.n())
    }

    /// Like [`PackedConv::forward_on`] for images `imgs` only (sub-batching): `out` gets the
    /// full batch shape but only those images are written.
    pub(crate) fn forward_images(
        &self,
        input: &BlockedTensor,
        residual: Option<&BlockedTensor>,
        relu: bool,
        out: &mut BlockedTensor,
        par: Par,
        imgs: std::ops::Range<usize>,
    ) -> Result<(), KernelError> {
        let (n, c, oh, ow) = self.output_shape(input)?;
        if imgs.end > n {
            return Err(KernelError::InvalidSpec(format!("images {imgs:?} of a batch of {n}")));
        }
        if let Some(r) = residual {
            if r.shape() != (n, c, oh, ow) {
                return Err(KernelError::ShapeMismatch {
                    context: "PackedConv residual",
                    expected: format!("[{n}, {c}, {oh}, {ow}]"),
                    got: r.shape_string(),
                });
            }
        }
        out.resize(n, c, oh, ow);
        if imgs.is_empty() {
            return Ok(());
        }
        driver::run(self, input, residual, relu, out, par, imgs);
        Ok(())
    }

    pub(crate) fn packed(&self) -> (&[f32], &[f32]) {
        (&self.weights, &self.bias)
    }
}
