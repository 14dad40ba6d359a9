//! Writes a random-weight torchvision ResNet state dict (safetensors, BatchNorm unfolded) with
//! CLASSES outputs: a stand-in for a user's checkpoint when measuring the bring-your-own-model
//! path's speed and memory (docs/benchmarks.md). Its predictions mean nothing.
//!
//! `cargo run --release --example random_checkpoint -- ARCH CLASSES OUT.safetensors`

use dyce_runtime::model::random::random_checkpoint;
use dyce_runtime::model::BackboneSpec;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [arch, classes, out] = &args[..] else {
        anyhow::bail!("usage: random_checkpoint ARCH CLASSES OUT.safetensors");
    };
    let mut spec = BackboneSpec::builtin(arch)?;
    let c = spec.in_channels();
    spec.set_io(c, classes.parse()?);
    let tensors = random_checkpoint(&spec, &[], 7)?;
    candle_core::safetensors::save(&tensors, out)?;
    println!("{arch} with {} classes: {} tensors written to {out}", spec.num_classes(), tensors.len());
    Ok(())
}
