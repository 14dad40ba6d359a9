//! `dyce-fuzz-afl TARGET`: one decoder target of `dyce_fuzz::targets` under AFL++, coverage-guided.
//! Built by `cargo afl build -p dyce-fuzz --features afl` (scripts/ci/fuzz_afl.sh does it all),
//! which instruments the code and links AFL++'s runtime; a plain `cargo build` skips this binary.
//!
//! The contract is the mutation fuzzer's: a panic, an answer that breaks the target's contract
//! (`Err`) or more heap than the target's bound is a crash for AFL; a hang is AFL's `-t`.

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;

use dyce_fuzz::alloc::{self, Counting};
use dyce_fuzz::targets::{self, NAMES};

#[global_allocator]
static ALLOC: Counting = Counting;

unsafe extern "C" {
    // AFL++'s runtime (afl-compiler-rt, linked in by cargo-afl): starts the fork server. Idempotent;
    // `afl::fuzz` calls it again, which then does nothing.
    fn __afl_manual_init();
}

fn main() -> ExitCode {
    let name = std::env::args().nth(1).unwrap_or_default();
    if !NAMES.contains(&name.as_str()) {
        eprintln!("usage: dyce-fuzz-afl TARGET; targets: {}", NAMES.join(" "));
        return ExitCode::from(64);
    }
    // Fork first, set up after: threads do not survive a fork, and a router target starts the
    // model thread (and candle may start a rayon pool), so each forked child builds its own
    // target once, then runs inputs in AFL's persistent loop. The loop's first pass clears the
    // coverage map, so the set-up does not count as the first input's coverage.
    // SAFETY: a C function of AFL++'s runtime without arguments, meant to be called this way.
    unsafe { __afl_manual_init() };
    // AFL's loop wants a closure that is unwind-safe; a panic ends the process here anyway.
    let mut target = AssertUnwindSafe(targets::make(&name).expect("the name is one of NAMES"));
    afl::fuzz!(|data: &[u8]| {
        // The mutation fuzzer's bound on one input, so AFL spends its time where that one does.
        if data.len() > target.max_len {
            return;
        }
        let base = alloc::start();
        if let Err(why) = (target.run)(data) {
            panic!("{}: {why}", target.name);
        }
        let used = alloc::peak_above(base);
        assert!(
            used <= target.max_alloc,
            "{}: allocated {} MiB, over the bound of {} MiB",
            target.name,
            used >> 20,
            target.max_alloc >> 20
        );
    });
    ExitCode::SUCCESS
}
