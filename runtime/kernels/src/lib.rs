//! Inference-only CPU kernels for dyce: NCHW8c activations, packed weights, direct
//! convolution micro-kernels with fused bias/residual/ReLU epilogues, ResNet blocks, and
//! ConvNeXt-V2's blocks (depthwise convolution, LayerNorm, GELU, GRN).
//!
//! Integration notes:
//! * Weights are OIHW with BN folded in; pass a zero bias when the conv had none.
//! * Run a whole forward pass inside one `pool.install(|| ...)`: kernels called from a
//!   pool thread start their parallel loops in place, while calls from outside pay a
//!   cross-thread hand-off per block (measurably slower at batch 1).
//! * Activations stay in [`BlockedTensor`]s; reuse them and one [`Arena`] per concurrent
//!   request stream so steady-state inference allocates nothing.
//!
//! ```
//! use dyce_kernels::{Arena, BlockedTensor, ConvSpec, PackedConv, ResBlock, Stem};
//! # fn main() -> Result<(), dyce_kernels::KernelError> {
//! let conv = |cin: usize, cout: usize, k: usize, stride: usize| {
//!     let spec = ConvSpec { cin, cout, kh: k, kw: k, stride, pad: k / 2 };
//!     PackedConv::new(spec, &vec![0.01; cout * cin * k * k], &vec![0.0; cout])
//! };
//! let stem = Stem::new(conv(1, 16, 3, 1)?, false);
//! let block = ResBlock::basic(conv(16, 32, 3, 2)?, conv(32, 32, 3, 1)?, Some(conv(16, 32, 1, 2)?))?;
//! let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
//! let mut arena = Arena::new();
//! let mut x = BlockedTensor::from_nchw(&vec![0.5; 2 * 28 * 28], 2, 1, 28, 28)?;
//! pool.install(|| -> Result<(), dyce_kernels::KernelError> {
//!     stem.forward_inplace(&mut x, &mut arena, &pool)?;
//!     block.forward_inplace(&mut x, &mut arena, &pool)
//! })?;
//! assert_eq!(x.shape(), (2, 32, 14, 14));
//! let features = dyce_kernels::global_avg_pool(&x); // [2][32]
//! assert_eq!(features.len(), 64);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod act;
mod arena;
mod block;
pub mod conv;
mod convnext;
mod dense;
mod dwconv;
mod error;
mod gather;
pub mod isa;
mod norm;
mod par;
pub mod peak;
mod pool;
mod team;
pub mod tensor;

pub use act::{gelu, gelu_inplace};
pub use arena::Arena;
pub use block::{BlockKind, ResBlock, Stem};
pub use conv::{ConvSpec, PackedConv};
pub use convnext::{ConvNextBlock, ConvNextStem, Grn};
pub use dense::PackedDense;
pub use dwconv::PackedDwConv;
pub use error::KernelError;
pub use gather::gather_batch;
pub use isa::{available_isas, best_isa, cpu_model, detect_isa, isa_available, parse_isa_override, Isa};
pub use norm::{grn_factors, scale_channels, LayerNormC};
pub use par::{is_serial, serial, Par};
pub use pool::{global_avg_pool, global_avg_pool_into, maxpool_3x3_s2_p1};
pub use team::Team;
pub use tensor::BlockedTensor;
