//! The images of one split as the model takes them, whatever they come from: Fashion-MNIST's
//! IDX arrays, or the files of an image folder decoded and transformed by `dyce-data`'s
//! `Preprocess` (the code `/v1/classify` runs, so calibration and serving see the same tensors).

use std::path::PathBuf;

use rayon::prelude::*;

use crate::error::CalibrateError;
use dyce_data::fashion_mnist::Images;
use dyce_data::{augment, Preprocess, Sample};

/// One split's images and labels.
#[derive(Debug, Clone)]
pub enum SplitData {
    /// Fashion-MNIST images held in memory, normalised with its mean and std.
    Idx(Images),
    /// Image files, read and preprocessed batch by batch.
    Files {
        /// The files and their class indices.
        samples: Vec<Sample>,
        /// Decode, resize and crop, normalise.
        preprocess: Preprocess,
    },
}

impl SplitData {
    /// Number of images.
    pub fn len(&self) -> usize {
        match self {
            SplitData::Idx(set) => set.len(),
            SplitData::Files { samples, .. } => samples.len(),
        }
    }

    /// Whether the split has no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `n` images (all when `n` is `None` or larger).
    pub fn limited(&self, n: Option<usize>) -> SplitData {
        let Some(n) = n else { return self.clone() };
        match self {
            SplitData::Idx(set) => SplitData::Idx(set.take(n.min(set.len()))),
            SplitData::Files { samples, preprocess } => {
                // Folders list their files class by class: take round-robin over the classes so
                // that a limit keeps every class.
                let mut by_class: std::collections::BTreeMap<u32, Vec<&Sample>> = Default::default();
                for s in samples {
                    by_class.entry(s.label).or_default().push(s);
                }
                let longest = by_class.values().map(Vec::len).max().unwrap_or(0);
                let samples = (0..longest)
                    .flat_map(|i| by_class.values().filter_map(move |v| v.get(i).copied()))
                    .take(n)
                    .cloned()
                    .collect();
                SplitData::Files { samples, preprocess: preprocess.clone() }
            }
        }
    }

    /// Class index of every image.
    pub fn labels(&self) -> Vec<u32> {
        match self {
            SplitData::Idx(set) => set.labels.iter().map(|&l| u32::from(l)).collect(),
            SplitData::Files { samples, .. } => samples.iter().map(|s| s.label).collect(),
        }
    }

    /// The file of image `i`, for image folders.
    pub fn path(&self, i: usize) -> Option<&PathBuf> {
        match self {
            SplitData::Idx(_) => None,
            SplitData::Files { samples, .. } => Some(&samples[i].path),
        }
    }

    /// Normalised NCHW input of images `start..end`; files are read and decoded in parallel.
    pub fn batch(&self, start: usize, end: usize) -> Result<Vec<f32>, CalibrateError> {
        match self {
            SplitData::Idx(set) => {
                let idx: Vec<usize> = (start..end).collect();
                Ok(augment::batch(set, &idx, 0, false, &mut rand::rng()))
            }
            SplitData::Files { samples, preprocess } => {
                let per_image: Vec<Vec<f32>> = samples[start..end]
                    .par_iter()
                    .map(|s| {
                        let bytes = std::fs::read(&s.path).map_err(|e| CalibrateError::Io {
                            path: s.path.clone(),
                            reason: e.to_string(),
                        })?;
                        let mut out = Vec::new();
                        preprocess.tensor_into(&bytes, &mut out).map_err(|e| CalibrateError::Io {
                            path: s.path.clone(),
                            reason: e.to_string(),
                        })?;
                        Ok(out)
                    })
                    .collect::<Result<_, CalibrateError>>()?;
                Ok(per_image.concat())
            }
        }
    }

    /// A fingerprint of the split's contents as the cache sees them: file names, sizes and
    /// modification times (not their bytes: hashing 50,000 JPEGs would take minutes), or the
    /// IDX pixels.
    pub fn fingerprint(&self, h: &mut Fnv) {
        match self {
            SplitData::Idx(set) => {
                h.write(&set.pixels);
                h.write(&set.labels);
            }
            SplitData::Files { samples, preprocess } => {
                h.write(format!("{preprocess:?}").as_bytes());
                for s in samples {
                    h.write(s.path.to_string_lossy().as_bytes());
                    h.write(&s.label.to_le_bytes());
                    if let Ok(m) = std::fs::metadata(&s.path) {
                        h.write(&m.len().to_le_bytes());
                        let t = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                        h.write(&t.map_or(0, |d| d.as_nanos()).to_le_bytes());
                    }
                }
            }
        }
    }
}

/// 64-bit FNV-1a: a stable hash for cache keys (std's hasher may change between Rust releases,
/// which would orphan every cache).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Mixes `bytes` in.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        // Length-delimited, so ("ab","c") and ("a","bc") differ.
        for b in (bytes.len() as u64).to_le_bytes() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}
