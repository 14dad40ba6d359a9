//! DyCE configuration search over recorded exit predictions.
//!
//! Given, for a calibration split, every candidate exit's top-1 prediction and confidence plus
//! the MACs of the backbone and of each exit head ([`Records`]), this crate evaluates exit
//! configurations exactly ([`evaluate`]) and searches for good ones:
//!
//! - [`onepass`]: DyCE's published search (one shallow-to-deep pass per trade-off weight λ,
//!   thresholds by bounded Brent minimisation), kept for fidelity and comparison;
//! - [`coordinate_search`]: exact coordinate descent on the same objective, seeded from onepass,
//!   whose front provably dominates onepass' on the records it searched;
//! - [`uniform_threshold`]: one type everywhere with a shared threshold, a baseline.
//!
//! [`select_table`] then picks the handful of configurations the runtime switches between.
//! The crate is pure: no tensors, no I/O.

mod brent;
mod eval;
mod objective;
mod onepass;
mod ours;
mod pareto;
mod records;
mod route;
mod select;
pub mod synthetic;
mod uniform;

pub use brent::{brent_minimize, BrentResult};
pub use eval::{disagreement, evaluate, Candidate, Config, ConfigError, Outcome};
pub use objective::{LambdaGrid, Normalization};
pub use onepass::{onepass, OnepassParams};
pub use ours::{coordinate_search, SearchParams};
pub use pareto::{best_accuracy_within, pareto_front, Point};
pub use records::{ExitRecords, Records, RecordsError};
pub use select::{select_table, DEFAULT_K_MAX, DEFAULT_K_MIN};
pub use uniform::uniform_threshold;
