//! Raw pixels of an accepted datatype → the normalised floats the model takes.

use crate::model::InputSpec;

/// Pixels that cannot be model input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    /// A `UINT8` value that is not an integer 0–255.
    #[error("UINT8 data must be integers 0-255, found {0}")]
    Uint8(f64),
    /// An `FP32` value outside [0, 1] (or not finite).
    #[error("FP32 data must be pixels scaled to [0, 1], found {0}")]
    Fp32(f64),
    /// Neither `UINT8` nor `FP32`.
    #[error("datatype {0:?} is not accepted; send UINT8 (0-255) or FP32 ([0, 1])")]
    Datatype(String),
}

/// Checks raw pixels of an accepted datatype (`UINT8`: integers 0–255; `FP32`: scaled to
/// [0, 1]) and normalises them with the manifest's per-channel mean and std; `raw` is NCHW.
pub fn normalise(spec: &InputSpec, datatype: &str, raw: &[f64]) -> Result<Vec<f32>, InputError> {
    let [c, h, w] = spec.shape;
    let uint8 = match datatype {
        "UINT8" => {
            if let Some(v) = raw.iter().find(|v| !(0.0..=255.0).contains(*v) || v.fract() != 0.0) {
                return Err(InputError::Uint8(*v));
            }
            true
        }
        "FP32" => {
            if let Some(v) = raw.iter().find(|v| !(v.is_finite() && (0.0..=1.0).contains(*v))) {
                return Err(InputError::Fp32(*v));
            }
            false
        }
        other => return Err(InputError::Datatype(other.to_string())),
    };
    let mut out = Vec::with_capacity(raw.len());
    for (i, v) in raw.iter().enumerate() {
        let ch = (i / (h * w)) % c;
        // UINT8 pixels take dyce-data's operations exactly (f32 divide by 255, then mean and
        // std), so an image gets the bits here that calibration gave it.
        let x = if uint8 { f32::from(*v as u8) / 255.0 } else { *v as f32 };
        out.push((x - spec.mean[ch]) / spec.std[ch]);
    }
    Ok(out)
}
