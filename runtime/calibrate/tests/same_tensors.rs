//! An image file gets bit-identical input tensors in calibration (`SplitData::batch`, what
//! features are computed from) and in serving (`/v1/classify`'s decode and transform, then the
//! OIP normalisation), for PNG and JPEG, grayscale and colour, any size, both interpolations.

use std::io::Cursor;

use dyce_calibrate::dataset::SplitData;
use dyce_data::{DecodeLimits, Interpolation, Preprocess, Sample, Transform};
use dyce_runtime::input::{normalise, to_pixels};
use dyce_runtime::model::InputSpec;
use image::{DynamicImage, ImageFormat, RgbImage};

fn photo(w: u32, h: u32, seed: u32) -> DynamicImage {
    // Smooth gradients plus a little texture: what resampling filters are sensitive to.
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        let t = (x * 7 + y * 13 + seed * 31) % 97;
        image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, (t * 2) as u8])
    }))
}

#[test]
fn calibration_and_serving_give_the_same_bits() {
    let dir = tempfile::tempdir().unwrap();
    let mut samples = Vec::new();
    for (i, (w, h, format, gray)) in [
        (300, 200, ImageFormat::Jpeg, false),
        (64, 97, ImageFormat::Png, false),
        (224, 224, ImageFormat::Png, true),
        (500, 333, ImageFormat::Jpeg, true),
        (20, 30, ImageFormat::Png, false),
    ]
    .into_iter()
    .enumerate()
    {
        let img = photo(w, h, i as u32);
        let img = if gray { DynamicImage::ImageLuma8(img.into_luma8()) } else { img };
        let mut bytes = Vec::new();
        img.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
        let path = dir.path().join(format!("{i}.{}", format.extensions_str()[0]));
        std::fs::write(&path, bytes).unwrap();
        samples.push(Sample { path, label: 0 });
    }
    let limits = DecodeLimits { max_pixels: 1 << 24, max_alloc: 8 << 24 };
    for (shape, transform) in [
        ([3, 224, 224], Transform::torchvision(224)),
        ([3, 160, 160], Transform::with_crop_pct(160, 0.95, Interpolation::Bicubic)),
        ([1, 28, 28], Transform::default()),
    ] {
        let (mean, std) = if shape[0] == 3 {
            (vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225])
        } else {
            (vec![0.286], vec![0.353])
        };
        let preprocess = Preprocess { shape, transform, mean: mean.clone(), std: std.clone(), limits };
        let split = SplitData::Files { samples: samples.clone(), preprocess };
        let spec = InputSpec { shape, mean, std, labels: vec![], transform };
        for (i, s) in samples.iter().enumerate() {
            let calibration = split.batch(i, i + 1).unwrap();
            let bytes = std::fs::read(&s.path).unwrap();
            let pixels = to_pixels(&bytes, shape, &transform).unwrap();
            let raw: Vec<f64> = pixels.iter().map(|&p| f64::from(p)).collect();
            let serving = normalise(&spec, "UINT8", &raw).unwrap();
            let same = calibration.iter().zip(&serving).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same && calibration.len() == serving.len(), "{} under {transform:?}", s.path.display());
        }
    }
}
