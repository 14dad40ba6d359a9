//! Analytic multiply-accumulate counts.
//!
//! Convention (the one behind the commonly quoted 4.1 G for resnet50): MACs of convolutions and
//! linear layers only; BatchNorm (folded away), ReLU, residual adds and pooling are not counted.
//! For ConvNeXt-V2 the same: the depthwise convolution (c·k² per pixel), the pointwise layers
//! and the stem, downsample and head convolutions/linears count; LayerNorm, GELU and GRN do not.
//! A stage's downsample is counted in the position of the block it opens.

use super::backbone::BackboneSpec;
use super::convnext::spec::{ConvNextSpec, DW_KERNEL, MLP_RATIO};
use super::exits::ExitType;
use super::spec::{ConvGeom, ResNetSpec, StemKind};

/// Per-position cost of a backbone at one input size.
#[derive(Debug, Clone, PartialEq)]
pub struct BackboneMacs {
    /// MACs of the stem.
    pub stem: u64,
    /// MACs of each residual block.
    pub blocks: Vec<u64>,
    /// Cumulative MACs up to and including block `i` (stem included).
    pub cumulative: Vec<u64>,
    /// Channels and spatial size (h, w) after each block.
    pub shapes: Vec<(usize, usize, usize)>,
    /// MACs of the final `fc`.
    pub head: u64,
    /// Whole network.
    pub total: u64,
}

fn conv_macs(g: &ConvGeom, h: usize, w: usize) -> (u64, usize, usize) {
    let (ho, wo) = (g.out_size(h), g.out_size(w));
    // Saturating: validation bounds every factor, not their product for a huge input size.
    let macs = [g.cout, ho, wo, g.cin, g.k, g.k].iter().fold(1u64, |m, &x| m.saturating_mul(x as u64));
    (macs, ho, wo)
}

/// Counts a backbone's MACs for an input of `h × w` pixels.
pub fn backbone_macs(spec: &BackboneSpec, h: usize, w: usize) -> BackboneMacs {
    match spec {
        BackboneSpec::ResNet(r) => resnet_macs(r, h, w),
        BackboneSpec::ConvNextV2(c) => convnext_macs(c, h, w),
    }
}

fn mul(xs: &[usize]) -> u64 {
    xs.iter().fold(1u64, |m, &x| m.saturating_mul(x as u64))
}

fn convnext_macs(spec: &ConvNextSpec, h: usize, w: usize) -> BackboneMacs {
    let (stem, mut h, mut w) = conv_macs(&spec.stem_conv(), h, w);
    let (mut blocks, mut cumulative, mut shapes) = (Vec::new(), Vec::new(), Vec::new());
    let mut acc = stem;
    for b in spec.blocks() {
        let mut m = 0u64;
        if let Some(cin) = b.downsample_from {
            let (dm, ho, wo) = conv_macs(&ConvNextSpec::downsample_conv(cin, b.channels), h, w);
            (m, h, w) = (dm, ho, wo);
        }
        let c = b.channels;
        m = m.saturating_add(mul(&[c, h, w, DW_KERNEL, DW_KERNEL])).saturating_add(mul(&[
            2,
            c,
            c * MLP_RATIO,
            h,
            w,
        ]));
        acc = acc.saturating_add(m);
        blocks.push(m);
        cumulative.push(acc);
        shapes.push((c, h, w));
    }
    let head = mul(&[spec.features(), spec.num_classes]);
    BackboneMacs { stem, blocks, cumulative, shapes, head, total: acc.saturating_add(head) }
}

fn resnet_macs(spec: &ResNetSpec, h: usize, w: usize) -> BackboneMacs {
    let (stem, mut h, mut w) = conv_macs(&spec.stem_conv(), h, w);
    if spec.stem == StemKind::Imagenet {
        // 3x3 stride-2 pad-1 max-pool.
        h = (h + 2 - 3) / 2 + 1;
        w = (w + 2 - 3) / 2 + 1;
    }
    let mut blocks = Vec::new();
    let mut cumulative = Vec::new();
    let mut shapes = Vec::new();
    let mut acc = stem;
    for b in spec.blocks() {
        let (mut bh, mut bw, mut m) = (h, w, 0);
        for c in &b.convs {
            let (cm, ho, wo) = conv_macs(c, bh, bw);
            m = cm.saturating_add(m);
            (bh, bw) = (ho, wo);
        }
        if let Some(d) = &b.downsample {
            m = conv_macs(d, h, w).0.saturating_add(m);
        }
        (h, w) = (bh, bw);
        acc = acc.saturating_add(m);
        blocks.push(m);
        cumulative.push(acc);
        shapes.push((b.out_channels, h, w));
    }
    let head = (spec.features() as u64).saturating_mul(spec.num_classes as u64);
    BackboneMacs { stem, blocks, cumulative, shapes, head, total: acc.saturating_add(head) }
}

/// MACs of an exit head on `channels` pooled features.
pub fn exit_macs(t: &ExitType, channels: usize, classes: usize) -> u64 {
    t.layer_dims(channels, classes).iter().map(|&(i, o)| (i * o) as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn giga(name: &str) -> f64 {
        let s = BackboneSpec::builtin(name).unwrap();
        backbone_macs(&s, 224, 224).total as f64 / 1e9
    }

    #[test]
    fn torchvision_macs_match_quoted_figures() {
        // Quoted: resnet18 1.8 G, resnet50 4.1 G, resnet152 11.5 G (torchvision model zoo).
        for (name, quoted) in [("resnet18", 1.82), ("resnet50", 4.1), ("resnet152", 11.5)] {
            let g = giga(name);
            assert!((g / quoted - 1.0).abs() < 0.02, "{name}: {g:.3} G vs {quoted} G");
        }
    }

    #[test]
    fn convnextv2_macs_match_timm() {
        // timm's published GMACs at 224 (the model cards of timm/convnextv2_*).
        for (name, quoted) in [
            ("convnextv2_atto", 0.55),
            ("convnextv2_femto", 0.79),
            ("convnextv2_pico", 1.37),
            ("convnextv2_nano", 2.46),
            ("convnextv2_tiny", 4.47),
            ("convnextv2_base", 15.38),
        ] {
            let g = giga(name);
            assert!((g / quoted - 1.0).abs() < 0.02, "{name}: {g:.3} G vs {quoted} G");
        }
        let s = BackboneSpec::builtin("convnextv2_atto_s").unwrap();
        let m = backbone_macs(&s, 28, 28);
        assert_eq!(m.shapes.iter().map(|s| s.1).collect::<Vec<_>>(), [14, 14, 7, 7, 3, 3, 3, 3, 3, 3, 1, 1]);
        assert!(m.cumulative.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn cumulative_is_monotone_and_ends_before_head() {
        let s = BackboneSpec::builtin("resnet20").unwrap();
        let m = backbone_macs(&s, 28, 28);
        assert_eq!(m.cumulative.len(), 9);
        assert!(m.cumulative.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(m.total, m.cumulative[8] + 64 * 10);
        assert_eq!(m.shapes[8], (64, 7, 7));
    }

    #[test]
    fn exit_macs_count_linear_layers() {
        let t: ExitType = "mlp2x256".parse().unwrap();
        assert_eq!(exit_macs(&t, 64, 10), 64 * 256 + 256 * 10);
        let t: ExitType = "mlp1".parse().unwrap();
        assert_eq!(exit_macs(&t, 64, 10), 640);
    }

    /// Within the spec's bounds the count saturates instead of overflowing (a width of 2^29
    /// overflowed it, a panic under overflow checks, before the bounds: found by fuzzing).
    #[test]
    fn counts_saturate_at_the_largest_valid_spec() {
        use super::super::spec::{MAX_STAGE_DEPTH, MAX_WIDTH};
        let big = BackboneSpec::small(vec![MAX_STAGE_DEPTH], vec![MAX_WIDTH], MAX_WIDTH, 5);
        let mut cn = ConvNextSpec::builtin("convnextv2_atto").unwrap();
        (cn.depths, cn.widths, cn.in_channels) =
            (vec![MAX_STAGE_DEPTH], vec![MAX_WIDTH / MLP_RATIO], MAX_WIDTH);
        cn.stem_patch = 1;
        cn.validate().unwrap();
        assert_eq!(backbone_macs(&BackboneSpec::ConvNextV2(cn), 4096, 4096).total, u64::MAX);
        big.validate().unwrap();
        assert_eq!(backbone_macs(&big, 4096, 4096).total, u64::MAX);
    }
}
