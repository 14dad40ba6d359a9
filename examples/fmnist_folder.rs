//! Writes Fashion-MNIST's IDX splits (the 50,000 / 10,000 / 10,000 images `dyce calibrate`
//! uses) as an ImageFolder tree of PNG files, for running the image-folder path on the same
//! images as the IDX path (docs/benchmarks.md, "Your own model").
//!
//! `cargo run --release --example fmnist_folder -- OUT [PER_CLASS]`

use std::path::PathBuf;

use dyce_data::export::{write_folder, ExportOptions};
use dyce_data::fashion_mnist;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out =
        PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!("usage: fmnist_folder OUT [PER_CLASS]"))?);
    let per_class = args.next().map(|n| n.parse()).transpose()?;
    let splits = fashion_mnist::load(std::path::Path::new(fashion_mnist::DEFAULT_DIR))?;
    let n = write_folder(&splits, &out, ExportOptions { per_class, ..Default::default() })?;
    println!("{n} PNG files written under {}", out.display());
    Ok(())
}
