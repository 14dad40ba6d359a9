//! What the OIP v2 protocols share, whatever the encoding (REST JSON, REST binary, gRPC raw or
//! typed): the model check, the input checks and decoding, the requested outputs and the
//! output tensors. REST (`oip.rs`) and gRPC (`grpc/`) only translate their wire types to and
//! from these, so a bad request gets the same reason text on either.

use super::binary;
use super::error::ApiError;
use super::oip_types::TensorMetadata;
use crate::engine::queue::JobOutput;
use crate::input::normalise;
use crate::service::Runtime;

/// Input datatypes the model takes.
const ACCEPTED_DATATYPES: [&str; 2] = ["UINT8", "FP32"];

/// Output names, in the order they are returned.
pub const OUTPUTS: [&str; 4] = ["probabilities", "label", "confidence", "exit_position"];

/// The one version a runtime serves.
pub const VERSION: &str = "1";

/// Refuses a model or version this runtime does not serve. Empty is gRPC's "the server's
/// choice" (a REST path segment is never empty).
pub fn check_version(rt: &Runtime, name: &str, version: &str) -> Result<(), ApiError> {
    check_model(rt, name)?;
    if version.is_empty() || version == VERSION {
        Ok(())
    } else {
        Err(ApiError::UnknownVersion { model: name.to_string(), version: version.to_string() })
    }
}

/// Refuses a model name this runtime does not serve.
pub fn check_model(rt: &Runtime, name: &str) -> Result<(), ApiError> {
    if name == rt.bundle.manifest.name {
        Ok(())
    } else {
        Err(ApiError::UnknownModel(name.to_string()))
    }
}

/// An input tensor's header, as any encoding declares it.
#[derive(Debug, Clone, Copy)]
pub struct InputHeader<'a> {
    /// Must be `input`.
    pub name: &'a str,
    /// `[N, C, H, W]`.
    pub shape: &'a [i64],
    /// `UINT8` or `FP32`.
    pub datatype: &'a str,
}

/// An input's values as they came.
pub enum InputData<'a> {
    /// Raw little-endian bytes (REST binary extension, gRPC `raw_input_contents`).
    Raw(&'a [u8]),
    /// Numbers (REST JSON `data`).
    Numbers(&'a [f64]),
    /// gRPC `uint_contents` (UINT8).
    Uint(&'a [u32]),
    /// gRPC `fp32_contents` (FP32).
    Fp32(&'a [f32]),
}

/// Checks one input against the model and turns it into normalised NCHW floats and the image
/// count. `data` is called only once the header has passed (name, shape, datatype, count), so
/// that an encoding's own errors (both or no data) come after the same checks on every path.
pub fn decode<'a>(
    rt: &Runtime,
    input: InputHeader<'_>,
    data: impl FnOnce() -> Result<InputData<'a>, ApiError>,
) -> Result<(Vec<f32>, usize), ApiError> {
    let m = &rt.bundle.manifest;
    let [c, h, w] = m.input.shape;
    let bad = |s: String| Err(ApiError::BadRequest(s));
    if input.name != "input" {
        return bad(format!("unknown input {:?}; the model has one input named \"input\"", input.name));
    }
    let dims: Vec<usize> = input.shape.iter().map(|&d| usize::try_from(d).unwrap_or(usize::MAX)).collect();
    if dims.len() != 4 || dims[1..] != [c, h, w] || dims[0] == 0 || dims[0] > 1 << 16 {
        return bad(format!("input shape {:?} does not match [N, {c}, {h}, {w}] with N ≥ 1", input.shape));
    }
    // Before the data, whose length means nothing in another datatype (BYTES elements, for one,
    // are length-prefixed strings, not pixels).
    if !ACCEPTED_DATATYPES.contains(&input.datatype) {
        return bad(format!(
            "{} is not supported for input {:?}; send UINT8 (pixels 0-255) or FP32 (pixels scaled to [0, 1])",
            input.datatype, input.name
        ));
    }
    let n = dims[0];
    let per = c * h * w;
    // Never more images than the queue could ever take: refused before anything is allocated.
    let limit = rt.queue.limit();
    if n > limit {
        return Err(ApiError::TooLarge(format!(
            "{n} images in one request, more than the queue limit {limit}"
        )));
    }
    let mut buf = Vec::new();
    // What the values sent can hold, not what the shape declares: a declared shape reserved up
    // front once took 79 GB for a 224×224 model (and aborted the process).
    let raw: &[f64] = match data()? {
        InputData::Raw(bytes) => {
            let width = if input.datatype == "FP32" { 4 } else { 1 };
            buf.reserve((n * per).min(bytes.len() / width));
            binary::decode(input.datatype, bytes, &mut buf)?;
            &buf
        }
        InputData::Numbers(v) => v,
        InputData::Uint(v) => {
            buf.extend(v.iter().map(|&x| f64::from(x)));
            &buf
        }
        InputData::Fp32(v) => {
            buf.extend(v.iter().map(|&x| f64::from(x)));
            &buf
        }
    };
    if raw.len() != n * per {
        return bad(format!(
            "input data has {} values; shape {:?} needs {}",
            raw.len(),
            input.shape,
            n * per
        ));
    }
    Ok((normalise(&m.input, input.datatype, raw)?, n))
}

/// Refuses an output name the model does not have.
pub fn check_output(name: &str) -> Result<(), ApiError> {
    if OUTPUTS.contains(&name) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!("unknown output {name:?}; outputs are {OUTPUTS:?}")))
    }
}

/// One output of an answered batch of `n` images, by name (one of [`OUTPUTS`]).
pub fn output(rt: &Runtime, out: &JobOutput, name: &str) -> binary::Tensor {
    let (n, r) = (out.results.len(), &out.results);
    let classes = rt.bundle.manifest.backbone.num_classes();
    match name {
        "probabilities" => {
            binary::Tensor::F32(vec![n, classes], r.iter().flat_map(|r| r.probs.iter().copied()).collect())
        }
        "label" => binary::Tensor::I64(vec![n], r.iter().map(|r| r.label as i64).collect()),
        "confidence" => binary::Tensor::F32(vec![n], r.iter().map(|r| r.confidence).collect()),
        _ => binary::Tensor::I32(vec![n], r.iter().map(|r| r.exit.map_or(-1, |p| p as i32)).collect()),
    }
}

/// The model's input and outputs, as the model metadata of either protocol lists them.
pub fn tensors(rt: &Runtime) -> (Vec<TensorMetadata>, Vec<TensorMetadata>) {
    let m = &rt.bundle.manifest;
    let [c, h, w] = m.input.shape.map(|d| d as i64);
    let classes = m.backbone.num_classes() as i64;
    let tensor = |name, datatype, shape| TensorMetadata { name, datatype, shape };
    (
        vec![tensor("input", "UINT8", vec![-1, c, h, w])],
        vec![
            tensor("probabilities", "FP32", vec![-1, classes]),
            tensor("label", "INT64", vec![-1]),
            tensor("confidence", "FP32", vec![-1]),
            tensor("exit_position", "INT32", vec![-1]),
        ],
    )
}
