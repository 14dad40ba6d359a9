//! Weight packing from PyTorch OIHW into the micro-kernel order.

use super::ConvSpec;
use crate::tensor::{blocks, CB};

/// OIHW -> `[ov][ib][ky][kx][ic 8][oc lanes]` with `ov` the output vector of `lanes`
/// channels: the kernel reads one vector of outputs for one input channel with a single load,
/// and walks taps and input blocks linearly. Padded channels are zero.
pub(super) fn pack_oihw(spec: &ConvSpec, w: &[f32], lanes: usize) -> Vec<f32> {
    let (cinb, coutv) = (blocks(spec.cin), spec.cout.div_ceil(lanes));
    let taps = spec.kh * spec.kw;
    let mut packed = vec![0.0f32; coutv * cinb * taps * CB * lanes];
    for o in 0..spec.cout {
        for i in 0..spec.cin {
            for t in 0..taps {
                let src = w[(o * spec.cin + i) * taps + t];
                let dst =
                    (((o / lanes) * cinb + i / CB) * taps + t) * CB * lanes + (i % CB) * lanes + o % lanes;
                packed[dst] = src;
            }
        }
    }
    packed
}
