//! Bounded, offline fuzzing of dyce's decoders on the stable toolchain, two ways over the same
//! targets: mutation fuzzing (`dyce-fuzz`, `scripts/ci/fuzz.sh`) and coverage-guided fuzzing
//! under AFL++ (`dyce-fuzz-afl`, feature `afl`, `scripts/ci/fuzz_afl.sh`).
//!
//! Every target takes the bytes a peer or a file could hand dyce and drives the real entry
//! point (a pure function, or the axum router in-process). An input may be refused, but only
//! with the typed error or a JSON 4xx: a panic, a 5xx, an input that takes longer than the
//! per-input limit or that allocates past the target's bound is a finding. The mutator
//! (`mutate`) and AFL++ both start from the committed corpus in `fuzz/corpus/<target>/`
//! (seeds, `regress-*` inputs of past findings, `afl-*` inputs from AFL's minimized queue).

pub mod alloc;
pub mod fixture;
pub mod mutate;
pub mod runner;
pub mod targets;
