//! PNG and JPEG images → the pixels a model takes (`POST /v1/classify`).

use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, ImageReader};

/// Most pixels (width × height) an image may have: bounds the memory one decode takes
/// (≤ 4096 × 4096 RGBA16 = 128 MiB) whatever the compressed size.
pub const MAX_PIXELS: u64 = 4096 * 4096;

/// Why an image could not be turned into model input.
#[derive(Debug, thiserror::Error)]
pub enum ImageInputError {
    /// No body.
    #[error("empty body; send a PNG or JPEG image")]
    Empty,
    /// The first bytes are neither PNG's nor JPEG's signature.
    #[error("the body is not a PNG or JPEG image (judged by its first bytes; Content-Type is ignored)")]
    NotAnImage,
    /// The image is over `MAX_PIXELS`.
    #[error("image of {width}×{height} pixels is over the limit of {limit} pixels (4096×4096)")]
    TooManyPixels {
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
        /// `MAX_PIXELS`.
        limit: u64,
    },
    /// The decoder would need more memory than its limits allow.
    #[error("decoding the {format} image needs too much memory: {reason}")]
    DecoderLimit {
        /// PNG or JPEG.
        format: &'static str,
        /// The decoder's reason.
        reason: String,
    },
    /// A PNG or JPEG signature, but the data is broken or uses an unsupported feature.
    #[error("could not decode the {format} image: {reason}")]
    Undecodable {
        /// PNG or JPEG.
        format: &'static str,
        /// The decoder's reason.
        reason: String,
    },
    /// The model's input is neither grayscale nor RGB.
    #[error("the model takes {0}-channel input; /v1/classify serves 1- or 3-channel models (use OIP)")]
    Channels(usize),
}

/// The image format by its signature; Content-Type is not trusted (clients often send none or
/// `application/octet-stream`).
fn sniff(bytes: &[u8]) -> Result<(ImageFormat, &'static str), ImageInputError> {
    if bytes.is_empty() {
        Err(ImageInputError::Empty)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok((ImageFormat::Png, "PNG"))
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok((ImageFormat::Jpeg, "JPEG"))
    } else {
        Err(ImageInputError::NotAnImage)
    }
}

/// Decodes a PNG or JPEG into the pixels the model takes: `[c, h, w]` values 0–255, CHW.
///
/// Colour becomes grayscale by the `image` crate's luma (Rec. 709 weights) when `c` = 1; alpha
/// is dropped, not composited. A different size is resized to exactly `h`×`w` with the Triangle
/// filter: bilinear, whose support `image` widens with the scale factor, so downscaling averages
/// instead of aliasing, at a fraction of Lanczos's cost. The aspect ratio is not kept: cropping
/// would cut off content and padding would add borders the model never saw in training; a
/// client that wants either does it before sending.
pub fn to_pixels(bytes: &[u8], [c, h, w]: [usize; 3]) -> Result<Vec<u8>, ImageInputError> {
    if c != 1 && c != 3 {
        return Err(ImageInputError::Channels(c));
    }
    let (format, name) = sniff(bytes)?;
    let reader = || ImageReader::with_format(Cursor::new(bytes), format);
    let failed = |e: image::ImageError| match e {
        image::ImageError::Limits(l) => ImageInputError::DecoderLimit { format: name, reason: l.to_string() },
        other => ImageInputError::Undecodable { format: name, reason: other.to_string() },
    };
    // The header alone gives the size: refuse a decompression bomb before allocating for it.
    let (width, height) = reader().into_dimensions().map_err(failed)?;
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ImageInputError::TooManyPixels { width, height, limit: MAX_PIXELS });
    }
    let img = reader().decode().map_err(failed)?;
    let (w, h) = (w as u32, h as u32);
    let resize = |img: DynamicImage| {
        if img.width() == w && img.height() == h {
            img
        } else {
            img.resize_exact(w, h, FilterType::Triangle)
        }
    };
    Ok(if c == 1 {
        // Grayscale first: resizing one channel costs a third of resizing three.
        resize(DynamicImage::ImageLuma8(img.into_luma8())).into_luma8().into_raw()
    } else {
        let rgb = resize(DynamicImage::ImageRgb8(img.into_rgb8())).into_rgb8();
        // Interleaved HWC → planar CHW, the layout of OIP's `[N, C, H, W]`.
        let plane = (w * h) as usize;
        let mut chw = vec![0u8; 3 * plane];
        for (i, px) in rgb.pixels().enumerate() {
            for ch in 0..3 {
                chw[ch * plane + i] = px.0[ch];
            }
        }
        chw
    })
}
