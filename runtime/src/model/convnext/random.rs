//! Fixed-seed random ConvNeXt-V2 checkpoints under timm's names.

use std::collections::HashMap;

use candle_core::Tensor;

use super::super::exits::ExitType;
use super::super::random::{exits, Gen};
use super::super::ModelError;
use super::spec::{ConvNextSpec, DW_KERNEL, MLP_RATIO};

fn norm(g: &mut Gen, prefix: &str, c: usize) -> Result<(), ModelError> {
    g.put(format!("{prefix}.weight"), &[c], 0.6, 1.4)?;
    g.put(format!("{prefix}.bias"), &[c], -0.2, 0.2)
}

fn conv(g: &mut Gen, prefix: &str, shape: [usize; 4]) -> Result<(), ModelError> {
    let a = (6.0 / (shape[1] * shape[2] * shape[3]) as f32).sqrt();
    g.put(format!("{prefix}.weight"), &shape, -a, a)?;
    g.put(format!("{prefix}.bias"), &[shape[0]], -0.1, 0.1)
}

/// Random tensors for `spec` (He-uniform weights, affine parameters near identity, GRN's
/// weight of either sign so that it matters) plus exit heads of `exit_types` at every position.
pub fn checkpoint(
    spec: &ConvNextSpec,
    exit_types: &[ExitType],
    seed: u64,
) -> Result<HashMap<String, Tensor>, ModelError> {
    let mut g = Gen::new(seed);
    let p = spec.stem_patch;
    conv(&mut g, "stem.0", [spec.widths[0], spec.in_channels, p, p])?;
    norm(&mut g, "stem.1", spec.widths[0])?;
    for (pos, b) in spec.blocks().iter().enumerate() {
        let c = b.channels;
        if let Some(cin) = b.downsample_from {
            norm(&mut g, &format!("stages.{}.downsample.0", b.stage), cin)?;
            conv(&mut g, &format!("stages.{}.downsample.1", b.stage), [c, cin, 2, 2])?;
        }
        conv(&mut g, &format!("{}.conv_dw", b.name), [c, 1, DW_KERNEL, DW_KERNEL])?;
        norm(&mut g, &format!("{}.norm", b.name), c)?;
        let h = c * MLP_RATIO;
        g.linear(&format!("{}.mlp.fc1", b.name), c, h)?;
        g.put(format!("{}.mlp.grn.weight", b.name), &[h], -0.5, 0.5)?;
        g.put(format!("{}.mlp.grn.bias", b.name), &[h], -0.1, 0.1)?;
        g.linear(&format!("{}.mlp.fc2", b.name), h, c)?;
        exits(&mut g, pos, c, spec.num_classes, exit_types)?;
    }
    norm(&mut g, "head.norm", spec.features())?;
    g.linear("head.fc", spec.features(), spec.num_classes)?;
    Ok(g.out)
}
