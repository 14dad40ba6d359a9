//! Each port's routes, their OpenAPI document, and the router served. Every route is added with
//! `routes!`, which takes the path and method from the handler's `#[utoipa::path]`: serving a
//! route means documenting it.

use std::sync::{Arc, LazyLock};

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;
use utoipa::openapi::OpenApi as Document;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::{AdminDoc, DataDoc, Unauthorized};
use super::{admin, classify, feedback, layers, oip, triton};
use crate::service::Runtime;

type Routes = OpenApiRouter<Arc<Runtime>>;

/// The data port's routes; `inference` wraps the two inference routes in their layers.
fn data_routes(inference: impl FnOnce(Routes) -> Routes) -> Routes {
    let infer = OpenApiRouter::new()
        .routes(routes!(oip::infer))
        .routes(routes!(triton::version_infer))
        .routes(routes!(classify::classify));
    OpenApiRouter::with_openapi(DataDoc::openapi())
        .routes(routes!(oip::server_meta))
        .routes(routes!(oip::live))
        .routes(routes!(oip::ready))
        .routes(routes!(oip::model_meta))
        .routes(routes!(oip::model_ready))
        .routes(routes!(triton::version_meta))
        .routes(routes!(triton::version_ready))
        .routes(routes!(triton::model_config))
        .routes(routes!(triton::version_config))
        .routes(routes!(triton::all_stats))
        .routes(routes!(triton::model_stats))
        .routes(routes!(triton::version_stats))
        .routes(routes!(oip::repository_index))
        .routes(routes!(feedback::feedback))
        .routes(routes!(data_openapi))
        .merge(inference(infer))
}

/// The admin port's routes (the bearer check is added by `admin_router`).
fn admin_routes() -> Routes {
    OpenApiRouter::with_openapi(AdminDoc::openapi())
        .routes(routes!(admin::configs))
        .routes(routes!(admin::get_config, admin::put_config))
        .routes(routes!(admin::load))
        .routes(routes!(admin::accuracy))
        .routes(routes!(admin::metrics))
        .routes(routes!(admin_openapi))
}

/// The data port: OIP v2 and `/v1/classify`; never the admin API.
pub fn data_router(rt: Arc<Runtime>) -> Router {
    let (router, _) = data_routes(|r| layers::inference(r, &rt)).split_for_parts();
    // The inference routes' own layer reads their bodies under `--max-body-bytes` (JSON 413);
    // the same limit bounds the other bodies the port reads (the repository index's).
    let limit = DefaultBodyLimit::max(rt.max_body_bytes);
    let router = layers::body_deadline(router.layer(limit), rt.body_timeout);
    layers::traced(router.with_state(rt))
}

/// The admin port, every route (its document included) behind the bearer-token check when one
/// is configured: one rule for the whole port is the easiest to audit, and the document is
/// public anyway in docs/openapi-admin.json.
pub fn admin_router(rt: Arc<Runtime>) -> Router {
    let (router, _) = admin_routes().split_for_parts();
    let router = router
        .route_layer(axum::middleware::from_fn_with_state(rt.clone(), admin::auth))
        .layer(DefaultBodyLimit::max(admin::MAX_BODY_BYTES));
    let router = layers::body_deadline(router, rt.body_timeout);
    layers::traced(router.with_state(rt))
}

/// The metrics port (`--metrics-addr`): `GET /metrics` and nothing else, behind the metrics
/// token when one is configured. It shares the admin port's handler and the whole-port layers
/// (request ids, JSON errors: any other path is a JSON 404); it reads no body.
pub fn metrics_router(rt: Arc<Runtime>) -> Router {
    let router = Router::new()
        .route("/metrics", axum::routing::get(admin::metrics))
        .route_layer(axum::middleware::from_fn_with_state(rt.clone(), admin::metrics_auth))
        .layer(DefaultBodyLimit::max(0));
    let router = layers::body_deadline(router, rt.body_timeout);
    layers::traced(router.with_state(rt))
}

/// The data port's document.
pub fn data_document() -> Document {
    data_routes(|r| r).into_openapi()
}

/// The admin port's document.
pub fn admin_document() -> Document {
    admin_routes().into_openapi()
}

/// The document as committed in docs/: pretty-printed with a trailing newline.
pub fn to_text(doc: &Document) -> String {
    let mut text = doc.to_pretty_json().expect("an OpenAPI document serialises");
    text.push('\n');
    text
}

// Built once: the documents depend on the code only, not on the model or the settings.
static DATA_TEXT: LazyLock<String> = LazyLock::new(|| to_text(&data_document()));
static ADMIN_TEXT: LazyLock<String> = LazyLock::new(|| to_text(&admin_document()));

/// `GET /openapi.json` on the data port: this port's OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1).", body = Object))
)]
pub async fn data_openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DATA_TEXT.as_str())
}

/// `GET /openapi.json` on the admin port: this port's OpenAPI document.
///
/// Behind the bearer check like every admin route.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "This document (OpenAPI 3.1).", body = Object),
        (status = 401, response = Unauthorized)
    )
)]
pub async fn admin_openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], ADMIN_TEXT.as_str())
}
