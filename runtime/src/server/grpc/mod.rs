//! The KServe v2 / Open Inference Protocol gRPC port (`inference.GRPCInferenceService`, what
//! `tritonclient.grpc` and KServe pipelines speak), beside the HTTP ports.
//!
//! It shares everything but the wire with the REST data port: the runtime's queue and admission
//! (`Runtime::admit`, `Runtime::infer`), the input checks and outputs (`server/tensor.rs`, so a
//! bad request gets the same reason text), the request metrics and the load window, the body
//! limit (`--max-body-bytes` as the largest decoded message) and `--request-timeout`; errors
//! map through the same `ApiError` kinds (`ApiError::grpc_code`). tonic serves it over HTTP/2
//! on its own listener and stops with the same cancellation token.
//!
//! `service.rs`: the service (health, metadata, the infer wrapper with admission, timeout and
//! metrics); `infer.rs`: ModelInfer's translation to and from the shared types.

mod infer;
mod service;

use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use super::ConnLimits;
use crate::service::Runtime;

/// Code generated from `runtime/proto/grpc_predict_v2.proto` by `runtime/build.rs`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("inference");
}

pub use service::InferenceService;

/// Serves the gRPC port on `listener` until `stop` is cancelled; then stops accepting, lets
/// calls in progress finish (tonic's graceful shutdown: HTTP/2 GOAWAY, idle connections close at
/// once) and gives up on what is still open after `limits.drain_timeout`, as the HTTP ports do.
pub async fn serve_grpc(
    rt: Arc<Runtime>,
    listener: TcpListener,
    limits: ConnLimits,
    stop: CancellationToken,
) -> io::Result<()> {
    let port = listener.local_addr()?;
    // `rt` lives as long as this future; the service holds it weakly (see `InferenceService`).
    let svc =
        proto::grpc_inference_service_server::GrpcInferenceServiceServer::new(InferenceService::new(&rt))
            // The same bound as an HTTP body; tonic answers OUT_OF_RANGE above it, before decoding.
            .max_decoding_message_size(rt.max_body_bytes);
    // Small requests and answers: Nagle's delay would add up to 40 ms to each.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tonic::transport::Server::builder()
        // At debug level like the HTTP ports' request spans: per call, so not at the default level.
        .trace_fn(|req| tracing::debug_span!("grpc", path = %req.uri().path()))
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
    tokio::pin!(server);
    let deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(limits.drain_timeout).await;
    };
    tokio::select! {
        served = &mut server => served.map_err(io::Error::other),
        () = deadline => {
            tracing::warn!(%port, drain = ?limits.drain_timeout,
                "closing the gRPC connections still open after the drain period");
            Ok(())
        }
    }
}
