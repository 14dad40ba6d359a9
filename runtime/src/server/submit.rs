//! What every inference route of the data port shares: reading the body under the size limit,
//! admission to the model queue, and the request metrics. OIP infer and `/v1/classify` both go
//! through here, so they are admitted, refused and counted the same way.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::response::Response;

use super::error::ApiError;
use super::metrics::OutcomeLabel;
use super::Runtime;
use crate::engine::queue::{JobOutput, SubmitError};

/// Bodies up to this size are read to the end even when over the limit, so that the client,
/// still sending, gets the 413 instead of a reset connection; larger ones are cut off.
const DRAIN_LIMIT: usize = 128 << 20;

/// Reads at most `limit` bytes; over that, discards the rest (up to `DRAIN_LIMIT`) and fails.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
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

/// Refuses at once (429) when the queue has no room for even one image, before the request is
/// parsed: under overload, parsing bodies only to refuse them would eat the CPU the model needs.
/// The load window counts such a refusal as one shed image (the count is not known unparsed).
pub fn refuse_if_full(rt: &Runtime) -> Result<(), ApiError> {
    rt.queue.check_room().inspect_err(|_| rt.load.shed(1)).map_err(ApiError::from)
}

/// Admits `n` normalised images (429 at once when the queue is full) and waits for the batch
/// they ran in; counts arrivals and refusals in the load window.
pub async fn run(rt: &Runtime, x: Vec<f32>, n: usize) -> Result<JobOutput, ApiError> {
    let admitted = rt.queue.submit(x, n);
    match &admitted {
        Ok(_) => rt.load.arrived(n),
        Err(SubmitError::Overloaded { .. }) => rt.load.shed(n),
        Err(_) => {}
    }
    let out = admitted?
        .await
        .map_err(|_| ApiError::Unavailable("the model stopped".into()))?
        .map_err(ApiError::from)?;
    rt.metrics.queue_duration.observe(out.queue_seconds);
    Ok(out)
}

/// Counts a finished request by outcome and, when answered, its latency over its `n` images.
pub fn count(
    rt: &Runtime,
    start: Instant,
    result: Result<(Response, usize), ApiError>,
) -> Result<Response, ApiError> {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(ApiError::Overloaded(_)) => "shed",
        Err(e) if e.status().is_client_error() => "bad_request",
        Err(_) => "error",
    };
    rt.metrics.requests.get_or_create(&OutcomeLabel { outcome }).inc();
    if let Ok((_, n)) = &result {
        let secs = start.elapsed().as_secs_f64();
        rt.metrics.request_duration.observe(secs);
        rt.load.completed(*n, secs);
    }
    result.map(|(r, _)| r)
}
