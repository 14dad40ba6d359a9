//! `POST /v1/feedback` on the data port: true labels for answered images, quoted by the id each
//! answer carries. On the data port, not the admin port, because the application that asked is
//! the one that later learns the truth, and it holds no admin token. Feedback can only move the
//! controller towards richer configurations (a worse live accuracy excludes cheap ones), never
//! make it serve a cheaper one than the offline table allows, so an unauthenticated caller can
//! at worst cost compute, not accuracy; `--feedback-capacity 0` turns it off.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use dyce_api::{FeedbackRequest, FeedbackResponse};

use super::error::ApiError;
use super::openapi::{AlreadyLabelled, BadRequest, NotFound, TooLarge};
use crate::service::feedback::FeedbackError;
use crate::service::Runtime;

/// `POST /v1/feedback`: true labels for answered images, all counted or none.
#[utoipa::path(
    post,
    path = "/v1/feedback",
    tag = "feedback",
    request_body(
        description = "One `{\"id\", \"label\", \"index\"?}` or a list of them. `id` is the answer's \
            `answer_id` (`/v1/classify`), `parameters.answer_id` (OIP REST and gRPC; the request's \
            own `id` when it had one); `index` picks the image of a batched request (default 0); \
            `label` is the class index or its name. A bad item refuses the whole request.",
        content((FeedbackRequest = "application/json"))
    ),
    responses(
        (status = 200, description = "Counted.", body = FeedbackResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = AlreadyLabelled),
        (status = 413, response = TooLarge)
    )
)]
pub async fn feedback(
    State(rt): State<Arc<Runtime>>,
    body: Bytes,
) -> Result<Json<FeedbackResponse>, ApiError> {
    let off = || ApiError::NotFound("feedback is off on this runtime (--feedback-capacity 0)".into());
    let live = rt.live.as_ref().filter(|l| l.takes_feedback()).ok_or_else(off)?;
    let req = parse(&body)?;
    let answer = live.feedback(req.items(), &rt.metrics.shadow).map_err(|e| match e {
        FeedbackError::Invalid(m) => ApiError::BadRequest(m),
        FeedbackError::UnknownId(m) => ApiError::NotFound(m),
        FeedbackError::Conflict(m) => ApiError::Conflict(m),
    })?;
    answer.map(Json).ok_or_else(off)
}

/// The body, read as an item or a list of items with serde's own reason on failure (an
/// untagged enum would only say that no variant matched).
fn parse(body: &[u8]) -> Result<FeedbackRequest, ApiError> {
    let hint = "send {\"id\": \"<answer id>\", \"label\": <class index or name>} or a list of them";
    let bad = |e: serde_json::Error| ApiError::BadRequest(format!("invalid feedback: {e}; {hint}"));
    let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => serde_json::from_slice(body).map(FeedbackRequest::Many).map_err(bad),
        Some(b'{') => serde_json::from_slice(body).map(FeedbackRequest::One).map_err(bad),
        _ => Err(ApiError::BadRequest(format!("invalid feedback: expected a JSON object or list; {hint}"))),
    }
}
