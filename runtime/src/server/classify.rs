//! `POST /v1/classify` on the data port: a PNG or JPEG image in, the top-1 class out.
//!
//! The image is decoded, converted to the model's channels, resized to its input size and then
//! normalised by the same code as OIP inputs (`crate::input`), so an image gets exactly the
//! answer OIP infer gives for its pixels. It goes through the same layers (body limit,
//! admission, metrics) and the same entry point (`Runtime::infer`) as OIP infer.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dyce_api::ClassifyResponse;

use super::error::ApiError;
use super::layers::Answered;
use super::openapi::{BadRequest, Internal, Overloaded, TooLarge, Unavailable, UnsupportedEncoding};
use crate::input::{normalise, to_pixels};
use crate::service::Runtime;

/// `POST /v1/classify`: the top-1 class of one PNG or JPEG image.
#[utoipa::path(
    post,
    path = "/v1/classify",
    tag = "classify",
    request_body(
        description = "One PNG or JPEG image, recognised by its first bytes (Content-Type may be \
            absent or wrong). Converted to the model's channels (PIL's luma for grayscale models), \
            brought to its input size by the bundle's transform (by default an antialiased \
            bilinear resize to exactly that size; torchvision's resize and centre crop for bundles \
            made from image folders) and normalised like OIP inputs. At most `--max-body-bytes` \
            and 4096×4096 pixels.",
        content(("image/png"), ("image/jpeg"))
    ),
    responses(
        (status = 200, description = "The top-1 class.", body = ClassifyResponse),
        (status = 400, response = BadRequest),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedEncoding),
        (status = 429, response = Overloaded),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal)
    )
)]
pub async fn classify(State(rt): State<Arc<Runtime>>, body: Bytes) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (shape, transform) = (rt.bundle.manifest.input.shape, rt.bundle.manifest.input.transform);
    // One decode per permit: a small compressed image may decode to ~200 MiB (`input::image`),
    // and admission (queue room) does not bound decodes, which run before the queue; waiting
    // here costs only the body already read.
    let permit = rt
        .decode_permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::Unavailable("shutting down".into()))?;
    // Decoding and resizing take milliseconds of CPU: off the async workers, so they keep
    // serving other connections meanwhile. The permit goes with the work, so a request dropped
    // meanwhile (timeout, client gone) still holds it until its decode has ended.
    let pixels = tokio::task::spawn_blocking(move || {
        let pixels = to_pixels(&body, shape, &transform);
        drop(permit);
        pixels
    })
    .await
    .map_err(|e| ApiError::Internal(format!("image decoding task: {e}")))??;
    let raw: Vec<f64> = pixels.iter().map(|&p| f64::from(p)).collect();
    let x = normalise(&rt.bundle.manifest.input, "UINT8", &raw)?;
    // The decode stage includes the wait for a decode permit: time the request spent before it
    // could be queued.
    let decoded = started.elapsed().as_secs_f64();
    let out = rt.infer(x, 1, None).await?;
    let encoding = Instant::now();
    let r = out.results.first().ok_or_else(|| ApiError::Internal("the batch returned no result".into()))?;
    let label = rt.bundle.manifest.input.labels.get(r.label).cloned().unwrap_or_else(|| r.label.to_string());
    let answer = ClassifyResponse {
        label,
        class: r.label,
        confidence: r.confidence,
        exit: r.exit.map_or(-1, |p| p as i32),
        config: out.config_id,
        generation: out.generation,
        answer_id: out.answer_id,
    };
    let resp = Json(answer).into_response();
    rt.record_decode(decoded);
    rt.record_encode(encoding.elapsed().as_secs_f64());
    Ok(Answered::mark(1, resp))
}
