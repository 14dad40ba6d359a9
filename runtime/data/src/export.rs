//! Fashion-MNIST's IDX splits written out as an ImageFolder tree (`train/`, `val/`, `test/`,
//! one folder per class): the same images dyce's IDX path uses, so the image-folder path can be
//! checked against it, and a test fixture of real images in a user's layout.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, GrayImage, ImageFormat, RgbImage};

use crate::fashion_mnist::{Images, Splits, LABELS};
use crate::DataError;

/// How the images are written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExportOptions {
    /// At most this many images of each class per split (`None` = all).
    pub per_class: Option<usize>,
    /// Write JPEGs instead of PNGs.
    pub jpeg: bool,
    /// Upscale to this many pixels square (nearest neighbour) instead of 28.
    pub size: u32,
    /// Three identical channels instead of one.
    pub rgb: bool,
}

impl Default for ExportOptions {
    /// Lossless 28×28 grayscale PNGs: exactly the IDX pixels.
    fn default() -> Self {
        Self { per_class: None, jpeg: false, size: 28, rgb: false }
    }
}

/// Folder-safe class names: `T-shirt/top` has a slash.
pub fn class_folder(label: usize) -> String {
    format!("{label}-{}", LABELS[label].replace(['/', ' '], "_"))
}

/// Writes `splits` under `out` and returns the number of files written.
pub fn write_folder(splits: &Splits, out: &Path, opts: ExportOptions) -> Result<usize, DataError> {
    let mut written = 0;
    for (dir, set) in [("train", &splits.train), ("val", &splits.calibration), ("test", &splits.test)] {
        written += write_split(set, &out.join(dir), opts)?;
    }
    Ok(written)
}

fn write_split(set: &Images, dir: &Path, opts: ExportOptions) -> Result<usize, DataError> {
    let mut counts = [0usize; LABELS.len()];
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| DataError::Io { path, reason: e.to_string() }
    };
    for label in 0..LABELS.len() {
        let d = dir.join(class_folder(label));
        std::fs::create_dir_all(&d).map_err(io(&d))?;
    }
    let mut written = 0;
    for i in 0..set.len() {
        let label = set.labels[i] as usize;
        if opts.per_class.is_some_and(|n| counts[label] >= n) {
            continue;
        }
        counts[label] += 1;
        let gray = GrayImage::from_raw(28, 28, set.image(i).to_vec()).expect("28×28 bytes");
        let gray = if opts.size == 28 {
            gray
        } else {
            image::imageops::resize(&gray, opts.size, opts.size, image::imageops::FilterType::Nearest)
        };
        let img = if opts.rgb {
            DynamicImage::ImageRgb8(RgbImage::from_fn(gray.width(), gray.height(), |x, y| {
                let v = gray.get_pixel(x, y).0[0];
                image::Rgb([v, v, v])
            }))
        } else {
            DynamicImage::ImageLuma8(gray)
        };
        let (format, ext) = if opts.jpeg { (ImageFormat::Jpeg, "jpg") } else { (ImageFormat::Png, "png") };
        let mut bytes = Vec::new();
        img.write_to(&mut Cursor::new(&mut bytes), format).expect("encoding to memory");
        let path = dir.join(class_folder(label)).join(format!("{i:05}.{ext}"));
        std::fs::write(&path, bytes).map_err(io(&path))?;
        written += 1;
    }
    Ok(written)
}
