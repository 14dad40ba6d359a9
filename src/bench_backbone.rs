//! `dyce bench-backbone`: images per second of a full backbone (no exits) on random weights.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use dyce_runtime::engine::{Backend, CandleBackend};
use dyce_runtime::model::macs::backbone_macs;
use dyce_runtime::model::random::random_checkpoint;
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::{BackboneSpec, ResNet, StemKind};
use serde_json::json;

/// Arguments of `dyce bench-backbone`.
#[derive(Args, Debug)]
pub struct BenchBackboneArgs {
    /// Built-in architecture: resnet18/34/50/101/152 or resnet20/32/44/56.
    #[arg(long, env = "DYCE_ARCH", default_value = "resnet20")]
    arch: String,
    /// Input height and width (default: 224, or 28 for the small ResNets).
    #[arg(long, env = "DYCE_INPUT")]
    input: Option<usize>,
    /// Batch sizes to measure, comma-separated.
    #[arg(long, env = "DYCE_BATCHES", value_delimiter = ',', default_value = "1,8,32")]
    batches: Vec<usize>,
    /// Timed runs per batch size; the median is reported.
    #[arg(long, env = "DYCE_REPEATS", default_value_t = 7)]
    repeats: usize,
    /// Minimum length of one timed run, in seconds.
    #[arg(long, env = "DYCE_MIN_SECONDS", default_value_t = 1.0)]
    min_seconds: f64,
    /// Seed of the random weights (the same seed gives the peer the same weights).
    #[arg(long, env = "DYCE_SEED", default_value_t = 0)]
    seed: u64,
    /// Also write the random weights (torchvision names) and the spec here, for a peer to load.
    #[arg(long, env = "DYCE_EXPORT_DIR")]
    export: Option<PathBuf>,
    /// Write the results as JSON to this file.
    #[arg(long, env = "DYCE_JSON")]
    json: Option<PathBuf>,
}

fn run_once<B: Backend>(be: &mut B, net: &ResNet, x: &[f32], n: usize) -> Result<()> {
    let mut a = be.stem(x, n)?;
    for i in 0..net.blocks.len() {
        a = be.block(i, a)?;
    }
    std::hint::black_box(net.fc.forward(&be.pool(&a)?, n, false));
    Ok(())
}

/// Median images/s over `repeats` runs of at least `min` each, after one warm-up run.
fn measure<B: Backend>(
    be: &mut B,
    net: &ResNet,
    x: &[f32],
    n: usize,
    repeats: usize,
    min: Duration,
) -> Result<(f64, Vec<f64>)> {
    run_once(be, net, x, n)?;
    let mut rates = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let (start, mut images) = (Instant::now(), 0usize);
        while start.elapsed() < min {
            run_once(be, net, x, n)?;
            images += n;
        }
        rates.push(images as f64 / start.elapsed().as_secs_f64());
    }
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    Ok((sorted[sorted.len() / 2], rates))
}

/// Runs `dyce bench-backbone`.
pub fn run(args: &BenchBackboneArgs) -> Result<()> {
    let spec = BackboneSpec::builtin(&args.arch)?;
    let size = args.input.unwrap_or(if spec.stem == StemKind::Small { 28 } else { 224 });
    let tensors = random_checkpoint(&spec, &[], args.seed)?;
    if let Some(dir) = &args.export {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        candle_core::safetensors::save(&tensors, dir.join("weights.safetensors"))?;
        std::fs::write(dir.join("spec.json"), serde_json::to_string_pretty(&spec)?)?;
    }
    let net = ResNet::load(&spec, &TensorStore::new(tensors))?;
    let macs = backbone_macs(&spec, size, size).total as f64;
    let shape = [spec.in_channels, size, size];
    let per: usize = shape.iter().product();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{} @{size}: {:.3} GMACs/image, {threads} threads, backend candle", args.arch, macs / 1e9);
    let mut results = Vec::new();
    for &n in &args.batches {
        let x: Vec<f32> = (0..n * per).map(|i| ((i % 255) as f32 / 127.5) - 1.0).collect();
        let mut be = CandleBackend::new(&net, shape)?;
        let (median, runs) =
            measure(&mut be, &net, &x, n, args.repeats, Duration::from_secs_f64(args.min_seconds))?;
        let gflops = 2.0 * macs * median / 1e9;
        println!("  batch {n:>3}: {median:>9.1} img/s  {gflops:>7.1} GFLOP/s");
        results.push(json!({"batch": n, "img_per_s": median, "gflop_per_s": gflops, "runs": runs}));
    }
    if let Some(path) = &args.json {
        let doc = json!({"engine": "dyce-candle", "arch": args.arch, "input": size, "threads": threads,
            "macs_per_image": macs, "results": results});
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(())
}
