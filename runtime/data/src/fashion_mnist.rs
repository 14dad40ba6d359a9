//! Fashion-MNIST from the gzipped IDX files of Debian's `dataset-fashion-mnist`, with dyce's
//! fixed splits: train 50,000 and calibration 10,000 (held out of the 60,000 training images by
//! a seeded shuffle), test 10,000 (`t10k`, never used for training or search).

use std::io::Read;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Where Debian's `dataset-fashion-mnist` puts the files.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Seed of the train/calibration split; fixed so that every tool agrees on the split.
pub const SPLIT_SEED: u64 = 20_240_304;

/// Images held out of the training files for calibration.
pub const CALIBRATION_SIZE: usize = 10_000;

/// Fashion-MNIST's class names, index = label.
pub const LABELS: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Errors reading the data set.
#[derive(Debug, thiserror::Error)]
pub enum FashionMnistError {
    /// The directory or a file is missing.
    #[error("{path}: {reason} (install the data with `apt-get install dataset-fashion-mnist`, or pass --data DIR)")]
    Missing {
        /// File concerned.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// A file is not valid gzipped IDX.
    #[error("{path}: {reason}")]
    Format {
        /// File concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A set of labelled 28×28 grayscale images, pixels 0–255.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Images {
    /// `len × 784` pixels, row-major.
    pub pixels: Vec<u8>,
    /// Label of each image.
    pub labels: Vec<u8>,
}

/// Pixels per image.
pub const PIXELS: usize = 28 * 28;

impl Images {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * PIXELS..(i + 1) * PIXELS]
    }

    /// The images at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Images {
        let mut out =
            Images { pixels: Vec::with_capacity(idx.len() * PIXELS), labels: Vec::with_capacity(idx.len()) };
        for &i in idx {
            out.pixels.extend_from_slice(self.image(i));
            out.labels.push(self.labels[i]);
        }
        out
    }

    /// The first `n` images (all when `n` is larger).
    pub fn take(&self, n: usize) -> Images {
        let n = n.min(self.len());
        Images { pixels: self.pixels[..n * PIXELS].to_vec(), labels: self.labels[..n].to_vec() }
    }
}

/// The three fixed splits.
#[derive(Debug, Clone)]
pub struct Splits {
    /// 50,000 training images.
    pub train: Images,
    /// 10,000 calibration images (for exit thresholds and the search).
    pub calibration: Images,
    /// 10,000 test images (final numbers only).
    pub test: Images,
}

fn read_gz(path: &Path) -> Result<Vec<u8>, FashionMnistError> {
    let file = std::fs::File::open(path)
        .map_err(|e| FashionMnistError::Missing { path: path.into(), reason: e.to_string() })?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .map_err(|e| FashionMnistError::Format { path: path.into(), reason: format!("not gzip: {e}") })?;
    Ok(bytes)
}

/// Parses an IDX file: magic `0x0000_08_dd` (unsigned bytes, `dd` dimensions), then big-endian
/// sizes. Returns the dimensions and the payload.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<(Vec<usize>, Vec<u8>), FashionMnistError> {
    let bad = |reason: String| FashionMnistError::Format { path: path.into(), reason };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(bad("not an IDX file of unsigned bytes".into()));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(bad("truncated header".into()));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().expect("4 bytes")) as usize)
        .collect();
    let len: usize = dims.iter().product();
    if bytes.len() != header + len {
        return Err(bad(format!("{} payload bytes for dimensions {dims:?}", bytes.len() - header)));
    }
    Ok((dims, bytes[header..].to_vec()))
}

fn read_set(dir: &Path, prefix: &str) -> Result<Images, FashionMnistError> {
    let ipath = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
    let lpath = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    let (idims, pixels) = parse_idx(&read_gz(&ipath)?, &ipath)?;
    let (ldims, labels) = parse_idx(&read_gz(&lpath)?, &lpath)?;
    if idims.len() != 3 || idims[1..] != [28, 28] {
        return Err(FashionMnistError::Format {
            path: ipath,
            reason: format!("image dimensions {idims:?}, expected [n, 28, 28]"),
        });
    }
    if ldims != [idims[0]] {
        return Err(FashionMnistError::Format {
            path: lpath,
            reason: format!("{ldims:?} labels for {} images", idims[0]),
        });
    }
    if let Some(l) = labels.iter().find(|&&l| l >= 10) {
        return Err(FashionMnistError::Format { path: lpath, reason: format!("label {l} outside 0..10") });
    }
    Ok(Images { pixels, labels })
}

/// Loads the data set from `dir` and makes the fixed splits.
pub fn load(dir: &Path) -> Result<Splits, FashionMnistError> {
    let all = read_set(dir, "train")?;
    let test = read_set(dir, "t10k")?;
    let (calibration, train) = split(&all);
    Ok(Splits { train, calibration, test })
}

/// Holds out `CALIBRATION_SIZE` images by a seeded shuffle; both parts keep file order.
pub fn split(all: &Images) -> (Images, Images) {
    let mut idx: Vec<usize> = (0..all.len()).collect();
    idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(SPLIT_SEED));
    let k = CALIBRATION_SIZE.min(all.len());
    let (mut cal, mut train) = (idx[..k].to_vec(), idx[k..].to_vec());
    cal.sort_unstable();
    train.sort_unstable();
    (all.subset(&cal), all.subset(&train))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn parses_idx_and_rejects_broken_files() {
        let p = Path::new("x");
        assert_eq!(parse_idx(&idx(&[2, 2], &[1, 2, 3, 4]), p).unwrap(), (vec![2, 2], vec![1, 2, 3, 4]));
        assert!(parse_idx(&idx(&[2, 2], &[1, 2, 3]), p).is_err());
        assert!(parse_idx(&[0, 0, 9, 1], p).is_err());
        assert!(parse_idx(&[0, 0, 8, 2, 0], p).is_err());
    }

    #[test]
    fn split_is_disjoint_and_fixed() {
        let all = Images {
            pixels: vec![0; 12_000 * PIXELS],
            labels: (0..12_000).map(|i| (i % 10) as u8).collect(),
        };
        let (cal, train) = split(&all);
        assert_eq!((cal.len(), train.len()), (10_000, 2_000));
        assert_eq!(split(&all).0, cal);
    }

    #[test]
    fn missing_directory_names_the_package() {
        let e = load(Path::new("/nonexistent")).unwrap_err().to_string();
        assert!(e.contains("apt-get install dataset-fashion-mnist"), "{e}");
    }
}
