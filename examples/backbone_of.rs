//! Writes the backbone of a dyce bundle (its weights without the `exits.*` heads) as a plain
//! torchvision ResNet state dict in safetensors: what a PyTorch user exports, here made from
//! the shipped Fashion-MNIST bundle to run the image-folder path on it (docs/benchmarks.md).
//!
//! `cargo run --release --example backbone_of -- BUNDLE_DIR OUT.safetensors`

use std::collections::HashMap;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bundle, out] = &args[..] else { anyhow::bail!("usage: backbone_of BUNDLE_DIR OUT.safetensors") };
    let path = std::path::Path::new(bundle).join("weights.safetensors");
    let all = candle_core::safetensors::load(&path, &candle_core::Device::Cpu)?;
    let backbone: HashMap<_, _> = all.into_iter().filter(|(k, _)| !k.starts_with("exits.")).collect();
    candle_core::safetensors::save(&backbone, out)?;
    println!("{} backbone tensors written to {out}", backbone.len());
    Ok(())
}
