//! KServe Open Inference Protocol v2 (REST) on the data port.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::binary;
use super::error::ApiError;
use super::Runtime;

/// Parameters of inputs, outputs and requests (the binary tensor data extension's).
#[derive(Debug, Default, Deserialize)]
struct TensorParams {
    /// Bytes of this input's data that follow the JSON header.
    #[serde(default)]
    binary_data_size: Option<usize>,
    /// Return this output as binary data.
    #[serde(default)]
    binary_data: Option<bool>,
    /// Return every output as binary data (request level).
    #[serde(default)]
    binary_data_output: Option<bool>,
}

/// One input tensor of an infer request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InferInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: TensorParams,
    #[serde(default)]
    data: Option<Value>,
}

/// A requested output.
#[derive(Debug, Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: TensorParams,
}

/// `POST /v2/models/{name}/infer` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: TensorParams,
    inputs: Vec<InferInput>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

/// Output names, in the order they are returned.
pub const OUTPUTS: [&str; 4] = ["probabilities", "label", "confidence", "exit_position"];

fn check_model(rt: &Runtime, name: &str) -> Result<(), ApiError> {
    if name == rt.bundle.manifest.name {
        Ok(())
    } else {
        Err(ApiError::UnknownModel(name.to_string()))
    }
}

/// `GET /v2`.
pub async fn server_meta() -> Json<Value> {
    Json(json!({"name": "dyce", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]}))
}

/// `GET /v2/health/live`: up as soon as the process serves HTTP.
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// `GET /v2/health/ready`: only after the model is loaded and warmed up.
pub async fn ready(State(rt): State<Arc<Runtime>>) -> StatusCode {
    if rt.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// `GET /v2/models/{name}/ready`.
pub async fn model_ready(
    State(rt): State<Arc<Runtime>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_model(&rt, &name)?;
    Ok(if rt.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE })
}

/// `GET /v2/models/{name}`: what a generic v2 client needs to build a request.
pub async fn model_meta(
    State(rt): State<Arc<Runtime>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_model(&rt, &name)?;
    let m = &rt.bundle.manifest;
    let [c, h, w] = m.input.shape;
    let classes = m.backbone.num_classes;
    Ok(Json(json!({
        "name": m.name,
        "versions": ["1"],
        "platform": "dyce",
        "inputs": [{"name": "input", "datatype": "UINT8", "shape": [-1, c, h, w]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "confidence", "datatype": "FP32", "shape": [-1]},
            {"name": "exit_position", "datatype": "INT32", "shape": [-1]},
        ],
        "parameters": {
            "accepted_datatypes": ["UINT8 (pixels 0-255)", "FP32 (pixels scaled to [0, 1])"],
            "labels": m.input.labels,
            "normalization": {"mean": m.input.mean, "std": m.input.std, "applied_by": "server"},
            "exit_position": "-1 means the original head",
        }
    })))
}

fn flatten(v: &Value, out: &mut Vec<f64>) -> Result<(), ApiError> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| flatten(i, out)),
        Value::Number(n) => {
            out.push(
                n.as_f64()
                    .ok_or_else(|| ApiError::BadRequest("data holds a number that is not finite".into()))?,
            );
            Ok(())
        }
        other => Err(ApiError::BadRequest(format!("data must hold numbers, found {}", kind(other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::String(_) => "a string",
        Value::Object(_) => "an object",
        _ => "a number or array",
    }
}

/// Checks one input against the model and turns it into normalised NCHW floats; `binary` is
/// the input's data when it came after the JSON header (binary tensor data extension).
fn decode(rt: &Runtime, input: &InferInput, binary: Option<&[u8]>) -> Result<(Vec<f32>, usize), ApiError> {
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
    let n = dims[0];
    let per = c * h * w;
    let mut raw = Vec::with_capacity(n * per);
    match (binary, &input.data) {
        (Some(bytes), None) => binary::decode(&input.datatype, bytes, &mut raw)?,
        (None, Some(data)) => flatten(data, &mut raw)?,
        (Some(_), Some(_)) => return bad("input has both JSON data and binary_data_size".into()),
        (None, None) => return bad("input has no data".into()),
    }
    if raw.len() != n * per {
        return bad(format!(
            "input data has {} values; shape {:?} needs {}",
            raw.len(),
            input.shape,
            n * per
        ));
    }
    let scale = match input.datatype.as_str() {
        "UINT8" => {
            if let Some(v) = raw.iter().find(|v| !(0.0..=255.0).contains(*v) || v.fract() != 0.0) {
                return bad(format!("UINT8 data must be integers 0-255, found {v}"));
            }
            1.0 / 255.0
        }
        "FP32" => {
            if let Some(v) = raw.iter().find(|v| !(v.is_finite() && (0.0..=1.0).contains(*v))) {
                return bad(format!("FP32 data must be pixels scaled to [0, 1], found {v}"));
            }
            1.0
        }
        other => {
            return bad(format!("datatype {other:?} is not accepted; send UINT8 (0-255) or FP32 ([0, 1])"))
        }
    };
    let mut out = Vec::with_capacity(raw.len());
    for (i, v) in raw.iter().enumerate() {
        let ch = (i / (h * w)) % c;
        out.push(((*v * scale) as f32 - m.input.mean[ch]) / m.input.std[ch]);
    }
    Ok((out, n))
}

/// `POST /v2/models/{name}/infer`.
pub async fn infer(
    State(rt): State<Arc<Runtime>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let body = read_body(body, rt.max_body_bytes).await;
    let result = infer_inner(&rt, &name, &headers, body).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(ApiError::Overloaded(_)) => "shed",
        Err(e) if e.status().is_client_error() => "bad_request",
        Err(_) => "error",
    };
    rt.metrics.requests.get_or_create(&super::metrics::OutcomeLabel { outcome }).inc();
    if let Ok((_, n)) = &result {
        let secs = start.elapsed().as_secs_f64();
        rt.metrics.request_duration.observe(secs);
        rt.load.completed(*n, secs);
    }
    result.map(|(r, _)| r)
}

/// Bodies up to this size are read to the end even when over the limit, so that the client,
/// still sending, gets the 413 instead of a reset connection; larger ones are cut off.
const DRAIN_LIMIT: usize = 128 << 20;

/// Reads at most `limit` bytes; over that, discards the rest (up to `DRAIN_LIMIT`) and fails.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let (mut buf, mut seen) = (Vec::new(), 0usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        seen += chunk.len();
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        } else if seen > DRAIN_LIMIT {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::TooLarge(format!(
            "request body of {seen}+ bytes is over the limit of {limit} bytes"
        )));
    }
    Ok(Bytes::from(buf))
}

async fn infer_inner(
    rt: &Runtime,
    name: &str,
    headers: &HeaderMap,
    body: Result<Bytes, ApiError>,
) -> Result<(Response, usize), ApiError> {
    check_model(rt, name)?;
    let body = body?;
    if body.is_empty() {
        return Err(ApiError::BadRequest("empty body; send an OIP v2 infer request (JSON)".into()));
    }
    let (header, mut tail) = binary::split(headers, &body)?;
    let req: InferRequest = serde_json::from_slice(header)
        .map_err(|e| ApiError::BadRequest(format!("invalid infer request: {e}")))?;
    if req.inputs.len() != 1 {
        return Err(ApiError::BadRequest(format!("expected exactly one input, got {}", req.inputs.len())));
    }
    let all_binary = req.parameters.binary_data_output.unwrap_or(false);
    let wanted: Vec<(&str, bool)> = match &req.outputs {
        Some(o) if !o.is_empty() => {
            for out in o {
                if !OUTPUTS.contains(&out.name.as_str()) {
                    return Err(ApiError::BadRequest(format!(
                        "unknown output {:?}; outputs are {OUTPUTS:?}",
                        out.name
                    )));
                }
            }
            o.iter().map(|o| (o.name.as_str(), o.parameters.binary_data.unwrap_or(all_binary))).collect()
        }
        _ => OUTPUTS.iter().map(|&n| (n, all_binary)).collect(),
    };
    let input = &req.inputs[0];
    let bin = match input.parameters.binary_data_size {
        Some(size) => Some(binary::take(&mut tail, size)?),
        None => None,
    };
    if !tail.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "{} bytes of binary data are not claimed by any input",
            tail.len()
        )));
    }
    let (x, n) = decode(rt, input, bin)?;
    let admitted = rt.queue.submit(x, n);
    match &admitted {
        Ok(_) => rt.load.arrived(n),
        Err(crate::engine::queue::SubmitError::Overloaded { .. }) => rt.load.shed(n),
        Err(_) => {}
    }
    let out = admitted?
        .await
        .map_err(|_| ApiError::Unavailable("the model stopped".into()))?
        .map_err(ApiError::from)?;
    rt.metrics.queue_duration.observe(out.queue_seconds);
    let classes = rt.bundle.manifest.backbone.num_classes;
    let mut outputs = Vec::new();
    let mut blob = Vec::new();
    for (name, as_binary) in wanted {
        let r = &out.results;
        let tensor = match name {
            "probabilities" => binary::Tensor::F32(
                vec![n, classes],
                r.iter().flat_map(|r| r.probs.iter().copied()).collect(),
            ),
            "label" => binary::Tensor::I64(vec![n], r.iter().map(|r| r.label as i64).collect()),
            "confidence" => binary::Tensor::F32(vec![n], r.iter().map(|r| r.confidence).collect()),
            _ => binary::Tensor::I32(vec![n], r.iter().map(|r| r.exit.map_or(-1, |p| p as i32)).collect()),
        };
        outputs.push(tensor.to_json(name, as_binary.then_some(&mut blob)));
    }
    let mut resp = json!({
        "model_name": rt.bundle.manifest.name,
        "model_version": "1",
        "outputs": outputs,
        "parameters": {"config_id": out.config_id, "config_generation": out.generation},
    });
    if let Some(id) = req.id {
        resp["id"] = Value::String(id);
    }
    Ok((binary::response(resp, blob), n))
}
