//! `dyce inspect`: what a model costs where, and which configurations it offers.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use dyce_runtime::model::macs::{backbone_macs, exit_macs};
use dyce_runtime::model::{BackboneSpec, Bundle, ExitType};

/// Arguments of `dyce inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Model bundle directory (manifest.json, weights.safetensors, configs.json).
    #[arg(long, env = "DYCE_MODEL", conflicts_with = "arch")]
    model: Option<PathBuf>,
    /// Built-in architecture instead of a bundle: resnet18/34/50/101/152, resnet20/32/44/56,
    /// convnextv2_atto/femto/pico/nano/tiny/base or convnextv2_atto_s (small input).
    #[arg(long, env = "DYCE_ARCH")]
    arch: Option<String>,
    /// Input height and width in pixels, with --arch (default: 224, or 28 for the small-input
    /// architectures).
    #[arg(long, env = "DYCE_INPUT")]
    input: Option<usize>,
    /// Exit types whose MACs to show, with --arch (comma-separated).
    #[arg(long, env = "DYCE_EXIT_TYPES", value_delimiter = ',', default_value = "mlp1,mlp2x128,mlp3x256")]
    exit_types: Vec<String>,
}

fn giga(m: u64) -> String {
    format!("{:.4} G", m as f64 / 1e9)
}

/// Runs `dyce inspect`.
pub fn run(args: &InspectArgs) -> Result<()> {
    let text = match (&args.model, &args.arch) {
        (Some(dir), _) => {
            let b = Bundle::load(dir).with_context(|| format!("loading bundle {}", dir.display()))?;
            describe_bundle(&b)
        }
        (None, Some(arch)) => {
            let spec = BackboneSpec::builtin(arch)?;
            let size = args.input.unwrap_or(spec.default_input());
            if size < spec.min_input() {
                bail!("--input {size}: {arch} needs at least {} pixels", spec.min_input());
            }
            let types = args.exit_types.iter().map(|s| s.parse()).collect::<Result<Vec<ExitType>, _>>()?;
            describe_arch(arch, &spec, size, &types)
        }
        (None, None) => bail!("give --model DIR or --arch NAME"),
    };
    print!("{text}");
    Ok(())
}

fn describe_arch(name: &str, spec: &BackboneSpec, size: usize, types: &[ExitType]) -> String {
    let m = backbone_macs(spec, size, size);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{name} at {size}x{size}: {} MACs in total ({} in the stem)",
        giga(m.total),
        giga(m.stem)
    );
    let _ = write!(s, "{:>4}  {:<18} {:>16} {:>8}", "pos", "block", "shape (c,h,w)", "cum MACs");
    for t in types {
        let _ = write!(s, " {:>11}", t.to_string());
    }
    s.push('\n');
    for (i, b) in spec.positions().iter().enumerate() {
        let (c, h, w) = m.shapes[i];
        let _ = write!(
            s,
            "{i:>4}  {:<18} {:>16} {:>7.1}%",
            b.name,
            format!("{c}x{h}x{w}"),
            100.0 * m.cumulative[i] as f64 / m.total as f64
        );
        for t in types {
            let _ = write!(s, " {:>11}", exit_macs(t, c, spec.num_classes()));
        }
        s.push('\n');
    }
    s
}

fn describe_bundle(b: &Bundle) -> String {
    let man = &b.manifest;
    let [c, h, w] = man.input.shape;
    let mut s = describe_arch(&man.name, &man.backbone, h, &[]);
    let _ = writeln!(s, "input {c}x{h}x{w}, {} classes", man.backbone.num_classes());
    let _ = writeln!(s, "\ntrained exits ({}):", man.exits.len());
    for e in &man.exits {
        let _ = writeln!(s, "  position {:>3} {:<10} {:>10} MACs", e.position, e.exit_type, e.macs);
    }
    let _ = writeln!(s, "\nconfigurations ({}), cheapest first:", b.configs.configs.len());
    let _ = writeln!(s, "  {:<10} {:>9} {:>9} {:>9}  exits", "id", "accuracy", "MACs", "latency");
    let opt = |v: Option<f64>, pct: bool| match v {
        Some(x) if pct => format!("{:.2}%", 100.0 * x),
        Some(x) => format!("{x:.3}"),
        None => "-".into(),
    };
    for cfg in &b.configs.configs {
        let exits: Vec<String> =
            cfg.exits.iter().map(|e| format!("{}:{}@{:.3}", e.position, e.exit_type, e.threshold)).collect();
        let _ = writeln!(
            s,
            "  {:<10} {:>9} {:>9} {:>9}  {}",
            cfg.id,
            opt(cfg.expected_accuracy, true),
            opt(cfg.macs_ratio, false),
            opt(cfg.latency_ratio, false),
            if exits.is_empty() { "none (full model)".into() } else { exits.join(" ") }
        );
    }
    s
}
