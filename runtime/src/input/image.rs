//! PNG and JPEG images → the pixels a model takes (`POST /v1/classify`), through `dyce-data`'s
//! decoder and the bundle's eval transform: the same code calibration used on its files, so an
//! image gets the input tensor it got there.

use dyce_data::decode::{decode, to_planar, DecodeLimits};
pub use dyce_data::ImageError as ImageInputError;
use dyce_data::Transform;

/// Most pixels (width × height) an image may have: with the decoder's allocation limit (8 bytes
/// per pixel of that) it bounds the memory one decode takes, whatever the compressed size.
pub const MAX_PIXELS: u64 = 4096 * 4096;

/// Most bytes the decoder may allocate for one image: 8 per pixel, what 16-bit RGBA takes.
pub const MAX_DECODE_ALLOC: u64 = 8 * MAX_PIXELS;

/// Most heap one decode takes at its peak: the decoder's image (at most [`MAX_DECODE_ALLOC`])
/// while it is converted to 8-bit RGB (3 bytes per pixel), then to luma (1 more) for a
/// grayscale model: 12 bytes per pixel of [`MAX_PIXELS`], 192 MiB. The resize to the model's
/// size and the decoder's own buffers take little beside (rows, the inflate window).
/// `--decode-concurrency` of these at once is what images may add to the process.
pub const DECODE_PEAK_BYTES: usize = 12 * MAX_PIXELS as usize;

/// Decodes a PNG or JPEG into the pixels the model takes: `[c, h, w]` values 0–255, CHW.
///
/// Colour becomes grayscale as PIL's `convert("L")` does when `c` = 1 (what torchvision's
/// `Grayscale` applies to PIL images); alpha is dropped, not composited. The image then goes
/// through the bundle's transform: by default resized to exactly `h`×`w` (antialiased
/// bilinear, aspect ratio not kept); a bundle made from an image folder records torchvision's
/// resize of the shorter side and centre crop instead.
pub fn to_pixels(
    bytes: &[u8],
    [c, h, w]: [usize; 3],
    transform: &Transform,
) -> Result<Vec<u8>, ImageInputError> {
    let limits = DecodeLimits { max_pixels: MAX_PIXELS, max_alloc: MAX_DECODE_ALLOC };
    let decoded = decode(bytes, c, limits)?;
    Ok(to_planar(&transform.apply(&decoded, (h as u32, w as u32))?))
}
