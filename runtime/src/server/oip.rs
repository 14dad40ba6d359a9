//! KServe Open Inference Protocol v2 (REST) on the data port.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;

use super::binary;
use super::error::ApiError;
use super::layers::Answered;
use super::oip_types::*;
use super::openapi::{
    BadRequest, Internal, NotFound, Overloaded, TooLarge, Unavailable, UnsupportedEncoding,
};
use super::tensor::{self, InputData, InputHeader};
pub use super::tensor::{check_model, check_version, OUTPUTS, VERSION};
use crate::service::Runtime;

/// `GET /v2`: server metadata.
#[utoipa::path(
    get,
    path = "/v2",
    tag = "oip",
    responses((status = 200, description = "Name, version, extensions.", body = ServerMetadata))
)]
pub async fn server_meta() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "dyce",
        version: env!("CARGO_PKG_VERSION"),
        extensions: vec!["binary_tensor_data", "model_repository", "model_configuration", "statistics"],
    })
}

/// `POST /v2/repository/index`: the served model, so that a client can find its name (OIP's
/// server metadata has no model list). The index part of Triton's model repository extension;
/// loading and unloading are not offered (a runtime serves one bundle).
#[utoipa::path(
    post,
    path = "/v2/repository/index",
    tag = "oip",
    request_body(content = Option<RepositoryIndexRequest>, description = "Optional; `{\"ready\": true}` \
        lists only models ready for inference.", content_type = "application/json"),
    responses(
        (status = 200, description = "The models.", body = Vec<RepositoryModel>),
        (status = 400, response = BadRequest),
        (status = 413, response = TooLarge)
    )
)]
pub async fn repository_index(
    State(rt): State<Arc<Runtime>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Vec<RepositoryModel>>, ApiError> {
    let body = body?;
    let req: RepositoryIndexRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RepositoryIndexRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid repository index request: {e}")))?
    };
    let ready = rt.is_ready();
    if req.ready && !ready {
        return Ok(Json(vec![]));
    }
    Ok(Json(vec![RepositoryModel {
        name: rt.bundle.manifest.name.clone(),
        version: tensor::VERSION,
        state: if ready { "READY" } else { "LOADING" },
        reason: if ready { String::new() } else { "warming up".into() },
    }]))
}

/// `GET /v2/health/live`: up as soon as the process serves HTTP.
#[utoipa::path(
    get,
    path = "/v2/health/live",
    tag = "oip",
    responses((status = 200, description = "The process serves HTTP (no body)."))
)]
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// 503 with the reason when the runtime is not ready.
pub fn readiness(rt: &Runtime) -> Result<StatusCode, ApiError> {
    if rt.is_ready() {
        Ok(StatusCode::OK)
    } else if rt.is_draining() {
        Err(ApiError::Unavailable(
            "not ready: shutting down (requests are still answered until the ports close)".into(),
        ))
    } else if !rt.queue.is_running() {
        Err(ApiError::Unavailable(
            "not ready: the model thread has stopped and the process is exiting".into(),
        ))
    } else {
        Err(ApiError::Unavailable("not ready: warming up".into()))
    }
}

/// `GET /v2/health/ready`: only after the model is loaded and warmed up, and while it runs.
#[utoipa::path(
    get,
    path = "/v2/health/ready",
    tag = "oip",
    responses(
        (status = 200, description = "Loaded, warmed up at every batch size and running (no body)."),
        (status = 503, response = Unavailable)
    )
)]
pub async fn ready(State(rt): State<Arc<Runtime>>) -> Result<StatusCode, ApiError> {
    readiness(&rt)
}

/// `GET /v2/models/{name}/ready`: whether the model is loaded, warmed up and running.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/ready",
    tag = "oip",
    params(("name" = String, Path, description = "The served model's name.")),
    responses(
        (status = 200, description = "Ready (no body)."),
        (status = 503, response = Unavailable),
        (status = 404, response = NotFound)
    )
)]
pub async fn model_ready(
    State(rt): State<Arc<Runtime>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_model(&rt, &name)?;
    readiness(&rt)
}

/// `GET /v2/models/{name}`: what a generic v2 client needs to build a request.
#[utoipa::path(
    get,
    path = "/v2/models/{name}",
    tag = "oip",
    params(("name" = String, Path, description = "The served model's name.")),
    responses(
        (status = 200, description = "Input, outputs, labels, normalisation.", body = ModelMetadata),
        (status = 404, response = NotFound)
    )
)]
pub async fn model_meta(
    State(rt): State<Arc<Runtime>>,
    Path(name): Path<String>,
) -> Result<Json<ModelMetadata>, ApiError> {
    check_model(&rt, &name)?;
    Ok(Json(metadata(&rt)))
}

/// The served model's metadata.
pub fn metadata(rt: &Runtime) -> ModelMetadata {
    let m = &rt.bundle.manifest;
    let (inputs, outputs) = tensor::tensors(rt);
    ModelMetadata {
        name: m.name.clone(),
        versions: vec![tensor::VERSION],
        platform: "dyce",
        inputs,
        outputs,
        parameters: ModelParameters {
            accepted_datatypes: vec!["UINT8 (pixels 0-255)", "FP32 (pixels scaled to [0, 1])"],
            labels: m.input.labels.clone(),
            normalization: Normalization {
                mean: m.input.mean.clone(),
                std: m.input.std.clone(),
                applied_by: "server",
            },
            exit_position: "-1 means the original head",
        },
    }
}

/// `POST /v2/models/{name}/infer`: classifies a batch of images on the active configuration.
#[utoipa::path(
    post,
    path = "/v2/models/{name}/infer",
    tag = "oip",
    params(
        ("name" = String, Path, description = "The served model's name."),
        ("Inference-Header-Content-Length" = Option<usize>, Header,
            description = "Binary tensor data extension: bytes of JSON before the binary tail.")
    ),
    request_body(
        description = "An infer request; with the binary tensor data extension, the JSON header \
            (`Inference-Header-Content-Length` bytes) followed by raw little-endian input data.",
        content(
            (InferRequest = "application/json"),
            (InferRequest = "application/octet-stream")
        )
    ),
    responses(
        (status = 200, description = "The outputs; JSON header plus binary tail (with the \
            `Inference-Header-Content-Length` header) when any output was asked for as binary.",
            headers(("Inference-Header-Content-Length" = usize,
                description = "Bytes of JSON before the binary tail (binary outputs only).")),
            content((InferResponse = "application/json"), (InferResponse = "application/octet-stream"))),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedEncoding),
        (status = 429, response = Overloaded),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal)
    )
)]
pub async fn infer(
    State(rt): State<Arc<Runtime>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_model(&rt, &name)?;
    run_infer(&rt, &headers, &body).await
}

/// An infer request for the served model: parse, decode, run, answer (any route or version).
pub async fn run_infer(rt: &Runtime, headers: &HeaderMap, body: &Bytes) -> Result<Response, ApiError> {
    let started = Instant::now();
    if body.is_empty() {
        return Err(ApiError::BadRequest("empty body; send an OIP v2 infer request (JSON)".into()));
    }
    let (header, mut tail) = binary::split(headers, body)?;
    let req: InferRequest = serde_json::from_slice(header)
        .map_err(|e| ApiError::BadRequest(format!("invalid infer request: {e}")))?;
    if req.inputs.len() != 1 {
        return Err(ApiError::BadRequest(format!("expected exactly one input, got {}", req.inputs.len())));
    }
    let all_binary = req.parameters.binary_data_output.unwrap_or(false);
    let wanted: Vec<(&str, bool)> = match &req.outputs {
        Some(o) if !o.is_empty() => {
            for out in o {
                tensor::check_output(&out.name)?;
            }
            o.iter().map(|o| (o.name.as_str(), o.parameters.binary_data.unwrap_or(all_binary))).collect()
        }
        _ => tensor::OUTPUTS.iter().map(|&n| (n, all_binary)).collect(),
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
    let header = InputHeader { name: &input.name, shape: &input.shape, datatype: &input.datatype };
    let (x, n) = tensor::decode(rt, header, || match (bin, &input.data) {
        (Some(bytes), None) => Ok(InputData::Raw(bytes)),
        (None, Some(data)) => Ok(InputData::Numbers(&data.0)),
        (Some(_), Some(_)) => {
            Err(ApiError::BadRequest("input has both JSON data and binary_data_size".into()))
        }
        (None, None) => Err(ApiError::BadRequest("input has no data".into())),
    })?;
    let decoded = started.elapsed().as_secs_f64();
    let out = rt.infer(x, n, req.id.as_deref()).await?;
    let encoding = Instant::now();
    let mut outputs = Vec::new();
    let mut blob = Vec::new();
    for (name, as_binary) in wanted {
        outputs.push(tensor::output(rt, &out, name).to_output(name, as_binary.then_some(&mut blob)));
    }
    let resp = InferResponse {
        id: req.id,
        model_name: rt.bundle.manifest.name.clone(),
        model_version: VERSION,
        outputs,
        parameters: InferParams {
            config_id: out.config_id,
            config_generation: out.generation,
            answer_id: out.answer_id,
        },
    };
    let resp = binary::response(&resp, blob);
    rt.record_decode(decoded);
    rt.record_encode(encoding.elapsed().as_secs_f64());
    Ok(Answered::mark(n, resp))
}
