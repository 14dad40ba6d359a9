//! `dyce bench --profile`: where each configuration's time goes, stage by stage, on one thread.
//!
//! A served batch of 32 runs as one shard of 16 images per thread, so one thread at the batch's
//! share per thread shows the same cache behaviour as serving does: exit heads whose weights
//! were evicted by the blocks in between, tails of one or two images. The output is what a MAC
//! of each exit type costs in time against a backbone MAC, the factors `dyce calibrate
//! --exit-cost` charges in its search.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use dyce_runtime::engine::{default_pool, run_profiled, FastBackend, Profiler, ResolvedConfig, Stage};
use dyce_runtime::model::Bundle;
use serde_json::json;

/// Time and MACs of one kind of stage.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    ns: f64,
    macs: f64,
}

impl Tally {
    fn add(&mut self, t: Tally) {
        self.ns += t.ns;
        self.macs += t.macs;
    }
    fn ns_per_mac(&self) -> f64 {
        self.ns / self.macs.max(1.0)
    }
}

/// Backbone and per-exit-type totals of one configuration.
struct Totals<'a> {
    bundle: &'a Bundle,
    counting: bool,
    backbone: Tally,
    exits: BTreeMap<String, Tally>,
}

impl Profiler for Totals<'_> {
    const ON: bool = true;
    fn stage(&mut self, stage: Stage, _rows: usize, macs: u64, took: Duration) {
        if !self.counting {
            return;
        }
        let t = Tally { ns: took.as_nanos() as f64, macs: macs as f64 };
        match stage {
            Stage::Backbone => self.backbone.add(t),
            Stage::Exit(h) => self.exits.entry(self.bundle.exits[h].ty.to_string()).or_default().add(t),
        }
    }
}

/// What `run` needs from `dyce bench`'s arguments.
pub struct ProfileRun<'a> {
    /// Configurations to profile (those with exits; the full model has no exit stage).
    pub configs: &'a [ResolvedConfig],
    /// Normalised images, cycled through in batches of `rows`.
    pub images: &'a [f32],
    /// Images per batch (a shard's share).
    pub rows: usize,
    /// Measuring time per configuration per round.
    pub seconds: f64,
    /// Rounds (one more, uncounted, warms up).
    pub rounds: usize,
}

/// Profiles every configuration of `run` and prints the table; returns it as JSON.
pub fn profile(bundle: &Bundle, run: &ProfileRun) -> Result<serde_json::Value> {
    // Inside a one-thread pool: the heads' kernels split rows over the *current* pool, and
    // outside any pool that would be rayon's global one, so they would hop to other threads.
    let pool = default_pool(Some(1))?;
    pool.install(|| {
        profile_on(
            bundle,
            run,
            FastBackend::new(&bundle.backbone, bundle.manifest.input.shape, pool.clone())?,
        )
    })
}

fn profile_on(bundle: &Bundle, run: &ProfileRun, mut be: FastBackend) -> Result<serde_json::Value> {
    let per: usize = bundle.manifest.input.shape.iter().product();
    let batches = (run.images.len() / per / run.rows).max(1);
    let budget = Duration::from_secs_f64(run.seconds.max(0.05));
    let mut totals: Vec<Totals> = run
        .configs
        .iter()
        .map(|_| Totals { bundle, counting: false, backbone: Tally::default(), exits: BTreeMap::new() })
        .collect();
    for round in 0..=run.rounds {
        for (cfg, tot) in run.configs.iter().zip(&mut totals) {
            tot.counting = round > 0;
            let (start, mut k) = (Instant::now(), 0usize);
            while start.elapsed() < budget {
                let off = (k % batches) * run.rows * per;
                run_profiled(bundle, &mut be, cfg, &run.images[off..off + run.rows * per], run.rows, tot)?;
                k += 1;
            }
        }
    }
    println!(
        "one thread, batches of {} images; time per MAC against the backbone's; kernels {}, cpu {}",
        run.rows,
        dyce_kernels::detect_isa(),
        dyce_kernels::cpu_model()
    );
    println!(
        "{:<8} {:>14} {:>12} {:>12}   per exit type: time per MAC / backbone's (share of MACs)",
        "config", "backbone ns/MAC", "exit time", "exit MACs"
    );
    let mut all = Tally::default();
    let mut all_exits: BTreeMap<String, Tally> = BTreeMap::new();
    let mut rows = Vec::new();
    for (cfg, tot) in run.configs.iter().zip(&totals) {
        let exits = tot.exits.values().fold(Tally::default(), |mut a, t| {
            a.add(*t);
            a
        });
        let (ns, macs) = (tot.backbone.ns + exits.ns, tot.backbone.macs + exits.macs);
        let base = tot.backbone.ns_per_mac();
        let types: Vec<String> = tot
            .exits
            .iter()
            .map(|(ty, t)| format!("{ty} {:.2} ({:.1}%)", t.ns_per_mac() / base, 100.0 * t.macs / macs))
            .collect();
        println!(
            "{:<8} {:>14.4} {:>11.1}% {:>11.1}%   {}",
            cfg.id,
            base,
            100.0 * exits.ns / ns,
            100.0 * exits.macs / macs,
            types.join(", ")
        );
        rows.push(json!({
            "id": cfg.id,
            "backbone_ns_per_mac": base,
            "exit_time_share": exits.ns / ns,
            "exit_macs_share": exits.macs / macs,
            "factors": tot.exits.iter().map(|(ty, t)| (ty.clone(), t.ns_per_mac() / base)).collect::<BTreeMap<_, _>>(),
        }));
        all.add(tot.backbone);
        for (ty, t) in &tot.exits {
            all_exits.entry(ty.clone()).or_default().add(*t);
        }
    }
    // Over all configurations together: each type weighted by the MACs it really ran.
    let factors: BTreeMap<String, f64> =
        all_exits.iter().map(|(ty, t)| (ty.clone(), t.ns_per_mac() / all.ns_per_mac())).collect();
    let flag: Vec<String> = factors.iter().map(|(ty, f)| format!("{ty}={f:.2}")).collect();
    println!("all configs: --exit-cost {}", flag.join(","));
    Ok(json!({"rows_per_batch": run.rows, "configs": rows, "exit_cost": factors}))
}
