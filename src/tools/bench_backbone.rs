//! `dyce bench-backbone`: images per second of a full backbone (no exits) on random weights.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use dyce_runtime::engine::{default_pool, Backend, CandleBackend, FastBackend};
use dyce_runtime::model::macs::backbone_macs;
use dyce_runtime::model::random::random_checkpoint;
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::{Backbone, BackboneSpec};
use serde_json::json;

/// Arguments of `dyce bench-backbone`.
#[derive(Args, Debug)]
pub struct BenchBackboneArgs {
    /// Built-in architecture: resnet18/34/50/101/152, resnet20/32/44/56,
    /// convnextv2_atto/femto/pico/nano/tiny/base or convnextv2_atto_s.
    #[arg(long, env = "DYCE_ARCH", default_value = "resnet20")]
    arch: String,
    /// Input height and width (default: 224, or 28 for the small-input architectures).
    #[arg(long, env = "DYCE_INPUT")]
    input: Option<usize>,
    /// Compute backend: `fast` (dyce-kernels, what serving uses) or `candle` (the reference).
    #[arg(long, env = "DYCE_BACKEND", default_value = "fast", value_parser = ["fast", "candle"])]
    backend: String,
    /// Kernel threads (default: the CPUs available to this process).
    #[arg(long, env = "DYCE_THREADS")]
    threads: Option<usize>,
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
    /// Also write the random weights (the family's checkpoint names) and the spec here, for a
    /// peer to load.
    #[arg(long, env = "DYCE_EXPORT_DIR")]
    export: Option<PathBuf>,
    /// After the timed runs, run the largest batch this many more times and report the RSS
    /// before and after (a leak or an allocation that keeps growing shows up here).
    #[arg(long, env = "DYCE_LEAK_CHECK", default_value_t = 0)]
    leak_check: usize,
    /// Write the results as JSON to this file.
    #[arg(long, env = "DYCE_JSON")]
    json: Option<PathBuf>,
}

/// One forward pass, sharded across threads where the backend would shard it when serving.
fn run_once<B: Backend>(be: &mut B, net: &Backbone, x: &[f32], n: usize) -> Result<()> {
    let per = x.len() / n.max(1);
    let whole =
        |b: &mut B, r: std::ops::Range<usize>| run_whole(b, net, &x[r.start * per..r.end * per], r.len());
    be.sharded_or_whole(n, &whole).into_iter().collect()
}

fn run_whole<B: Backend>(be: &mut B, net: &Backbone, x: &[f32], n: usize) -> Result<()> {
    let mut a = be.stem(x, n)?;
    for i in 0..net.positions() {
        a = be.block(i, a)?;
    }
    let pooled = be.pool(&a)?;
    be.recycle(a);
    std::hint::black_box(net.head(&pooled, n));
    Ok(())
}

/// Median images/s over `repeats` runs of at least `min` each, after one warm-up run.
fn measure<B: Backend>(
    be: &mut B,
    net: &Backbone,
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

/// A `VmXXX:` field of /proc/self/status in KiB (0 where there is no procfs).
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// RSS after a warm-up and after `iterations` more runs of the same batch.
fn leak_check<B: Backend>(
    be: &mut B,
    net: &Backbone,
    x: &[f32],
    n: usize,
    iterations: usize,
) -> Result<(u64, u64)> {
    for _ in 0..10 {
        run_once(be, net, x, n)?;
    }
    let before = proc_status_kib("VmRSS:");
    for _ in 0..iterations {
        run_once(be, net, x, n)?;
    }
    Ok((before, proc_status_kib("VmRSS:")))
}

/// Runs `dyce bench-backbone`.
pub fn run(args: &BenchBackboneArgs) -> Result<()> {
    let spec = BackboneSpec::builtin(&args.arch)?;
    let size = args.input.unwrap_or(spec.default_input());
    if size < spec.min_input() {
        anyhow::bail!("--input {size}: {} needs at least {} pixels", args.arch, spec.min_input());
    }
    let tensors = random_checkpoint(&spec, &[], args.seed)?;
    if let Some(dir) = &args.export {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        candle_core::safetensors::save(&tensors, dir.join("weights.safetensors"))?;
        std::fs::write(dir.join("spec.json"), serde_json::to_string_pretty(&spec)?)?;
    }
    let net = Backbone::load(&spec, &TensorStore::new(tensors))?;
    let macs = backbone_macs(&spec, size, size).total as f64;
    let shape = [spec.in_channels(), size, size];
    let per: usize = shape.iter().product();
    let pool = default_pool(args.threads)?;
    let threads = pool.current_num_threads();
    let (isa, cpu) = (dyce_kernels::detect_isa(), dyce_kernels::cpu_model());
    println!(
        "{} @{size}: {:.3} GMACs/image, {threads} threads, backend {}, kernels {isa}, cpu {cpu}",
        args.arch,
        macs / 1e9,
        args.backend
    );
    let peak = dyce_kernels::peak::fma_peak_gflops(&pool);
    if let Some(p) = peak {
        println!("  FMA peak with {isa} vectors on {threads} threads: {p:.1} GFLOP/s");
    }
    let mut results = Vec::new();
    let largest = args.batches.iter().copied().max().unwrap_or(0);
    for &n in &args.batches {
        let x: Vec<f32> = (0..n * per).map(|i| ((i % 255) as f32 / 127.5) - 1.0).collect();
        let min = Duration::from_secs_f64(args.min_seconds);
        let leak = if n == largest { args.leak_check } else { 0 };
        let (median, runs, rss) = if args.backend == "fast" {
            let mut be = FastBackend::new(&net, shape, pool.clone())?;
            let (m, r) = measure(&mut be, &net, &x, n, args.repeats, min)?;
            (m, r, if leak > 0 { Some(leak_check(&mut be, &net, &x, n, leak)?) } else { None })
        } else {
            let mut be = CandleBackend::new(&net, shape)?;
            let (m, r) = measure(&mut be, &net, &x, n, args.repeats, min)?;
            (m, r, if leak > 0 { Some(leak_check(&mut be, &net, &x, n, leak)?) } else { None })
        };
        let gflops = 2.0 * macs * median / 1e9;
        let peak_kib = proc_status_kib("VmHWM:");
        let peak_mib = peak_kib as f64 / 1024.0;
        println!("  batch {n:>3}: {median:>9.1} img/s  {gflops:>7.1} GFLOP/s  peak RSS {peak_mib:.1} MiB");
        let mut row = json!({"batch": n, "img_per_s": median, "gflop_per_s": gflops, "runs": runs, "peak_rss_kib": peak_kib});
        if let Some((before, after)) = rss {
            println!("  RSS over {leak} more runs of batch {n}: {before} KiB -> {after} KiB");
            row["rss_before_kib"] = json!(before);
            row["rss_after_kib"] = json!(after);
            row["leak_check_iterations"] = json!(leak);
        }
        results.push(row);
    }
    if let Some(path) = &args.json {
        let doc = json!({"engine": format!("dyce-{}", args.backend), "arch": args.arch, "input": size, "threads": threads,
            "isa": isa.name(), "cpu_model": cpu, "macs_per_image": macs, "peak_gflop_per_s": peak, "results": results});
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(())
}
