//! Times each search on a 10,000 × 9 × 3 synthetic record set and compares the fronts.
//!
//! Run with `cargo run -p dyce-search --release --example bench`.

use std::time::Instant;

use dyce_search::synthetic::{generate, SyntheticParams};
use dyce_search::{
    best_accuracy_within, coordinate_search, onepass, select_table, uniform_threshold, Candidate,
    OnepassParams, Point, SearchParams, DEFAULT_K_MAX, DEFAULT_K_MIN,
};

/// A search to time.
type Run<'a> = Box<dyn Fn() -> Vec<Candidate> + 'a>;

/// Cheapest point within `drop` of the full model's accuracy, as a MACs reduction.
fn reduction(front: &[Candidate], full_acc: f64, full_macs: f64, drop: f64) -> (f64, f64) {
    let best = front
        .iter()
        .filter(|c| c.accuracy() >= full_acc - drop)
        .min_by(|a, b| a.macs().total_cmp(&b.macs()))
        .expect("the full model is on every front or dominated by a cheaper point");
    (1.0 - best.macs() / full_macs, best.accuracy())
}

fn main() {
    let t0 = Instant::now();
    let records =
        generate(&SyntheticParams { samples: 10_000, positions: 9, types: 3, ..SyntheticParams::default() });
    println!("generate: {:.3}s", t0.elapsed().as_secs_f64());
    let full_acc = records.full_accuracy();
    let full_macs = records.full_macs();
    println!("full model: accuracy {full_acc:.4}, {full_macs:.3e} MACs");

    let runs: Vec<(&str, Run)> = vec![
        ("onepass", Box::new(|| onepass(&records, &OnepassParams::default()))),
        ("ours", Box::new(|| coordinate_search(&records, &SearchParams::default()))),
        (
            "ours (no seeds)",
            Box::new(|| {
                coordinate_search(
                    &records,
                    &SearchParams { onepass_seed: None, uniform_seed: None, ..SearchParams::default() },
                )
            }),
        ),
        ("uniform", Box::new(|| uniform_threshold(&records, 2048))),
    ];
    let mut fronts = Vec::new();
    for (name, run) in &runs {
        let t = Instant::now();
        let front = run();
        let secs = t.elapsed().as_secs_f64();
        println!("{name:24} {secs:7.3}s  front size {:4}", front.len());
        fronts.push((*name, front));
    }
    for drop in [0.0, 0.005, 0.01, 0.02] {
        println!("accuracy drop <= {:.1} pt:", drop * 100.0);
        for (name, front) in &fronts {
            let (r, a) = reduction(front, full_acc, full_macs, drop);
            println!("  {name:24} MACs -{:5.1}%  (accuracy {a:.4})", r * 100.0);
        }
    }
    println!("best accuracy within a MACs budget (fraction of full):");
    for frac in [0.3, 0.4, 0.5, 0.6, 0.7, 0.8] {
        let cells: Vec<String> = fronts
            .iter()
            .map(|(name, f)| {
                let a = best_accuracy_within(f, frac * full_macs).unwrap_or(f64::NAN);
                format!("{name} {a:.4}")
            })
            .collect();
        println!("  {frac:.1}: {}", cells.join(" | "));
    }
    let table = select_table(&records, &fronts[1].1, full_acc - 0.2, DEFAULT_K_MIN, DEFAULT_K_MAX);
    println!("table from ours (floor full - 20 pt): {} entries", table.len());
    for c in &table {
        println!("  macs {:.3}  acc {:.4}  exits {:?}", c.macs() / full_macs, c.accuracy(), c.config.exits);
    }
}
