//! `dyce bench`: measured cost of every configuration on this hardware.
//!
//! Each configuration runs full batches back to back (saturation) on real images: the files of
//! `--images` (an image folder, through the bundle's own transform), else Fashion-MNIST's test
//! images when the model takes 28×28 grayscale; exit rates depend on the data, so random pixels
//! (the last resort, with a warning) misstate the cost of early-exit configurations.
//! Configurations are measured in interleaved rounds so that machine noise hits all alike.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use dyce_data::{augment, fashion_mnist as data};
use dyce_runtime::engine::{default_pool, run_batch, FastBackend, ResolvedConfig};
use dyce_runtime::model::Bundle;
use serde_json::json;

use crate::tools::bench_profile::{profile, ProfileRun};

/// Arguments of `dyce bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model bundle directory.
    #[arg(long, env = "DYCE_MODEL")]
    model: PathBuf,
    /// Images per batch.
    #[arg(long, env = "DYCE_BATCH", default_value_t = 32)]
    batch: usize,
    /// Seconds per configuration per round (short rounds keep each speed-up's two rates close in
    /// time on a machine whose speed drifts).
    #[arg(long, env = "DYCE_BENCH_SECONDS", default_value_t = 0.25)]
    seconds: f64,
    /// Interleaved rounds; the median per configuration (and of each round's speed-up over the
    /// full model) is reported.
    #[arg(long, env = "DYCE_BENCH_ROUNDS", default_value_t = 12)]
    rounds: usize,
    /// Kernel threads (default: the CPUs available to this process).
    #[arg(long, env = "DYCE_THREADS")]
    threads: Option<usize>,
    /// Fashion-MNIST directory for realistic inputs.
    #[arg(long, env = "DYCE_DATA", default_value = data::DEFAULT_DIR)]
    data: PathBuf,
    /// Image folder to measure on (the bundle's test split, or any images like those it will
    /// serve), read through the bundle's transform.
    #[arg(long, env = "DYCE_IMAGES")]
    images: Option<PathBuf>,
    /// Write the measured latency ratios into the bundle's configs.json.
    #[arg(long, env = "DYCE_BENCH_WRITE")]
    write: bool,
    /// Also write the results as JSON here.
    #[arg(long, env = "DYCE_JSON")]
    json: Option<PathBuf>,
    /// Measure only these config ids (comma-separated; the full config is always measured, the
    /// ratios are relative to it), e.g. to profile one config.
    #[arg(long, env = "DYCE_BENCH_CONFIGS", value_delimiter = ',')]
    configs: Vec<String>,
    /// Instead of throughput, time every stage of each configuration on one thread at a shard's
    /// share of --batch (batch / CPUs) and print what a MAC of each exit type costs against a
    /// backbone MAC: the factors of `dyce calibrate --exit-cost`.
    #[arg(long, env = "DYCE_BENCH_PROFILE")]
    profile: bool,
}

fn inputs(b: &Bundle, args: &BenchArgs, n: usize) -> Result<Vec<f32>> {
    let per: usize = b.manifest.input.shape.iter().product();
    if let Some(root) = &args.images {
        let (_, samples) = dyce_data::folder::scan(root)?;
        let pre = b.manifest.input.preprocess(dyce_data::DecodeLimits::FILES);
        // Spread over the classes (folders list their files class by class).
        let step = (samples.len() / n.min(samples.len()).max(1)).max(1);
        let mut out = Vec::with_capacity(n * per);
        for i in 0..n {
            let s = &samples[(i * step) % samples.len()];
            let bytes = std::fs::read(&s.path).with_context(|| s.path.display().to_string())?;
            pre.tensor_into(&bytes, &mut out).with_context(|| s.path.display().to_string())?;
        }
        return Ok(out);
    }
    if b.manifest.input.shape == [1, 28, 28] {
        if let Ok(s) = data::load(&args.data) {
            let idx: Vec<usize> = (0..n).map(|i| i % s.test.len()).collect();
            return Ok(augment::batch(&s.test, &idx, 0, false, &mut rand::rng()));
        }
        tracing::warn!("Fashion-MNIST not found at {}: measuring on synthetic pixels", args.data.display());
    } else {
        tracing::warn!("no --images: measuring on synthetic pixels, whose exit rates are not your data's");
    }
    Ok((0..n * per).map(|i| ((i * 7919 % 255) as f32 / 127.5) - 1.0).collect())
}

/// Runs `dyce bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let mut bundle =
        Bundle::load(&args.model).with_context(|| format!("loading {}", args.model.display()))?;
    if args.write && args.profile {
        bail!("--write records throughput, --profile does not measure it: drop one");
    }
    if args.write && !args.configs.is_empty() {
        bail!("--write needs every config measured together: drop --configs");
    }
    if let Some(id) = args.configs.iter().find(|id| bundle.configs.get(id).is_none()) {
        bail!("no config {id:?} in {}", args.model.display());
    }
    let n = args.batch.max(1);
    // A pool of distinct images, cycled through, so caches do not see one batch only.
    let pool_images = 8 * n;
    let x = inputs(&bundle, args, pool_images)?;
    let per: usize = bundle.manifest.input.shape.iter().product();
    let mut be =
        FastBackend::new(&bundle.backbone, bundle.manifest.input.shape, default_pool(args.threads)?)?;
    // The full model (no exits) always stays: the ratios are relative to it.
    bundle
        .configs
        .configs
        .retain(|c| args.configs.is_empty() || c.exits.is_empty() || args.configs.contains(&c.id));
    let cfgs: Vec<ResolvedConfig> = bundle
        .configs
        .configs
        .iter()
        .map(|c| ResolvedConfig::resolve(&bundle, c, 0))
        .collect::<Result<_, _>>()?;
    if args.profile {
        let with_exits: Vec<ResolvedConfig> =
            cfgs.iter().filter(|c| c.exits.iter().any(Option::is_some)).cloned().collect();
        let run = ProfileRun {
            configs: &with_exits,
            images: &x,
            rows: (n / be_threads(args)).max(1),
            seconds: args.seconds,
            rounds: args.rounds,
        };
        let out = profile(&bundle, &run)?;
        if let Some(p) = &args.json {
            std::fs::write(p, serde_json::to_string_pretty(&out)?)?;
        }
        return Ok(());
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); cfgs.len()];
    // MACs really spent on the measured images, as a share of the full model's: the ideal
    // speed-up on these inputs (the table's MACs ratio is the calibration set's).
    let mut spent = vec![(0u64, 0u64); cfgs.len()];
    let budget = Duration::from_secs_f64(args.seconds.max(0.05));
    for round in 0..=args.rounds {
        for (i, cfg) in cfgs.iter().enumerate() {
            let (start, mut images, mut k) = (Instant::now(), 0usize, 0usize);
            while start.elapsed() < budget {
                let off = (k % 8) * n * per;
                let out = run_batch(&bundle, &mut be, cfg, &x[off..off + n * per], n)?;
                if round == 0 && k < 8 {
                    spent[i].0 += out.iter().map(|r| r.macs).sum::<u64>();
                    spent[i].1 += n as u64;
                }
                images += n;
                k += 1;
            }
            // Round 0 warms every configuration up and is not counted.
            if round > 0 {
                rates[i].push(images as f64 / start.elapsed().as_secs_f64());
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let full_idx =
        bundle.configs.configs.iter().rposition(|c| c.exits.is_empty()).context("no full config")?;
    // Speed-ups from rates measured side by side in the same round, median over rounds: the
    // machine's speed drifts between rounds, and a ratio of medians would mix those states.
    let speedups: Vec<f64> = rates
        .iter()
        .map(|r| median(&mut r.iter().zip(&rates[full_idx]).map(|(c, f)| c / f).collect::<Vec<_>>()))
        .collect();
    // On copies: the JSON keeps every configuration's runs in round order.
    let meds: Vec<f64> = rates.iter().map(|r| median(&mut r.clone())).collect();
    let (isa, cpu) = (dyce_kernels::detect_isa(), dyce_kernels::cpu_model());
    println!(
        "batch {n}, {} threads, median of {} rounds of {:.2} s; kernels {isa}, cpu {cpu}",
        be_threads(args),
        args.rounds,
        args.seconds
    );
    println!(
        "{:<8} {:>10} {:>12} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "config", "img/s", "ms/image", "latency", "MACs", "MACs here", "ideal", "here"
    );
    let mut rows = Vec::new();
    for (i, c) in bundle.configs.configs.iter_mut().enumerate() {
        let ratio = 1.0 / speedups[i];
        let macs = c.macs_ratio.unwrap_or(f64::NAN);
        let here = spent[i].0 as f64 / (spent[i].1.max(1) * bundle.macs.total) as f64;
        println!(
            "{:<8} {:>10.1} {:>12.4} {:>10.3} {:>10.3} {:>10.3} {:>8.0}% {:>8.0}%",
            c.id,
            meds[i],
            1e3 / meds[i],
            ratio,
            macs,
            here,
            100.0 * speedups[i] * macs,
            100.0 * speedups[i] * here
        );
        rows.push(json!({"id": c.id, "img_per_s": meds[i], "runs": rates[i], "speedup": speedups[i], "latency_ratio": ratio, "macs_ratio": c.macs_ratio, "macs_ratio_measured": here}));
        c.latency_ratio = Some((ratio * 1e4).round() / 1e4);
    }
    println!(
        "('latency' = 1 / speed-up over the full model, median of the rounds' side-by-side ratios; \
         'ideal' = that speed-up as a share of 1 / MACs ratio; 'here' = the same against the MACs \
         these {} images really took)",
        x.len() / per
    );
    if let Some(p) = &args.json {
        std::fs::write(
            p,
            serde_json::to_string_pretty(
                &json!({"batch": n, "isa": isa.name(), "cpu_model": cpu, "configs": rows}),
            )?,
        )?;
    }
    if args.write {
        let path = args.model.join("configs.json");
        let mut text = serde_json::to_string_pretty(&bundle.configs)?;
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("latency ratios written to {}", path.display());
    }
    Ok(())
}

fn be_threads(args: &BenchArgs) -> usize {
    args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
