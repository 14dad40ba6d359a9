//! The active configuration: an atomically swappable snapshot, read once per batch.
//!
//! A batch loads the snapshot when it starts and keeps that `Arc` to the end, so a switch never
//! changes the exits of a batch in flight, and readers never wait for writers.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use dyce_api::ConfigEntry;

use super::EngineError;
use crate::model::{Bundle, ExitType};

/// An enabled exit, resolved against the bundle's trained heads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExitSlot {
    /// Index into `Bundle::exits`.
    pub head: usize,
    /// Confidence at or above which a sample leaves.
    pub threshold: f32,
}

/// A configuration ready to execute.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedConfig {
    /// Config id from the table.
    pub id: String,
    /// Monotonic version of the active configuration (fencing token for writers).
    pub generation: u64,
    /// One slot per position; `None` where no exit is enabled.
    pub exits: Vec<Option<ExitSlot>>,
}

impl ResolvedConfig {
    /// Maps a table entry onto the bundle's positions and heads.
    pub fn resolve(bundle: &Bundle, entry: &ConfigEntry, generation: u64) -> Result<Self, EngineError> {
        let bad = |reason: String| EngineError::BadConfig { id: entry.id.clone(), reason };
        let mut exits = vec![None; bundle.backbone.positions()];
        for e in &entry.exits {
            let ty: ExitType = e.exit_type.parse().map_err(|err| bad(format!("{err}")))?;
            let head = bundle
                .exit_index(e.position, &ty)
                .ok_or_else(|| bad(format!("exit {ty} at position {} is not trained", e.position)))?;
            if !(0.0..=1.0).contains(&e.threshold) {
                return Err(bad(format!("threshold {} outside [0, 1]", e.threshold)));
            }
            exits[e.position] = Some(ExitSlot { head, threshold: e.threshold });
        }
        Ok(Self { id: entry.id.clone(), generation, exits })
    }

    /// A configuration built directly from slots (tests, recording).
    pub fn from_slots(id: &str, exits: Vec<Option<ExitSlot>>) -> Self {
        Self { id: id.to_string(), generation: 0, exits }
    }
}

/// The largest generation a write may carry. Writers compute the next token as active + 1 and the
/// runtime exports the generation as a signed 64-bit gauge, so generations stay within `i64`:
/// a runtime can then never hold a generation that wraps (once `u64::MAX` was accepted, the next
/// write without one wrapped to 0 and every fenced write after it was refused as stale).
pub const MAX_GENERATION: u64 = i64::MAX as u64;

/// Alias kept for readers of the admin API: what `GET /v1/config` reports.
pub type ActiveConfig = ResolvedConfig;

/// Holds the active configuration of one runtime and applies switches to it.
pub struct ConfigSwitch {
    bundle: Arc<Bundle>,
    active: ArcSwap<ResolvedConfig>,
    // Serialises writers so that the generation check and the swap are one step; readers
    // never take it.
    write: Mutex<()>,
}

impl ConfigSwitch {
    /// Starts on config `id` at generation 0.
    pub fn new(bundle: Arc<Bundle>, id: &str) -> Result<Self, EngineError> {
        let entry = bundle.configs.get(id).ok_or_else(|| EngineError::UnknownConfig(id.to_string()))?;
        let first = ResolvedConfig::resolve(&bundle, entry, 0)?;
        Ok(Self { bundle, active: ArcSwap::from_pointee(first), write: Mutex::new(()) })
    }

    /// The snapshot a batch should run on.
    pub fn current(&self) -> Arc<ResolvedConfig> {
        self.active.load_full()
    }

    /// Switches to `id`. With a generation, it must not be older than the active one (a late
    /// write from an old decision is refused), and an equal generation must name the same id
    /// (a retry); without one, the next generation is used. Generations above
    /// [`MAX_GENERATION`] are refused, and so is a write without one once the active generation
    /// is `MAX_GENERATION`: nothing wraps.
    pub fn switch(&self, id: &str, generation: Option<u64>) -> Result<Arc<ResolvedConfig>, EngineError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let cur = self.active.load_full();
        let entry = self.bundle.configs.get(id).ok_or_else(|| EngineError::UnknownConfig(id.to_string()))?;
        if let Some(given) = generation.filter(|&g| g > MAX_GENERATION) {
            return Err(EngineError::GenerationTooLarge { given, max: MAX_GENERATION });
        }
        let gen = match generation {
            None => cur
                .generation
                .checked_add(1)
                .filter(|&g| g <= MAX_GENERATION)
                .ok_or(EngineError::GenerationExhausted { active: cur.generation })?,
            Some(g) if g > cur.generation => g,
            Some(g) if g == cur.generation && cur.id == id => return Ok(cur),
            Some(g) => return Err(EngineError::StaleGeneration { given: g, active: cur.generation }),
        };
        let next = Arc::new(ResolvedConfig::resolve(&self.bundle, entry, gen)?);
        self.active.store(next.clone());
        Ok(next)
    }
}
