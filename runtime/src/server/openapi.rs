//! The OpenAPI 3.1 documents of both ports, served at `GET /openapi.json` on each.
//!
//! Each port's router is built with `utoipa_axum` from handlers annotated with
//! `#[utoipa::path]`, so a route cannot be served without being documented (`routes.rs` builds
//! both and serves the documents); this module holds what the handlers share: document info and
//! reusable error responses (all with the `ErrorBody` schema, the one body every `ApiError`
//! answers with).

use dyce_api::ErrorBody;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi, ToResponse};

// The error responses below are shared by the handlers' `#[utoipa::path]` (by reference, so each
// appears once under `components/responses`). The wrappers exist for their `ToResponse` derive
// only and are never built: handlers answer with `ApiError`, whose body is `ErrorBody`.

/// Malformed body, wrong shape or datatype, values out of range, image not PNG/JPEG.
#[derive(ToResponse)]
#[response(description = "Malformed request: the reason is in `error`.")]
pub struct BadRequest(#[allow(dead_code)] ErrorBody);

/// Missing or wrong bearer token (admin port with `--admin-token-file`).
#[derive(ToResponse)]
#[response(
    description = "Missing or wrong bearer token.",
    headers(("WWW-Authenticate" = String, description = "`Bearer`"))
)]
pub struct Unauthorized(#[allow(dead_code)] ErrorBody);

/// A valid token without the right: the metrics token on anything but `GET /metrics`.
#[derive(ToResponse)]
#[response(description = "The metrics token (`--metrics-token-file`) only reads `/metrics`.")]
pub struct Forbidden(#[allow(dead_code)] ErrorBody);

/// A `Content-Encoding` other than gzip, deflate or identity.
#[derive(ToResponse)]
#[response(description = "Unsupported `Content-Encoding`: send gzip, deflate or none.")]
pub struct UnsupportedEncoding(#[allow(dead_code)] ErrorBody);

/// Unknown model name or config id.
#[derive(ToResponse)]
#[response(description = "Unknown model, version or config id.")]
pub struct NotFound(#[allow(dead_code)] ErrorBody);

/// A configuration write older than the active generation.
#[derive(ToResponse)]
#[response(description = "Stale generation: the active configuration is newer than this write.")]
pub struct Conflict(#[allow(dead_code)] ErrorBody);

/// Feedback for an image that already has its label.
#[derive(ToResponse)]
#[response(description = "The image already has its label (each counts once), or its answer is not out yet.")]
pub struct AlreadyLabelled(#[allow(dead_code)] ErrorBody);

/// Body over the port's limit, or a decoded image over the pixel limit.
#[derive(ToResponse)]
#[response(description = "Body over the limit (data port: `--max-body-bytes`, default 8 MiB; admin port: \
    64 KiB), or image over 4096×4096 pixels.")]
pub struct TooLarge(#[allow(dead_code)] ErrorBody);

/// The queue is full.
#[derive(ToResponse)]
#[response(
    description = "Queue full (more than `--max-queue` images admitted): refused at once, retry later.",
    headers(("Retry-After" = u32, description = "Seconds to wait: `1`."))
)]
pub struct Overloaded(#[allow(dead_code)] ErrorBody);

/// Not ready, shutting down, or too slow.
#[derive(ToResponse)]
#[response(
    description = "Not ready (warming up, or the model thread stopped and the process is exiting), \
        shutting down, or no answer within `--request-timeout`.",
    headers(("Retry-After" = u32, description = "Seconds to wait: `1`."))
)]
pub struct Unavailable(#[allow(dead_code)] ErrorBody);

/// A bug or a failed computation.
#[derive(ToResponse)]
#[response(description = "Internal error.")]
pub struct Internal(#[allow(dead_code)] ErrorBody);

/// Document info and shared components of the data port.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "dyce runtime: data port",
        description = "Early-exit image classification: KServe Open Inference Protocol v2 (REST, with \
            the binary tensor data extension) and `POST /v1/classify` for PNG/JPEG images. \
            Errors are JSON `{\"error\": \"...\"}` (`ErrorBody`). See docs/api.md."
    ),
    tags(
        (name = "oip", description = "KServe Open Inference Protocol v2 (REST)"),
        (name = "classify", description = "Images in, top-1 class out"),
        (name = "feedback", description = "True labels for answered images: live accuracy"),
        (name = "meta", description = "This document")
    ),
    components(
        schemas(ErrorBody),
        responses(
            BadRequest,
            NotFound,
            AlreadyLabelled,
            TooLarge,
            UnsupportedEncoding,
            Overloaded,
            Unavailable,
            Internal
        )
    )
)]
pub struct DataDoc;

/// Document info and shared components of the admin port.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "dyce runtime: admin port",
        description = "Configuration table, configuration switches, load statistics and metrics. \
            With `--admin-token-file`, every route of this port, this document included, requires \
            `Authorization: Bearer <token>`; without it the port binds loopback only and needs no \
            token. The metrics token (`--metrics-token-file`) is accepted for `GET /metrics` only \
            and refused (403) everywhere else. Errors are JSON `{\"error\": \"...\"}` (`ErrorBody`). See docs/api.md."
    ),
    tags(
        (name = "admin", description = "What the controller reads and writes"),
        (name = "meta", description = "This document and metrics")
    ),
    components(schemas(ErrorBody), responses(BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooLarge)),
    modifiers(&BearerAuth)
)]
pub struct AdminDoc;

/// Declares the bearer scheme and makes it optional: required only when a token is configured.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components
            .security_schemes
            .insert("bearer".into(), SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        doc.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::default(),
        ]);
    }
}
