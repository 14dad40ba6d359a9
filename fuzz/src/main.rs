//! `dyce-fuzz [TARGET...]`: runs each target (all by default) for `DYCE_FUZZ_SECONDS` seconds
//! (default 10) after its seeds, and prints the executions and findings of each. Exits 1 when
//! anything was found; the failing inputs are in `target/fuzz/findings/<target>/`.
//!
//! Environment: `DYCE_FUZZ_SECONDS`, `DYCE_FUZZ_SEED` (default: from the clock, printed),
//! `DYCE_FUZZ_INPUT_TIMEOUT` (seconds one input may take, default 10).

use std::path::PathBuf;
use std::time::Duration;

use dyce_fuzz::runner::{self, Options};
use dyce_fuzz::targets::{self, NAMES};

#[global_allocator]
static ALLOC: dyce_fuzz::alloc::Counting = dyce_fuzz::alloc::Counting;

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<&str> =
        if names.is_empty() { NAMES.to_vec() } else { names.iter().map(String::as_str).collect() };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let seed = std::env::var("DYCE_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let secs = env_f64("DYCE_FUZZ_SECONDS", 10.0);
    let opts = Options {
        duration: Duration::from_secs_f64(secs),
        input_timeout: Duration::from_secs_f64(env_f64("DYCE_FUZZ_INPUT_TIMEOUT", 10.0)),
        seed,
        corpus: root.join("corpus"),
        findings: root.join("../target/fuzz/findings"),
    };
    println!("fuzz: seed {seed} (DYCE_FUZZ_SEED), {secs} s per target");
    runner::quiet_panics();
    let (mut passed, mut failed) = (0, 0);
    for name in names {
        let Some(mut target) = targets::make(name) else {
            eprintln!("unknown target {name}; targets: {}", NAMES.join(" "));
            std::process::exit(64);
        };
        let r = runner::run(&mut target, &opts).unwrap_or_else(|e| panic!("{name}: corpus: {e}"));
        println!(
            "fuzz {name}: {} execs ({} seeds, {} accepted), slowest {:.1} ms, peak {} KiB, {} findings",
            r.execs,
            r.seeds,
            r.accepted,
            r.slowest.as_secs_f64() * 1e3,
            r.peak_alloc >> 10,
            r.findings.len()
        );
        for (why, path) in &r.findings {
            println!("  {why}\n    {}", path.display());
        }
        if r.findings.is_empty() {
            passed += 1
        } else {
            failed += 1
        }
    }
    println!("fuzz: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
