//! What every request of a port goes through, as tower layers, outermost first.
//!
//! Whole port ([`traced`]):
//! 1. `SetRequestId`: every request has an `x-request-id` (the client's, else a fresh UUID)
//!    before anything logs, so all that follows can name it.
//! 2. `Trace`: one span per request, carrying the id; on the outside, so the layers below and
//!    their refusals are inside it.
//! 3. `PropagateRequestId`: the id goes back in the response whoever answered (a handler, a
//!    layer's refusal, the router's 404), so a client can quote it.
//! 4. `CatchPanic`: a handler that panics gets a JSON 500 (and a log line) instead of a dropped
//!    connection; inside the id layers, so that answer carries the id too.
//! 5. JSON errors ([`json_errors`]): an error answer that is not JSON (the router's 404 and 405,
//!    an extractor's plain-text rejection) gets the `{"error": ...}` body every other error has,
//!    its status and headers (`Allow`, ...) kept.
//! 6. head limits: more than [`MAX_HEADERS`] headers or [`MAX_HEAD_BYTES`] of them get a JSON 431
//!    (hyper's parser allows more, so that this layer, not the parser's bare 431, answers).
//!
//! Every route of a port ([`body_deadline`]), inside those: the whole body must arrive within
//! `--body-timeout` of the head (408 after), so a slow body cannot hold a connection and its
//! handler; whatever reads the body (an extractor, the body limit below) meets the deadline.
//!
//! Inference routes ([`inference`]), inside those:
//! 7. request metrics: outcome and latency of every inference request; outside the three below,
//!    so their refusals (timeout, 413, 429) are counted too;
//! 8. timeout (`--request-timeout`, off by default): outside the body limit, so a slow body
//!    counts against it, and outside admission, so a request waiting in the queue does too;
//! 9. body limit: the body is read whole under `--max-body-bytes` (JSON 413 beyond it) before
//!    admission, so the refused client still sending reads its answer, not a reset connection;
//!    a gzip or deflate body is then decompressed under the same limit (413 beyond, 415 for
//!    another coding);
//! 10. admission: 429 at once when the queue is full, before the body is parsed: under overload
//!    the CPU goes to the model, not to parsing requests that will be refused anyway.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use dyce_api::ErrorBody;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;

use super::encoding::{self, Coding};
use super::error::{ApiError, BodyTimeout};
use crate::service::Runtime;

/// Header carrying a request's id, in both directions.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Bodies up to this size are read to the end even when over the limit, so that the client,
/// still sending, gets the 413 instead of a reset connection; larger ones are cut off.
const DRAIN_LIMIT: usize = 128 << 20;

/// Marks an inference answer with the images it carried, for the request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered(pub usize);

impl Answered {
    /// `response`, marked as the answer for `images` images.
    pub fn mark(images: usize, mut response: Response) -> Response {
        response.extensions_mut().insert(Answered(images));
        response
    }
}

/// Request ids, tracing, the id in the response, panics and non-JSON errors answered as JSON,
/// head limits: layers 1–6 above, on a whole port.
pub fn traced<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    // At debug level, like the layer's own request and response events: at the default level
    // a span per request would cost every request and show in nothing (handlers log rarely).
    let span = |req: &Request| {
        let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
        tracing::debug_span!("request", method = %req.method(), uri = %req.uri(), id)
    };
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(span)
                    // A 5xx is already an answer with a reason (shutting down, a failed batch):
                    // not worth an error line per request.
                    .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(from_fn(json_errors))
            .layer(from_fn(head_limits)),
    )
}

/// Most request headers answered by a handler; more get 431.
pub const MAX_HEADERS: usize = 100;

/// Most bytes of request target and headers (names, values and separators); more get 431.
pub const MAX_HEAD_BYTES: usize = 32 << 10;

/// Refuses heads over [`MAX_HEADERS`] or [`MAX_HEAD_BYTES`] with 431.
async fn head_limits(req: Request, next: Next) -> Result<Response, ApiError> {
    let headers = req.headers();
    let bytes = req.uri().to_string().len()
        + headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEAD_BYTES {
        return Err(ApiError::HeadTooLarge(format!(
            "request head of {} headers and {bytes} bytes is over the limits of {MAX_HEADERS} headers and {MAX_HEAD_BYTES} bytes",
            headers.len()
        )));
    }
    Ok(next.run(req).await)
}

/// The `--body-timeout` deadline on every route of `router`.
pub fn body_deadline<S: Clone + Send + Sync + 'static>(router: Router<S>, limit: Duration) -> Router<S> {
    router.layer(from_fn_with_state(limit, with_deadline))
}

async fn with_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let body = Body::new(TimedBody { inner: body, deadline: Box::pin(tokio::time::sleep(limit)), limit });
    next.run(Request::from_parts(parts, body)).await
}

/// A request body that fails once its deadline has passed.
struct TimedBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(this.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a request whose handler panicked.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "a request handler panicked");
    ApiError::Internal("the request handler panicked".into()).into_response()
}

/// Gives an error answer that is not JSON the body every error has, keeping status and headers.
async fn json_errors(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = next.run(req).await;
    let status = resp.status();
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Such bodies are a line of text from axum or tower-http; a larger one is not read.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let error = match status {
        StatusCode::NOT_FOUND => format!("no route for {method} {path}"),
        StatusCode::METHOD_NOT_ALLOWED => format!("method {method} is not allowed on {path}"),
        _ if !text.is_empty() => text,
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = serde_json::to_vec(&ErrorBody { error }).unwrap_or_default();
    Response::from_parts(parts, Body::from(body))
}

/// Layers 6–9 above, on the inference routes of `router`.
pub fn inference(router: OpenApiRouter<Arc<Runtime>>, rt: &Arc<Runtime>) -> OpenApiRouter<Arc<Runtime>> {
    router.route_layer(
        ServiceBuilder::new()
            .layer(from_fn_with_state(rt.clone(), request_metrics))
            .layer(from_fn_with_state(rt.clone(), timeout))
            .layer(from_fn_with_state(rt.clone(), body_limit))
            .layer(from_fn_with_state(rt.clone(), admission)),
    )
}

/// Counts a finished request by outcome and, when answered, its latency over its images.
async fn request_metrics(State(rt): State<Arc<Runtime>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let mut resp = next.run(req).await;
    let status = resp.status();
    let answered = resp.extensions_mut().remove::<Answered>().filter(|_| status.is_success());
    rt.record_request(outcome(status), answered.map(|a| a.0), start.elapsed().as_secs_f64());
    resp
}

/// The `outcome` label of an inference request answered with `status` (the gRPC port counts
/// by the HTTP status its error would have had, so both ports fill the same series).
pub fn outcome(status: StatusCode) -> &'static str {
    if status.is_success() {
        "ok"
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        "shed"
    } else if status.is_client_error() {
        "bad_request"
    } else {
        "error"
    }
}

/// Fails with 503 when the request takes longer than `--request-timeout` (dropping it drops its
/// queued job, which the model thread then skips).
async fn timeout(State(rt): State<Arc<Runtime>>, req: Request, next: Next) -> Result<Response, ApiError> {
    let Some(limit) = rt.request_timeout else { return Ok(next.run(req).await) };
    tokio::time::timeout(limit, next.run(req))
        .await
        .map_err(|_| ApiError::Unavailable(format!("no answer within the request timeout of {limit:?}")))
}

/// Reads the whole body under the limit before anything else looks at it, and decompresses a
/// gzip or deflate body under the same limit (`encoding.rs`), so handlers see plain bytes.
async fn body_limit(State(rt): State<Arc<Runtime>>, req: Request, next: Next) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let bytes = read_body(body, rt.max_body_bytes).await?;
    let coding = Coding::of(&parts.headers)?;
    let bytes = if coding == Coding::Identity {
        bytes
    } else {
        // Inflating up to the limit takes milliseconds of CPU: off the async workers.
        let limit = rt.max_body_bytes;
        let plain = tokio::task::spawn_blocking(move || encoding::decode(coding, &bytes, limit))
            .await
            .map_err(|e| ApiError::Internal(format!("decompressing the body: {e}")))??;
        parts.headers.remove(header::CONTENT_ENCODING);
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(plain.len()));
        plain
    };
    Ok(next.run(Request::from_parts(parts, Body::from(bytes))).await)
}

/// Refuses at once (429) when the queue has no room for even one image.
async fn admission(State(rt): State<Arc<Runtime>>, req: Request, next: Next) -> Result<Response, ApiError> {
    rt.admit()?;
    Ok(next.run(req).await)
}

/// Reads at most `limit` bytes; over that, discards the rest (up to `DRAIN_LIMIT`) and fails.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let (mut buf, mut seen) = (Vec::new(), 0usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match BodyTimeout::find(&e) {
            Some(t) => ApiError::RequestTimeout(t.to_string()),
            None => ApiError::BadRequest(format!("reading the body: {e}")),
        })?;
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
