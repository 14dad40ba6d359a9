//! torchvision's `ImageFolder` layout and dyce's three splits over it.
//!
//! A class is a sub-folder; its index is the position of its name in sorted (byte) order, which
//! is torchvision's rule and, for ImageNet's synset folders, ImageNet's class order. Either the
//! root holds `train/`, `val/` (the calibration split; `calibration/` is accepted too) and
//! `test/`, each in that layout with the same classes, or the root itself is one such folder
//! and is split per class by a seeded shuffle with stated fractions.

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::DataError;

/// One labelled image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The file.
    pub path: PathBuf,
    /// Class index.
    pub label: u32,
}

/// The three splits of a folder dataset.
#[derive(Debug, Clone)]
pub struct FolderSplits {
    /// Class names (folder names), index = label.
    pub classes: Vec<String>,
    /// Exit training.
    pub train: Vec<Sample>,
    /// Thresholds, the configuration search and `expected_accuracy`.
    pub calibration: Vec<Sample>,
    /// The report's final numbers only.
    pub test: Vec<Sample>,
}

/// Shares of a single folder that go to training and calibration (the rest is the test split).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitFractions {
    /// Share for exit training.
    pub train: f64,
    /// Share for calibration.
    pub calibration: f64,
}

impl Default for SplitFractions {
    /// 60% / 20% / 20%.
    fn default() -> Self {
        Self { train: 0.6, calibration: 0.2 }
    }
}

impl SplitFractions {
    fn check(&self) -> Result<(), DataError> {
        let ok = |f: f64| f.is_finite() && f > 0.0 && f < 1.0;
        if ok(self.train) && ok(self.calibration) && self.train + self.calibration < 1.0 {
            Ok(())
        } else {
            Err(DataError::Fractions(format!(
                "train {} and calibration {}: each must be in (0, 1) and their sum under 1 (the rest is the test split)",
                self.train, self.calibration
            )))
        }
    }
}

/// Files read as images (by extension, case-insensitive), as torchvision's loader would.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];
/// Image files dyce cannot read; meeting one is an error rather than a silent skip.
const OTHER_IMAGE_EXTENSIONS: [&str; 7] = ["bmp", "gif", "webp", "tif", "tiff", "ppm", "pgm"];
/// Folder names of the calibration split.
const CALIBRATION_DIRS: [&str; 2] = ["val", "calibration"];

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |e| DataError::Io { path: path.to_path_buf(), reason: e.to_string() }
}

/// Sorted names of the sub-folders of `dir` (hidden ones skipped).
fn subdirs(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The classes and images of one `ImageFolder` directory; files sorted by name within a class.
pub fn scan(root: &Path) -> Result<(Vec<String>, Vec<Sample>), DataError> {
    let classes = subdirs(root)?;
    if classes.is_empty() {
        return Err(DataError::NoClasses(root.to_path_buf()));
    }
    let mut samples = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let dir = root.join(class);
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
            if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                files.push(path);
            } else if OTHER_IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                return Err(DataError::Unsupported(path));
            }
        }
        if files.is_empty() {
            return Err(DataError::EmptyClass(dir));
        }
        files.sort();
        samples.extend(files.into_iter().map(|path| Sample { path, label: label as u32 }));
    }
    Ok((classes, samples))
}

/// Opens a folder dataset: the split folders when present, else one folder split per class by
/// a shuffle seeded with `seed`.
pub fn open(root: &Path, fractions: SplitFractions, seed: u64) -> Result<FolderSplits, DataError> {
    let dirs = subdirs(root)?;
    let calibration_dir = CALIBRATION_DIRS.iter().find(|d| dirs.iter().any(|n| n == *d));
    let named = [
        ("train/", dirs.iter().any(|d| d == "train")),
        ("val/", calibration_dir.is_some()),
        ("test/", dirs.iter().any(|d| d == "test")),
    ];
    let present: Vec<&str> = named.iter().filter(|(_, p)| *p).map(|(n, _)| *n).collect();
    if present.len() == 3 {
        let (classes, train) = scan(&root.join("train"))?;
        let mut parts = Vec::new();
        for dir in [calibration_dir.copied().unwrap_or("val"), "test"] {
            let path = root.join(dir);
            let (c, samples) = scan(&path)?;
            if c != classes {
                let detail = match c.iter().zip(&classes).find(|(a, b)| a != b) {
                    Some((a, b)) => format!("{a:?} where train/ has {b:?}"),
                    None => format!("{} classes against {}", c.len(), classes.len()),
                };
                return Err(DataError::ClassMismatch { split: path, reference: root.join("train"), detail });
            }
            parts.push(samples);
        }
        let test = parts.pop().unwrap_or_default();
        let calibration = parts.pop().unwrap_or_default();
        return Ok(FolderSplits { classes, train, calibration, test });
    }
    if !present.is_empty() && present.len() < 3 && dirs.len() <= 3 {
        let missing: Vec<&str> = named.iter().filter(|(_, p)| !*p).map(|(n, _)| *n).collect();
        return Err(DataError::PartialSplits {
            root: root.to_path_buf(),
            present: present.join(", "),
            missing: missing.join(", "),
        });
    }
    fractions.check()?;
    let (classes, samples) = scan(root)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut train, mut calibration, mut test) = (Vec::new(), Vec::new(), Vec::new());
    // Per class, so that every split keeps the class balance even on small folders.
    for label in 0..classes.len() as u32 {
        let mut class: Vec<Sample> = samples.iter().filter(|s| s.label == label).cloned().collect();
        class.shuffle(&mut rng);
        let n = class.len() as f64;
        let n_train = (n * fractions.train).round() as usize;
        let n_cal =
            ((n * fractions.calibration).round() as usize).min(class.len() - n_train.min(class.len()));
        let rest = class.split_off(n_train.min(class.len()));
        train.extend(class);
        let mut rest = rest;
        let tail = rest.split_off(n_cal);
        calibration.extend(rest);
        test.extend(tail);
    }
    Ok(FolderSplits { classes, train, calibration, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn classes_are_sorted_folder_names_and_files_sorted() {
        let d = tempfile::tempdir().unwrap();
        for f in ["b/2.png", "b/1.JPG", "a/x.jpeg", "a/notes.txt", ".hidden/y.png"] {
            touch(&d.path().join(f));
        }
        let (classes, samples) = scan(d.path()).unwrap();
        assert_eq!(classes, ["a", "b"]);
        let names: Vec<_> =
            samples.iter().map(|s| (s.path.file_name().unwrap().to_str().unwrap(), s.label)).collect();
        assert_eq!(names, [("x.jpeg", 0), ("1.JPG", 1), ("2.png", 1)]);
    }

    #[test]
    fn bad_layouts_name_the_folder_or_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a")).unwrap();
        touch(&d.path().join("b/1.png"));
        let e = scan(d.path()).unwrap_err().to_string();
        assert!(e.contains("empty class folder") && e.contains("/a"), "{e}");
        touch(&d.path().join("a/1.webp"));
        assert!(scan(d.path()).unwrap_err().to_string().contains("1.webp: unsupported image format"));
        let empty = tempfile::tempdir().unwrap();
        assert!(scan(empty.path()).unwrap_err().to_string().contains("no class folders"));
        assert!(scan(&empty.path().join("nope")).unwrap_err().to_string().contains("nope"));
    }

    #[test]
    fn split_folders_must_agree_on_classes() {
        let d = tempfile::tempdir().unwrap();
        for f in
            ["train/a/1.png", "train/b/1.png", "val/a/1.png", "val/b/1.png", "test/a/1.png", "test/c/1.png"]
        {
            touch(&d.path().join(f));
        }
        let e = open(d.path(), SplitFractions::default(), 1).unwrap_err().to_string();
        assert!(e.contains("test") && e.contains("\"c\""), "{e}");
        std::fs::rename(d.path().join("test/c"), d.path().join("test/b")).unwrap();
        let s = open(d.path(), SplitFractions::default(), 1).unwrap();
        assert_eq!((s.train.len(), s.calibration.len(), s.test.len()), (2, 2, 2));
        std::fs::remove_dir_all(d.path().join("val")).unwrap();
        let e = open(d.path(), SplitFractions::default(), 1).unwrap_err().to_string();
        assert!(e.contains("not val/"), "{e}");
    }

    #[test]
    fn one_folder_is_split_per_class_reproducibly() {
        let d = tempfile::tempdir().unwrap();
        for c in ["a", "b"] {
            for i in 0..10 {
                touch(&d.path().join(format!("{c}/{i}.png")));
            }
        }
        let f = SplitFractions { train: 0.5, calibration: 0.3 };
        let s = open(d.path(), f, 7).unwrap();
        assert_eq!((s.train.len(), s.calibration.len(), s.test.len()), (10, 6, 4));
        assert_eq!(s.train.iter().filter(|x| x.label == 1).count(), 5);
        assert_eq!(open(d.path(), f, 7).unwrap().test, s.test);
        assert_ne!(open(d.path(), f, 8).unwrap().test, s.test);
        assert!(open(d.path(), SplitFractions { train: 0.9, calibration: 0.2 }, 7).is_err());
    }
}
