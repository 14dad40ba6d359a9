//! The committed corpus, seeds and regressions alike, passes every target: what the bounded
//! run replays first, here in `cargo test` too so a regression shows without the fuzz script.

use std::time::Duration;

use dyce_fuzz::runner::{self, Options};
use dyce_fuzz::targets::{self, NAMES};

#[test]
fn every_corpus_file_passes_its_target() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let opts = Options {
        duration: Duration::ZERO,
        input_timeout: Duration::from_secs(60),
        seed: 0,
        corpus: root.join("corpus"),
        findings: std::env::temp_dir().join("dyce-fuzz-corpus-test"),
    };
    runner::quiet_panics();
    for name in NAMES {
        let mut target = targets::make(name).unwrap();
        let report = runner::run(&mut target, &opts).unwrap();
        assert!(report.seeds > 0 && report.execs == report.seeds as u64, "{name}: {report:?}");
        assert!(report.findings.is_empty(), "{name}: {:?}", report.findings);
        assert!(report.accepted > 0, "{name}: no seed was accepted, the corpus is stale");
    }
}
