//! Every error a handler can return, and the one table that maps them to HTTP statuses.

use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dyce_api::ErrorBody;

use crate::engine::queue::SubmitError;
use crate::engine::EngineError;
use crate::input::{ImageInputError, InputError};

/// Errors of the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body or a field is malformed (shape, datatype, length, values).
    #[error("{0}")]
    BadRequest(String),
    /// The request names a model this runtime does not serve.
    #[error("unknown model {0:?}")]
    UnknownModel(String),
    /// The request names a version of the model other than "1", the one served.
    #[error("unknown version {version:?} of model {model:?}; the served version is \"1\"")]
    UnknownVersion {
        /// The model named.
        model: String,
        /// The version named.
        version: String,
    },
    /// The request names a configuration that is not in the table.
    #[error("unknown config id {0:?}")]
    UnknownConfig(String),
    /// Something else the request names that is not here (shadow checks when off, a response id
    /// feedback quotes that is unknown or expired).
    #[error("{0}")]
    NotFound(String),
    /// A configuration write older than the active one.
    #[error("{0}")]
    StaleGeneration(String),
    /// The request clashes with what is recorded (feedback for an image already labelled).
    #[error("{0}")]
    Conflict(String),
    /// The queue is full.
    #[error("{0}")]
    Overloaded(String),
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// A valid credential that does not allow this request (the metrics token on a write).
    #[error("{0}")]
    Forbidden(String),
    /// A `Content-Encoding` the server does not decode.
    #[error("{0}")]
    UnsupportedEncoding(String),
    /// The body did not arrive within `--body-timeout`.
    #[error("{0}")]
    RequestTimeout(String),
    /// Too large a body.
    #[error("{0}")]
    TooLarge(String),
    /// Too many or too large request headers.
    #[error("{0}")]
    HeadTooLarge(String),
    /// Shutting down or not ready.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a failed computation.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The status of each kind: the single source of truth for every handler.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnknownModel(_)
            | ApiError::UnknownVersion { .. }
            | ApiError::UnknownConfig(_)
            | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::StaleGeneration(_) | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::HeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl ApiError {
    /// The gRPC status code of each kind: the same table for the gRPC port, where the HTTP
    /// status has no meaning. 429 becomes RESOURCE_EXHAUSTED (retry later); 413 becomes
    /// OUT_OF_RANGE, the code tonic itself gives a message over the size limit, so that "too
    /// large" is one code and a client retrying on RESOURCE_EXHAUSTED never retries a request
    /// that can never fit.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            ApiError::BadRequest(_) | ApiError::HeadTooLarge(_) => tonic::Code::InvalidArgument,
            ApiError::UnknownModel(_)
            | ApiError::UnknownVersion { .. }
            | ApiError::UnknownConfig(_)
            | ApiError::NotFound(_) => tonic::Code::NotFound,
            ApiError::StaleGeneration(_) => tonic::Code::FailedPrecondition,
            ApiError::Conflict(_) => tonic::Code::AlreadyExists,
            ApiError::Overloaded(_) => tonic::Code::ResourceExhausted,
            ApiError::Unauthorized => tonic::Code::Unauthenticated,
            ApiError::Forbidden(_) => tonic::Code::PermissionDenied,
            ApiError::UnsupportedEncoding(_) => tonic::Code::Unimplemented,
            ApiError::RequestTimeout(_) => tonic::Code::DeadlineExceeded,
            ApiError::TooLarge(_) => tonic::Code::OutOfRange,
            ApiError::Unavailable(_) => tonic::Code::Unavailable,
            ApiError::Internal(_) => tonic::Code::Internal,
        }
    }
}

impl From<ApiError> for tonic::Status {
    /// The same reason text as the HTTP answer's `error`.
    fn from(e: ApiError) -> Self {
        tonic::Status::new(e.grpc_code(), e.to_string())
    }
}

/// The error of a body that did not arrive within `--body-timeout`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within the body timeout of {0:?}")]
pub struct BodyTimeout(pub Duration);

impl BodyTimeout {
    /// The body timeout somewhere in `e`'s chain of causes.
    pub fn find(e: &(dyn std::error::Error + 'static)) -> Option<BodyTimeout> {
        let mut cause = Some(e);
        while let Some(c) = cause {
            if let Some(t) = c.downcast_ref::<BodyTimeout>() {
                return Some(*t);
            }
            cause = c.source();
        }
        None
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Overloaded { .. } => ApiError::Overloaded(e.to_string()),
            SubmitError::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
            SubmitError::Stopped => ApiError::Unavailable(e.to_string()),
            SubmitError::Engine(EngineError::InputSize { .. }) => ApiError::BadRequest(e.to_string()),
            SubmitError::Engine(inner) => ApiError::Internal(inner.to_string()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    /// A body the extractor could not read: over the route's limit (413), too slow (408) or cut
    /// off (400).
    fn from(e: BytesRejection) -> Self {
        if let Some(t) = BodyTimeout::find(&e) {
            ApiError::RequestTimeout(t.to_string())
        } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("request body over the limit: {}", e.body_text()))
        } else {
            ApiError::BadRequest(e.body_text())
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<ImageInputError> for ApiError {
    fn from(e: ImageInputError) -> Self {
        match e {
            ImageInputError::TooManyPixels { .. } | ImageInputError::DecoderLimit { .. } => {
                ApiError::TooLarge(e.to_string())
            }
            ImageInputError::Empty
            | ImageInputError::NotAnImage
            | ImageInputError::Undecodable { .. }
            | ImageInputError::Channels(_) => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::UnknownConfig(id) => ApiError::UnknownConfig(id),
            EngineError::StaleGeneration { .. } | EngineError::GenerationExhausted { .. } => {
                ApiError::StaleGeneration(e.to_string())
            }
            EngineError::GenerationTooLarge { .. } => ApiError::BadRequest(e.to_string()),
            EngineError::InputSize { .. } => ApiError::BadRequest(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (status, Json(ErrorBody { error: self.to_string() })).into_response();
        match status {
            // A batch takes milliseconds: a client that waits one second finds room again.
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // The rest of a body that came too slowly is not worth waiting for: the connection
            // ends with this answer.
            StatusCode::REQUEST_TIMEOUT => {
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}
