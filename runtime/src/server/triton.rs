//! The versioned OIP routes (`/v2/models/{name}/versions/{version}/...`) and Triton's
//! model-configuration and statistics extensions, which `tritonclient` (`is_model_ready(m, "1")`,
//! `get_model_config`, `get_inference_statistics`) and the tools built on it call. One version,
//! "1", is served; any other answers a JSON 404.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::oip::{check_model, check_version, metadata, readiness, run_infer, OUTPUTS};
use super::oip_types::{InferRequest, InferResponse, ModelMetadata};
use super::openapi::{
    BadRequest, Internal, NotFound, Overloaded, TooLarge, Unavailable, UnsupportedEncoding,
};
use crate::service::stats::ModelStat;
use crate::service::Runtime;

/// `GET /v2/models/{name}/versions/{version}`: the model metadata of version "1".
#[utoipa::path(
    get,
    path = "/v2/models/{name}/versions/{version}",
    tag = "oip",
    params(("name" = String, Path, description = "The served model's name."),
        ("version" = String, Path, description = "`1`, the one version served.")),
    responses(
        (status = 200, description = "As `GET /v2/models/{name}`.", body = ModelMetadata),
        (status = 404, response = NotFound)
    )
)]
pub async fn version_meta(
    State(rt): State<Arc<Runtime>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelMetadata>, ApiError> {
    check_version(&rt, &name, &version)?;
    Ok(Json(metadata(&rt)))
}

/// `GET /v2/models/{name}/versions/{version}/ready`.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/versions/{version}/ready",
    tag = "oip",
    params(("name" = String, Path, description = "The served model's name."),
        ("version" = String, Path, description = "`1`, the one version served.")),
    responses(
        (status = 200, description = "Ready (no body)."),
        (status = 503, response = Unavailable),
        (status = 404, response = NotFound)
    )
)]
pub async fn version_ready(
    State(rt): State<Arc<Runtime>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    check_version(&rt, &name, &version)?;
    readiness(&rt)
}

/// `POST /v2/models/{name}/versions/{version}/infer`: as `POST /v2/models/{name}/infer`.
#[utoipa::path(
    post,
    path = "/v2/models/{name}/versions/{version}/infer",
    tag = "oip",
    params(("name" = String, Path, description = "The served model's name."),
        ("version" = String, Path, description = "`1`, the one version served.")),
    request_body(description = "As `POST /v2/models/{name}/infer`.",
        content((InferRequest = "application/json"), (InferRequest = "application/octet-stream"))),
    responses(
        (status = 200, description = "As `POST /v2/models/{name}/infer`.",
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
pub async fn version_infer(
    State(rt): State<Arc<Runtime>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_version(&rt, &name, &version)?;
    run_infer(&rt, &headers, &body).await
}

/// A tensor of the model configuration (Triton's `ModelInput`/`ModelOutput` in JSON).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigTensor {
    /// Tensor name.
    pub name: &'static str,
    /// Triton's type name (`TYPE_UINT8`, `TYPE_FP32`, ...).
    pub data_type: &'static str,
    /// Shape of one sample (the batch dimension is implicit: `max_batch_size` > 0).
    pub dims: Vec<i64>,
    /// `FORMAT_NCHW` for the image input; absent for outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
}

/// `GET /v2/models/{name}/config`: Triton's model configuration, as far as it describes dyce.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelConfig {
    /// The served model.
    pub name: String,
    /// `dyce`.
    pub backend: &'static str,
    /// `--max-batch`: the most images the model thread batches together.
    pub max_batch_size: usize,
    /// The one input, `input` (UINT8 pixels; FP32 in [0, 1] is accepted too).
    pub input: Vec<ConfigTensor>,
    /// `probabilities`, `label`, `confidence`, `exit_position`.
    pub output: Vec<ConfigTensor>,
    /// Dynamic batching is always on: requests waiting while a batch runs form the next one;
    /// no request is held back to wait for others (a delay of 0).
    pub dynamic_batching: serde_json::Value,
    /// One version, `1`.
    pub version_policy: serde_json::Value,
}

/// `GET /v2/models/{name}/config` (Triton's model configuration extension).
#[utoipa::path(
    get,
    path = "/v2/models/{name}/config",
    tag = "oip",
    params(("name" = String, Path, description = "The served model's name.")),
    responses(
        (status = 200, description = "The model configuration.", body = ModelConfig),
        (status = 404, response = NotFound)
    )
)]
pub async fn model_config(
    State(rt): State<Arc<Runtime>>,
    Path(name): Path<String>,
) -> Result<Json<ModelConfig>, ApiError> {
    check_model(&rt, &name)?;
    Ok(Json(config(&rt)))
}

/// `GET /v2/models/{name}/versions/{version}/config`.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/versions/{version}/config",
    tag = "oip",
    params(("name" = String, Path, description = "The served model's name."),
        ("version" = String, Path, description = "`1`, the one version served.")),
    responses(
        (status = 200, description = "The model configuration.", body = ModelConfig),
        (status = 404, response = NotFound)
    )
)]
pub async fn version_config(
    State(rt): State<Arc<Runtime>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelConfig>, ApiError> {
    check_version(&rt, &name, &version)?;
    Ok(Json(config(&rt)))
}

fn config(rt: &Runtime) -> ModelConfig {
    let m = &rt.bundle.manifest;
    let [c, h, w] = m.input.shape.map(|d| d as i64);
    let classes = m.backbone.num_classes() as i64;
    let tensor = |name, data_type, dims| ConfigTensor { name, data_type, dims, format: None };
    let output = OUTPUTS
        .iter()
        .map(|&name| match name {
            "probabilities" => tensor(name, "TYPE_FP32", vec![classes]),
            "label" => tensor(name, "TYPE_INT64", vec![1]),
            "confidence" => tensor(name, "TYPE_FP32", vec![1]),
            _ => tensor(name, "TYPE_INT32", vec![1]),
        })
        .collect();
    ModelConfig {
        name: m.name.clone(),
        backend: "dyce",
        max_batch_size: rt.queue.max_batch(),
        input: vec![ConfigTensor {
            name: "input",
            data_type: "TYPE_UINT8",
            dims: vec![c, h, w],
            format: Some("FORMAT_NCHW"),
        }],
        output,
        dynamic_batching: serde_json::json!({"max_queue_delay_microseconds": 0}),
        version_policy: serde_json::json!({"specific": {"versions": [1]}}),
    }
}

/// `{"model_stats": [...]}`: Triton's statistics answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse {
    /// One entry: the served model, version 1.
    pub model_stats: Vec<ModelStat>,
}

fn stats(rt: &Runtime) -> Json<StatsResponse> {
    Json(StatsResponse { model_stats: vec![rt.stats.snapshot(&rt.bundle.manifest.name)] })
}

/// `GET /v2/models/stats`: statistics of every model (the one served).
#[utoipa::path(
    get,
    path = "/v2/models/stats",
    tag = "oip",
    responses((status = 200, description = "Counts and cumulative times since start.", body = StatsResponse))
)]
pub async fn all_stats(State(rt): State<Arc<Runtime>>) -> Json<StatsResponse> {
    stats(&rt)
}

/// `GET /v2/models/{name}/stats` (Triton's statistics extension).
#[utoipa::path(
    get,
    path = "/v2/models/{name}/stats",
    tag = "oip",
    params(("name" = String, Path, description = "The served model's name.")),
    responses(
        (status = 200, description = "Counts and cumulative times since start.", body = StatsResponse),
        (status = 404, response = NotFound)
    )
)]
pub async fn model_stats(
    State(rt): State<Arc<Runtime>>,
    Path(name): Path<String>,
) -> Result<Json<StatsResponse>, ApiError> {
    check_model(&rt, &name)?;
    Ok(stats(&rt))
}

/// `GET /v2/models/{name}/versions/{version}/stats`.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/versions/{version}/stats",
    tag = "oip",
    params(("name" = String, Path, description = "The served model's name."),
        ("version" = String, Path, description = "`1`, the one version served.")),
    responses(
        (status = 200, description = "Counts and cumulative times since start.", body = StatsResponse),
        (status = 404, response = NotFound)
    )
)]
pub async fn version_stats(
    State(rt): State<Arc<Runtime>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<StatsResponse>, ApiError> {
    check_version(&rt, &name, &version)?;
    Ok(stats(&rt))
}
