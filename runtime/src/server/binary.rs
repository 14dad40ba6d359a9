//! The binary tensor data extension of OIP v2 (what Triton's clients send by default): a JSON
//! header of `Inference-Header-Content-Length` bytes, then raw little-endian tensor data.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::error::ApiError;
use super::oip_types::{InferOutput, OutputParams};

/// Header naming the JSON part's length.
pub const HEADER: &str = "inference-header-content-length";

/// Splits a body into its JSON header and the binary tail (empty without the header).
pub fn split<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    let Some(v) = headers.get(HEADER) else { return Ok((body, &[])) };
    let n: usize = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| ApiError::BadRequest(format!("{HEADER} must be a byte count")))?;
    if n > body.len() {
        return Err(ApiError::BadRequest(format!("{HEADER} is {n} but the body has {} bytes", body.len())));
    }
    Ok(body.split_at(n))
}

/// Takes the next `size` bytes of the binary tail.
pub fn take<'a>(tail: &mut &'a [u8], size: usize) -> Result<&'a [u8], ApiError> {
    if size > tail.len() {
        return Err(ApiError::BadRequest(format!(
            "binary_data_size {size} exceeds the {} bytes sent",
            tail.len()
        )));
    }
    let (head, rest) = tail.split_at(size);
    *tail = rest;
    Ok(head)
}

/// Raw input bytes of an accepted datatype as values.
pub fn decode(datatype: &str, bytes: &[u8], out: &mut Vec<f64>) -> Result<(), ApiError> {
    match datatype {
        "UINT8" => out.extend(bytes.iter().map(|&b| b as f64)),
        "FP32" => {
            if !bytes.len().is_multiple_of(4) {
                return Err(ApiError::BadRequest(format!(
                    "{} bytes of FP32 data is not a whole number of values",
                    bytes.len()
                )));
            }
            out.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64));
        }
        // Range and datatype checks follow in the caller, with the same messages as JSON data.
        _ => {}
    }
    Ok(())
}

/// An output tensor.
pub enum Tensor {
    /// FP32 values.
    F32(Vec<usize>, Vec<f32>),
    /// INT64 values.
    I64(Vec<usize>, Vec<i64>),
    /// INT32 values.
    I32(Vec<usize>, Vec<i32>),
}

impl Tensor {
    /// The datatype's OIP name.
    pub fn datatype(&self) -> &'static str {
        match self {
            Tensor::F32(..) => "FP32",
            Tensor::I64(..) => "INT64",
            Tensor::I32(..) => "INT32",
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(s, _) | Tensor::I64(s, _) | Tensor::I32(s, _) => s,
        }
    }

    /// The values as raw little-endian bytes, row-major.
    pub fn le_bytes(&self) -> Vec<u8> {
        match self {
            Tensor::F32(_, v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Tensor::I64(_, v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Tensor::I32(_, v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// The output as sent; with `blob`, its data is appended there in binary instead.
    pub fn to_output(&self, name: &str, blob: Option<&mut Vec<u8>>) -> InferOutput {
        let (data, parameters) = match blob {
            Some(b) => {
                let bytes = self.le_bytes();
                b.extend_from_slice(&bytes);
                (None, Some(OutputParams { binary_data_size: bytes.len() }))
            }
            None => {
                let values = match self {
                    Tensor::F32(_, v) => json!(v),
                    Tensor::I64(_, v) => json!(v),
                    Tensor::I32(_, v) => json!(v),
                };
                (Some(values), None)
            }
        };
        InferOutput {
            name: name.to_string(),
            datatype: self.datatype(),
            shape: self.shape().to_vec(),
            data,
            parameters,
        }
    }
}

/// A JSON response, or JSON header + binary tail when any output went binary.
pub fn response(body: &impl Serialize, blob: Vec<u8>) -> Response {
    if blob.is_empty() {
        return Json(body).into_response();
    }
    let mut head = serde_json::to_vec(body).unwrap_or_default();
    let n = head.len();
    head.extend_from_slice(&blob);
    let mut resp = Response::new(Body::from(head));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(HEADER, HeaderValue::from(n));
    resp
}
