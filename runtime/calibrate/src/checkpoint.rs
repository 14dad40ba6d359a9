//! Training checkpoints: weights, optimiser state and the run's progress in one safetensors
//! file, replaced atomically after every epoch.
//!
//! The progress (the training loop's `TrainState`) rides in the file's metadata, so weights
//! and progress can never disagree: a run killed at any moment resumes from the last whole
//! epoch. `checkpoint.json` is a readable copy written after it; runs from before this format
//! only have that copy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Errors of reading or writing a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file could not be written, read or parsed.
    #[error("{path}: {reason}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The tensors could not be decoded.
    #[error("decoding the checkpoint's tensors")]
    Tensor(#[from] candle_core::Error),
}

/// A checkpoint's tensors by name.
pub type Tensors = HashMap<String, Tensor>;

/// Metadata key of the run's progress inside a checkpoint.
const STATE_KEY: &str = "dyce.train_state";

/// Files of a run directory.
pub struct RunFiles {
    /// Weights, optimiser state and progress of the last finished epoch.
    pub checkpoint: PathBuf,
    /// A readable copy of the last finished epoch's `TrainState`.
    pub state: PathBuf,
    /// Final weights (under the checkpoint's tensor names, BN statistics included).
    pub backbone: PathBuf,
}

impl RunFiles {
    /// The files under `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            checkpoint: dir.join("checkpoint.safetensors"),
            state: dir.join("checkpoint.json"),
            backbone: dir.join("backbone.safetensors"),
        }
    }
}

fn io_err(path: &Path, e: impl ToString) -> CheckpointError {
    CheckpointError::Io { path: path.into(), reason: e.to_string() }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn replace(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), CheckpointError>,
) -> Result<(), CheckpointError> {
    let tmp = path.with_extension("tmp");
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// Saves one epoch's checkpoint: `tensors` and the run's progress `state`.
pub fn save<S: Serialize>(
    files: &RunFiles,
    tensors: &HashMap<String, Tensor>,
    state: &S,
) -> Result<(), CheckpointError> {
    let json = serde_json::to_string_pretty(state).map_err(|e| io_err(&files.state, e))?;
    let meta = HashMap::from([(STATE_KEY.to_string(), json.clone())]);
    let mut named: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    named.sort_by_key(|(k, _)| *k);
    replace(&files.checkpoint, |tmp| {
        safetensors::serialize_to_file(named, Some(meta), tmp).map_err(|e| io_err(tmp, e))
    })?;
    replace(&files.state, |tmp| std::fs::write(tmp, json).map_err(|e| io_err(tmp, e)))
}

/// The last checkpoint's progress and tensors, if the run directory has one.
pub fn load<S: DeserializeOwned>(files: &RunFiles) -> Result<Option<(S, Tensors)>, CheckpointError> {
    let path = &files.checkpoint;
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| io_err(path, e))?;
    let text = match meta.metadata().as_ref().and_then(|m| m.get(STATE_KEY)) {
        Some(t) => t.clone(),
        None => std::fs::read_to_string(&files.state).map_err(|e| io_err(&files.state, e))?,
    };
    let state = serde_json::from_str(&text).map_err(|e| io_err(path, format!("its training state: {e}")))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
    Ok(Some((state, tensors)))
}
