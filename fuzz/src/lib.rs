//! Bounded, offline mutation fuzzing of dyce's decoders on the stable toolchain.
//!
//! Every target takes the bytes a peer or a file could hand dyce and drives the real entry
//! point (a pure function, or the axum router in-process). An input may be refused, but only
//! with the typed error or a JSON 4xx: a panic, a 5xx, an input that takes longer than the
//! per-input limit or that allocates past the target's bound is a finding. The mutator
//! (`mutate`) works from the committed seed corpus in `fuzz/corpus/<target>/`.

pub mod alloc;
pub mod fixture;
pub mod mutate;
pub mod runner;
pub mod targets;
