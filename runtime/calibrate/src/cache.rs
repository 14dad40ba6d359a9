//! Pooled features of a frozen backbone, computed once per split and kept on disk: one file of
//! `n × channels` f32 rows per exit position and one of the final head's top-1 answers. Memory
//! stays at one batch however large the split (a ResNet-50 pools 15,104 floats per image:
//! 3 GB for 50,000 images), and an interrupted extraction resumes where it stopped: the meta
//! file names how many rows are complete, and rows past that (a batch cut by a kill) are cut off.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dataset::SplitData;
use crate::error::CalibrateError;
use dyce_runtime::engine::{Backend, FastBackend};
use dyce_runtime::model::linear::{argmax, softmax_rows};
use dyce_runtime::model::Backbone;

/// What `meta.json` records; `done` is the commit point of every batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meta {
    n: usize,
    channels: Vec<usize>,
    classes: usize,
    done: usize,
}

/// One split's cached features.
#[derive(Debug, Clone)]
pub struct CachedFeatures {
    dir: PathBuf,
    /// Images.
    pub n: usize,
    /// Channels at each exit position.
    pub channels: Vec<usize>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CalibrateError + '_ {
    move |e| CalibrateError::Io { path: path.to_path_buf(), reason: e.to_string() }
}

fn position_file(dir: &Path, p: usize) -> PathBuf {
    dir.join(format!("position{p:02}.f32"))
}

fn final_file(dir: &Path) -> PathBuf {
    dir.join("final.bin")
}

fn read_all(path: &Path) -> Result<Vec<u8>, CalibrateError> {
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io(path))?;
    Ok(bytes)
}

impl CachedFeatures {
    /// The `n × channels[p]` pooled rows of position `p`, read from disk.
    pub fn position(&self, p: usize) -> Result<Vec<f32>, CalibrateError> {
        let path = position_file(&self.dir, p);
        let bytes = read_all(&path)?;
        let want = self.n * self.channels[p] * 4;
        if bytes.len() < want {
            return Err(CalibrateError::Io {
                path,
                reason: format!("{} bytes, expected {want}", bytes.len()),
            });
        }
        Ok(bytes[..want].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// The full model's top-1 class and confidence for every image.
    pub fn final_top1(&self) -> Result<(Vec<u32>, Vec<f32>), CalibrateError> {
        let path = final_file(&self.dir);
        let bytes = read_all(&path)?;
        if bytes.len() < self.n * 8 {
            return Err(CalibrateError::Io { path, reason: "shorter than its meta.json says".into() });
        }
        Ok(bytes[..self.n * 8]
            .chunks_exact(8)
            .map(|b| {
                (u32::from_le_bytes([b[0], b[1], b[2], b[3]]), f32::from_le_bytes([b[4], b[5], b[6], b[7]]))
            })
            .unzip())
    }
}

/// Where an extraction stands, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Images done (including those found in the cache).
    pub done: usize,
    /// Images in the split.
    pub total: usize,
}

fn write_meta(dir: &Path, meta: &Meta) -> Result<(), CalibrateError> {
    let tmp = dir.join("meta.json.tmp");
    let path = dir.join("meta.json");
    std::fs::write(&tmp, serde_json::to_vec(meta).expect("plain struct")).map_err(io(&tmp))?;
    // Rename is atomic: a kill leaves the old count or the new one, never half a file.
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

/// The row count to resume from: `done` of a meta file made for this same shape, else 0.
fn resume_point(dir: &Path, fresh: &Meta) -> usize {
    let old: Option<Meta> =
        std::fs::read(dir.join("meta.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    match old {
        Some(m) if Meta { done: 0, ..m.clone() } == *fresh && m.done <= fresh.n => m.done,
        _ => 0,
    }
}

/// Cuts a file to `rows` rows of `row_bytes`, creating it if missing; opened for appending.
fn open_at(path: &Path, rows: usize, row_bytes: usize) -> Result<File, CalibrateError> {
    let f = OpenOptions::new().create(true).append(true).open(path).map_err(io(path))?;
    f.set_len((rows * row_bytes) as u64).map_err(io(path))?;
    Ok(f)
}

/// Runs the backbone over `split` in batches of `batch`, into (or on from) the cache at `dir`.
pub fn extract(
    net: &Backbone,
    be: &mut FastBackend,
    split: &SplitData,
    dir: &Path,
    batch: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<CachedFeatures, CalibrateError> {
    let positions = net.positions();
    let channels: Vec<usize> = (0..positions).map(|p| net.channels_at(p)).collect();
    let classes = net.num_classes();
    let n = split.len();
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut meta = Meta { n, channels: channels.clone(), classes, done: 0 };
    let start = resume_point(dir, &meta);
    if start > 0 && start < n {
        tracing::info!(dir = %dir.display(), done = start, total = n, "resuming feature extraction");
    }
    let mut files = channels
        .iter()
        .enumerate()
        .map(|(p, &c)| open_at(&position_file(dir, p), start, c * 4))
        .collect::<Result<Vec<_>, _>>()?;
    let mut final_out = open_at(&final_file(dir), start, 8)?;
    meta.done = start;
    progress(Progress { done: start, total: n });
    let mut i = start;
    while i < n {
        let end = (i + batch.max(1)).min(n);
        let x = split.batch(i, end)?;
        let mut a = be.stem(&x, end - i)?;
        let mut pooled = Vec::new();
        for (p, file) in files.iter_mut().enumerate() {
            a = be.block(p, a)?;
            pooled = be.pool(&a)?;
            let bytes: Vec<u8> = pooled.iter().flat_map(|v| v.to_le_bytes()).collect();
            file.write_all(&bytes).map_err(io(&position_file(dir, p)))?;
        }
        be.recycle(a);
        let mut logits = net.head(&pooled, end - i);
        softmax_rows(&mut logits, classes);
        let top1: Vec<u8> = logits
            .chunks_exact(classes)
            .map(argmax)
            .flat_map(|(c, conf)| [(c as u32).to_le_bytes(), conf.clamp(0.0, 1.0).to_le_bytes()].concat())
            .collect();
        final_out.write_all(&top1).map_err(io(&final_file(dir)))?;
        meta.done = end;
        write_meta(dir, &meta)?;
        progress(Progress { done: end, total: n });
        i = end;
    }
    Ok(CachedFeatures { dir: dir.to_path_buf(), n, channels })
}
