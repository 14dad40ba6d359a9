//! The eval transform: torchvision's `Resize` + `CenterCrop` on PIL images, then `ToTensor` +
//! `Normalize`, as one implementation for calibration, the load generator and serving.

use fast_image_resize as fir;
use serde::{Deserialize, Serialize};

use crate::decode::{decode, to_planar, DecodeLimits, Pixels};
use crate::ImageError;

/// Resampling filter, antialiased when downscaling (the filter's support grows with the scale
/// factor), as PIL's `Image.resize` and torchvision's `antialias=True` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// PIL's `BILINEAR` (a triangle filter): torchvision's default.
    #[default]
    Bilinear,
    /// PIL's `BICUBIC` (Keys' cubic with a = -0.5, i.e. Catmull-Rom): timm's usual choice.
    Bicubic,
}

/// How an image of any size becomes the model's `h × w` input (`input.transform` in a bundle's
/// manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transform {
    /// Resize so that the shorter side has this many pixels (the longer one keeps the aspect
    /// ratio, rounded down), then crop the centre to the model's input size: torchvision's
    /// `Resize(resize)` + `CenterCrop((h, w))`, zero padding where the image is smaller.
    /// Absent: resize to exactly `h × w`, aspect ratio not kept (bundles made before
    /// transforms were recorded, whose images come at the model's size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<u32>,
    /// Resampling filter.
    #[serde(default)]
    pub interpolation: Interpolation,
}

impl Transform {
    /// torchvision's ImageNet evaluation: shorter side to 256 for a 224 crop (crop / 0.875).
    pub fn torchvision(crop: u32) -> Self {
        Self::with_crop_pct(crop, 0.875, Interpolation::Bilinear)
    }

    /// timm's evaluation: shorter side to `floor(crop / crop_pct)`, then the centre crop.
    pub fn with_crop_pct(crop: u32, crop_pct: f64, interpolation: Interpolation) -> Self {
        Self { resize: Some((f64::from(crop) / crop_pct).floor() as u32), interpolation }
    }

    /// Resizes and crops `p` to `h × w` (same channels).
    pub fn apply(&self, p: &Pixels, (h, w): (u32, u32)) -> Result<Pixels, ImageError> {
        match self.resize {
            None => resize(p, w, h, self.interpolation),
            Some(short) => {
                let (rw, rh) = shorter_side(p.width, p.height, short);
                Ok(centre_crop(&resize(p, rw, rh, self.interpolation)?, w, h))
            }
        }
    }
}

/// torchvision's output size for `Resize(short)`: the shorter side becomes `short`, the longer
/// one `int(short * long / short_side)` (truncated; exact in integers for image sizes).
fn shorter_side(width: u32, height: u32, short: u32) -> (u32, u32) {
    let scaled = |long: u32, side: u32| (u64::from(short) * u64::from(long) / u64::from(side).max(1)) as u32;
    if width <= height {
        (short, scaled(height, width).max(1))
    } else {
        (scaled(width, height).max(1), short)
    }
}

fn resize(p: &Pixels, width: u32, height: u32, interp: Interpolation) -> Result<Pixels, ImageError> {
    if (p.width, p.height) == (width, height) {
        return Ok(p.clone());
    }
    let kind = if p.channels == 1 { fir::PixelType::U8 } else { fir::PixelType::U8x3 };
    let failed = |e: String| ImageError::Undecodable { format: "resized", reason: e };
    let src =
        fir::images::ImageRef::new(p.width, p.height, &p.data, kind).map_err(|e| failed(e.to_string()))?;
    let mut dst = fir::images::Image::new(width, height, kind);
    let filter = match interp {
        Interpolation::Bilinear => fir::FilterType::Bilinear,
        Interpolation::Bicubic => fir::FilterType::CatmullRom,
    };
    let options = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(filter));
    fir::Resizer::new().resize(&src, &mut dst, &options).map_err(|e| failed(e.to_string()))?;
    Ok(Pixels { width, height, channels: p.channels, data: dst.into_vec() })
}

/// torchvision's `CenterCrop`: offsets `int(round((size - crop) / 2))` with Python's round
/// (half to even), zero padding on each side where the image is smaller than the crop.
fn centre_crop(p: &Pixels, width: u32, height: u32) -> Pixels {
    let offset = |size: u32, crop: u32| -> i64 {
        let d = i64::from(size) - i64::from(crop);
        // (d / 2) rounded half to even: exact halves only occur for odd d.
        if d % 2 == 0 {
            d / 2
        } else {
            let lo = (d - 1).div_euclid(2);
            if lo % 2 == 0 {
                lo
            } else {
                lo + 1
            }
        }
    };
    let (top, left) = (offset(p.height, height), offset(p.width, width));
    let c = p.channels;
    let mut data = vec![0u8; width as usize * height as usize * c];
    for y in 0..height as i64 {
        let sy = y + top;
        if sy < 0 || sy >= i64::from(p.height) {
            continue;
        }
        for x in 0..width as i64 {
            let sx = x + left;
            if sx < 0 || sx >= i64::from(p.width) {
                continue;
            }
            let src = (sy as usize * p.width as usize + sx as usize) * c;
            let dst = (y as usize * width as usize + x as usize) * c;
            data[dst..dst + c].copy_from_slice(&p.data[src..src + c]);
        }
    }
    Pixels { width, height, channels: c, data }
}

/// Appends `(pixel / 255 - mean[c]) / std[c]` for planar `[c][h][w]` pixels to `out`, in that
/// order of operations (torchvision's `ToTensor` then `Normalize`).
pub fn normalize_into(pixels: &[u8], mean: &[f32], std: &[f32], out: &mut Vec<f32>) {
    let plane = pixels.len() / mean.len().max(1);
    out.reserve(pixels.len());
    for (c, chunk) in pixels.chunks(plane.max(1)).enumerate() {
        let (m, s) = (mean[c], std[c]);
        out.extend(chunk.iter().map(|&p| (f32::from(p) / 255.0 - m) / s));
    }
}

/// A model's whole preprocessing: decode, transform, normalise.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// `[c, h, w]` of the model's input.
    pub shape: [usize; 3],
    /// Resize and crop.
    pub transform: Transform,
    /// Per-channel mean of pixels scaled to [0, 1].
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
    /// Decoder limits.
    pub limits: DecodeLimits,
}

impl Preprocess {
    /// Planar `[c][h][w]` 8-bit pixels of the model's input from PNG or JPEG bytes.
    pub fn pixels(&self, bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
        let [c, h, w] = self.shape;
        let decoded = decode(bytes, c, self.limits)?;
        Ok(to_planar(&self.transform.apply(&decoded, (h as u32, w as u32))?))
    }

    /// Appends the normalised input tensor (`[c][h][w]` f32) of one image to `out`.
    pub fn tensor_into(&self, bytes: &[u8], out: &mut Vec<f32>) -> Result<(), ImageError> {
        normalize_into(&self.pixels(bytes)?, &self.mean, &self.std, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(width: u32, height: u32, f: impl Fn(u32, u32) -> u8) -> Pixels {
        let data = (0..height).flat_map(|y| (0..width).map(move |x| (x, y))).map(|(x, y)| f(x, y)).collect();
        Pixels { width, height, channels: 1, data }
    }

    #[test]
    fn shorter_side_matches_torchvision() {
        // torchvision: Resize(256) on 500x375 (w x h) gives 341x256; on 375x500, 256x341.
        assert_eq!(shorter_side(500, 375, 256), (341, 256));
        assert_eq!(shorter_side(375, 500, 256), (256, 341));
        assert_eq!(shorter_side(224, 224, 256), (256, 256));
        assert_eq!(Transform::torchvision(224).resize, Some(256));
        assert_eq!(Transform::with_crop_pct(224, 0.95, Interpolation::Bicubic).resize, Some(235));
    }

    #[test]
    fn centre_crop_rounds_half_to_even_and_pads() {
        let p = gray(5, 4, |x, y| (10 * y + x) as u8);
        // Width 5 -> 2: (5 - 2) / 2 = 1.5 rounds to 2; height 4 -> 1: 1.5 -> 2.
        assert_eq!(centre_crop(&p, 2, 1).data, vec![22, 23]);
        // Width 5 -> 4: 0.5 rounds to 0.
        assert_eq!(centre_crop(&p, 4, 4).data[..4], [0, 1, 2, 3]);
        // Larger than the image: zero padding around it (offset -1 on each axis).
        let padded = centre_crop(&gray(1, 1, |_, _| 7), 3, 3);
        assert_eq!(padded.data, vec![0, 0, 0, 0, 7, 0, 0, 0, 0]);
    }

    #[test]
    fn same_size_is_untouched_and_constant_images_stay_constant() {
        let p = gray(28, 28, |x, y| (x * 9 + y) as u8);
        assert_eq!(Transform::default().apply(&p, (28, 28)).unwrap(), p);
        let flat = gray(97, 61, |_, _| 200);
        for interpolation in [Interpolation::Bilinear, Interpolation::Bicubic] {
            let t = Transform { resize: Some(40), interpolation };
            let out = t.apply(&flat, (32, 32)).unwrap();
            assert_eq!((out.width, out.height), (32, 32));
            assert!(out.data.iter().all(|&v| v == 200), "{interpolation:?}");
        }
    }

    #[test]
    fn normalisation_is_totensor_then_normalize() {
        let mut out = Vec::new();
        normalize_into(&[0, 255, 51, 102], &[0.5, 0.2], &[0.25, 0.5], &mut out);
        let want = [(0.0 - 0.5) / 0.25, (1.0 - 0.5) / 0.25, (0.2 - 0.2) / 0.5, (0.4 - 0.2) / 0.5];
        for (a, b) in out.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn transform_json_is_stable() {
        let t = Transform::torchvision(224);
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"resize":256,"interpolation":"bilinear"}"#);
        assert_eq!(serde_json::from_str::<Transform>("{}").unwrap(), Transform::default());
        assert!(serde_json::from_str::<Transform>(r#"{"crop":3}"#).is_err());
    }
}
