//! PNG and JPEG bytes to 8-bit pixels in the model's channels.

use std::io::Cursor;

use image::{ImageFormat, ImageReader};

use crate::ImageError;

/// What a decode may cost. The pixel limit is checked on the header before anything is
/// allocated; the allocation limit is enforced by the decoder itself (a 16-bit RGBA image
/// needs 8 bytes per pixel before conversion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Most pixels (width × height) an image may declare.
    pub max_pixels: u64,
    /// Most bytes the decoder may allocate for one image.
    pub max_alloc: u64,
}

impl DecodeLimits {
    /// For image files a user points dyce at (calibration, benchmarks): trusted more than
    /// network input, but a corrupt file must still not take gigabytes; 64 megapixels is
    /// more than any camera.
    pub const FILES: DecodeLimits = DecodeLimits { max_pixels: 64 << 20, max_alloc: 8 * (64 << 20) };
}

impl Default for DecodeLimits {
    /// 4096 × 4096 pixels, and 8 bytes per pixel of that.
    fn default() -> Self {
        Self { max_pixels: 4096 * 4096, max_alloc: 8 * 4096 * 4096 }
    }
}

/// Decoded pixels, interleaved (`[h][w][c]`), 8 bits per channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Channels per pixel (1 or 3).
    pub channels: usize,
    /// `height × width × channels` values.
    pub data: Vec<u8>,
}

/// The image format by its signature; file names and Content-Type are not trusted.
fn sniff(bytes: &[u8]) -> Result<(ImageFormat, &'static str), ImageError> {
    if bytes.is_empty() {
        Err(ImageError::Empty)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok((ImageFormat::Png, "PNG"))
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok((ImageFormat::Jpeg, "JPEG"))
    } else {
        Err(ImageError::NotAnImage)
    }
}

/// Decodes a PNG or JPEG of any colour type into `channels` (1 or 3) 8-bit channels.
///
/// Colour to grayscale uses PIL's `convert("L")` (ITU-R 601-2 luma: 299/587/114 per mille,
/// rounded), what torchvision's `Grayscale` does on PIL images; grayscale to RGB repeats the
/// value; alpha is dropped, not composited (as PIL's `convert("RGB")`); 16-bit samples are
/// scaled to 8 bits.
pub fn decode(bytes: &[u8], channels: usize, limits: DecodeLimits) -> Result<Pixels, ImageError> {
    if channels != 1 && channels != 3 {
        return Err(ImageError::Channels(channels));
    }
    let (format, name) = sniff(bytes)?;
    let failed = |e: image::ImageError| match e {
        image::ImageError::Limits(l) => ImageError::DecoderLimit { format: name, reason: l.to_string() },
        other => ImageError::Undecodable { format: name, reason: other.to_string() },
    };
    let reader = || {
        let mut r = ImageReader::with_format(Cursor::new(bytes), format);
        let mut l = image::Limits::default();
        l.max_alloc = Some(limits.max_alloc);
        r.limits(l);
        r
    };
    // The header alone gives the size: refuse a decompression bomb before allocating for it.
    let (width, height) = reader().into_dimensions().map_err(failed)?;
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ImageError::TooManyPixels { width, height, limit: limits.max_pixels });
    }
    let img = reader().decode().map_err(failed)?;
    let data = match (channels, img.color().has_color()) {
        (3, _) => img.into_rgb8().into_raw(),
        (_, false) => img.into_luma8().into_raw(),
        _ => luma_601(&img.into_rgb8().into_raw()),
    };
    Ok(Pixels { width, height, channels, data })
}

/// PIL's RGB → L conversion, in its fixed-point form (`(R·19595 + G·38470 + B·7471 + 2^15) >> 16`).
fn luma_601(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| {
            ((u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471 + 0x8000) >> 16)
                as u8
        })
        .collect()
}

/// Interleaved `[h][w][c]` to planar `[c][h][w]`.
pub fn to_planar(p: &Pixels) -> Vec<u8> {
    if p.channels == 1 {
        return p.data.clone();
    }
    let plane = p.width as usize * p.height as usize;
    let mut out = vec![0u8; p.channels * plane];
    for (i, px) in p.data.chunks_exact(p.channels).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            out[c * plane + i] = v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::DynamicImage;

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn colour_types_convert_to_the_model_channels() {
        let rgb = image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 80, y as u8 * 200, 40]));
        let bytes = png(DynamicImage::ImageRgb8(rgb.clone()));
        let p = decode(&bytes, 3, DecodeLimits::default()).unwrap();
        assert_eq!((p.width, p.height, p.data), (3, 2, rgb.into_raw()));
        let g = decode(&bytes, 1, DecodeLimits::default()).unwrap();
        // PIL: L = round(0.299 R + 0.587 G + 0.114 B); pixel (2, 1) = (160, 200, 40).
        assert_eq!(g.data[5], ((160 * 19595 + 200 * 38470 + 40 * 7471 + 0x8000) >> 16) as u8);
        let rgba16 =
            image::ImageBuffer::<image::Rgba<u16>, _>::from_pixel(2, 2, image::Rgba([65535, 0, 257, 0]));
        let p = decode(&png(DynamicImage::ImageRgba16(rgba16)), 3, DecodeLimits::default()).unwrap();
        assert_eq!(&p.data[..3], &[255, 0, 1], "16-bit scaled, alpha dropped");
        let gray = decode(
            &png(DynamicImage::ImageLuma8(image::GrayImage::from_pixel(2, 1, image::Luma([9])))),
            3,
            DecodeLimits::default(),
        )
        .unwrap();
        assert_eq!(gray.data, vec![9; 6]);
    }

    #[test]
    fn bad_bytes_and_bombs_are_refused() {
        assert_eq!(decode(&[], 1, DecodeLimits::default()), Err(ImageError::Empty));
        assert_eq!(decode(b"GIF89a", 1, DecodeLimits::default()), Err(ImageError::NotAnImage));
        assert!(matches!(
            decode(b"\x89PNG\r\n\x1a\nxx", 1, DecodeLimits::default()),
            Err(ImageError::Undecodable { .. })
        ));
        let big = png(DynamicImage::ImageLuma8(image::GrayImage::new(300, 300)));
        let small = DecodeLimits { max_pixels: 1000, ..DecodeLimits::default() };
        assert!(matches!(decode(&big, 1, small), Err(ImageError::TooManyPixels { .. })));
        let tight = DecodeLimits { max_alloc: 1000, ..DecodeLimits::default() };
        assert!(matches!(decode(&big, 1, tight), Err(ImageError::DecoderLimit { .. })));
        assert_eq!(decode(&big, 4, DecodeLimits::default()), Err(ImageError::Channels(4)));
    }

    /// The allocation limit counts the decoded image's bytes per pixel: 8 for 16-bit RGBA, so a
    /// budget of 8 bytes per pixel is what the worst colour type needs, and one byte less
    /// refuses it (issue 19: a 130 KB PNG of 4096×4096 16-bit RGBA decodes to 128 MiB).
    #[test]
    fn the_allocation_limit_counts_16_bit_rgba_at_8_bytes_per_pixel() {
        let rgba16 = image::ImageBuffer::<image::Rgba<u16>, _>::from_pixel(64, 64, image::Rgba([1, 2, 3, 4]));
        let bytes = png(DynamicImage::ImageRgba16(rgba16));
        let limits = |max_alloc| DecodeLimits { max_pixels: 64 * 64, max_alloc };
        assert!(decode(&bytes, 3, limits(8 * 64 * 64)).is_ok());
        assert!(matches!(decode(&bytes, 3, limits(8 * 64 * 64 - 1)), Err(ImageError::DecoderLimit { .. })));
        let gray16 = image::ImageBuffer::<image::Luma<u16>, _>::from_pixel(64, 64, image::Luma([9]));
        let bytes = png(DynamicImage::ImageLuma16(gray16));
        assert!(decode(&bytes, 1, limits(2 * 64 * 64)).is_ok());
        assert!(matches!(decode(&bytes, 1, limits(2 * 64 * 64 - 1)), Err(ImageError::DecoderLimit { .. })));
    }
}
