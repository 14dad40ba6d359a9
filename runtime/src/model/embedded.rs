//! The default model compiled into the binary: ResNet-20 on Fashion-MNIST with trained exits and
//! a searched configuration table (`runtime/models/fmnist-resnet20/`, made by `dyce train` and
//! `dyce calibrate`; its REPORT.md says how). `dyce serve` without `--model` runs it, so a fresh
//! machine needs no download.

use std::path::Path;

use super::store::TensorStore;
use super::{Bundle, Manifest, ModelError};

const MANIFEST: &[u8] = include_bytes!("../../models/fmnist-resnet20/manifest.json");
const WEIGHTS: &[u8] = include_bytes!("../../models/fmnist-resnet20/weights.safetensors");
const CONFIGS: &[u8] = include_bytes!("../../models/fmnist-resnet20/configs.json");

/// Where the embedded files came from, for error messages.
const ORIGIN: &str = "<embedded>/fmnist-resnet20";

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], file: &str) -> Result<T, ModelError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ModelError::Json { path: Path::new(ORIGIN).join(file), reason: e.to_string() })
}

impl Bundle {
    /// The embedded default model.
    pub fn embedded() -> Result<Self, ModelError> {
        let manifest: Manifest = json(MANIFEST, "manifest.json")?;
        let store = TensorStore::from_bytes(WEIGHTS, &Path::new(ORIGIN).join("weights.safetensors"))?;
        Self::from_parts(manifest, &store, json(CONFIGS, "configs.json")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_bundle_loads() {
        let b = Bundle::embedded().unwrap();
        assert_eq!(b.manifest.name, "fmnist-resnet20");
        assert!(b.configs.configs.len() >= 8, "a searched table ships");
        assert!(b.configs.full().is_some());
    }
}
