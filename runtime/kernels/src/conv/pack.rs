//! Weight packing from PyTorch OIHW into the micro-kernel order.

use super::ConvSpec;
use crate::tensor::{blocks, CB};

/// OIHW -> `[ob][ib][ky][kx][ic 8][oc 8]`: the kernel reads 8 output lanes for one input
/// channel with a single vector load, and walks taps and input blocks linearly.
pub(super) fn pack_oihw(spec: &ConvSpec, w: &[f32]) -> Vec<f32> {
    let (cinb, coutb) = (blocks(spec.cin), blocks(spec.cout));
    let taps = spec.kh * spec.kw;
    let mut packed = vec![0.0f32; coutb * cinb * taps * CB * CB];
    for o in 0..spec.cout {
        for i in 0..spec.cin {
            for t in 0..taps {
                let src = w[(o * spec.cin + i) * taps + t];
                let dst = (((o / CB) * cinb + i / CB) * taps + t) * CB * CB + (i % CB) * CB + o % CB;
                packed[dst] = src;
            }
        }
    }
    packed
}
