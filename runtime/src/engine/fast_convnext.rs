//! Packs a loaded ConvNeXt-V2 for the fast kernels.

use dyce_kernels::{ConvNextBlock, ConvNextStem, Grn, LayerNormC, PackedDwConv};

use super::packing::pack;
use super::EngineError;
use crate::model::convnext::spec::EPS;
use crate::model::convnext::{ConvNext, LayerNormW};

fn norm(n: &LayerNormW) -> Result<LayerNormC, EngineError> {
    Ok(LayerNormC::new(n.weight.len(), EPS, &n.weight, &n.bias)?)
}

/// Packs every layer once, at load.
pub(super) fn pack_convnext(net: &ConvNext) -> Result<(ConvNextStem, Vec<ConvNextBlock>), EngineError> {
    let stem = ConvNextStem::new(pack(&net.stem)?, norm(&net.stem_norm)?)?;
    let blocks = net
        .blocks
        .iter()
        .map(|b| {
            let downsample =
                b.downsample.as_ref().map(|(n, c)| Ok::<_, EngineError>((norm(n)?, pack(c)?))).transpose()?;
            let g = b.conv_dw.geom;
            let dw = PackedDwConv::new(g.cout, g.k, &b.conv_dw.weight, &b.conv_dw.bias)?;
            let grn = Grn { gamma: b.grn.weight.clone(), beta: b.grn.bias.clone(), eps: EPS };
            Ok(ConvNextBlock::new(downsample, dw, norm(&b.norm)?, pack(&b.fc1)?, grn, pack(&b.fc2)?)?)
        })
        .collect::<Result<_, EngineError>>()?;
    Ok((stem, blocks))
}
