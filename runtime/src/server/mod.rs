//! Serving: the HTTP data port (OIP v2, image classification) and admin port (configs,
//! switches, load, metrics), each with its OpenAPI document, and the gRPC port (OIP v2 over
//! KServe's `GRPCInferenceService`, `grpc/`). Handlers only translate between
//! HTTP and the runtime service (`crate::service`); what every request goes through is stacked
//! as layers (`layers.rs`).
//!
//! Request path: `routes.rs` `data_router` → `layers.rs` (request id, trace, metrics, timeout,
//! body limit, admission) → `oip.rs` `infer` or `classify.rs` `classify` → `crate::input`
//! (decode, normalise) → `Runtime::infer` → the model thread → back out, `error.rs` mapping
//! every failure to one status.

pub mod admin;
pub mod binary;
pub mod classify;
mod encoding;
pub mod error;
pub mod feedback;
pub mod grpc;
pub mod layers;
mod listen;
pub mod oip;
pub mod oip_types;
pub mod openapi;
pub mod routes;
mod run;
pub mod tensor;
pub mod triton;

pub use listen::ConnLimits;
pub use routes::{admin_document, admin_router, data_document, data_router, metrics_router, to_text};
pub use run::{run, serve, Server};
