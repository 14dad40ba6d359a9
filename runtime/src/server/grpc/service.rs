//! The gRPC service: health and metadata answered from the runtime, and ModelInfer under the
//! same admission, timeout and request metrics as the REST infer route (`layers::inference`).

use std::sync::{Arc, Weak};
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::infer;
use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::*;
use crate::server::error::ApiError;
use crate::server::layers::outcome;
use crate::server::oip_types;
use crate::server::tensor;
use crate::server::tensor::check_version;
use crate::service::Runtime;

/// `inference.GRPCInferenceService` over a runtime.
///
/// It holds the runtime weakly: tonic runs each connection in a task of its own, which may
/// outlive the server past the drain period, and the model thread ends only once the last
/// handle on the queue is gone. A call takes a strong handle for its own duration; after the
/// server has stopped, calls on a lingering connection are UNAVAILABLE.
pub struct InferenceService {
    rt: Weak<Runtime>,
}

impl InferenceService {
    /// The service of `rt`.
    pub fn new(rt: &Arc<Runtime>) -> Self {
        Self { rt: Arc::downgrade(rt) }
    }

    fn rt(&self) -> Result<Arc<Runtime>, ApiError> {
        self.rt.upgrade().ok_or_else(|| ApiError::Unavailable("the runtime has stopped".into()))
    }

    /// Admission first, as on REST: under overload the CPU goes to the model, not to
    /// translating requests that will be refused; then the request under `--request-timeout`.
    async fn admitted(rt: &Runtime, req: ModelInferRequest) -> Result<(ModelInferResponse, usize), ApiError> {
        rt.admit()?;
        let call = infer::infer(rt, req);
        match rt.request_timeout {
            None => call.await,
            Some(limit) => tokio::time::timeout(limit, call).await.map_err(|_| {
                ApiError::Unavailable(format!("no answer within the request timeout of {limit:?}"))
            })?,
        }
    }
}

fn grpc_tensor(t: oip_types::TensorMetadata) -> TensorMetadata {
    TensorMetadata { name: t.name.into(), datatype: t.datatype.into(), shape: t.shape }
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: self.rt()?.is_ready() }))
    }

    async fn model_ready(
        &self,
        req: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let (rt, req) = (self.rt()?, req.into_inner());
        check_version(&rt, &req.name, &req.version)?;
        Ok(Response::new(ModelReadyResponse { ready: rt.is_ready() }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        // No extensions on this port: the binary tensor data and repository index extensions
        // are REST's (gRPC carries raw bytes natively).
        Ok(Response::new(ServerMetadataResponse {
            name: "dyce".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec![],
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let (rt, req) = (self.rt()?, req.into_inner());
        check_version(&rt, &req.name, &req.version)?;
        let (inputs, outputs) = tensor::tensors(&rt);
        Ok(Response::new(ModelMetadataResponse {
            name: rt.bundle.manifest.name.clone(),
            versions: vec![tensor::VERSION.into()],
            platform: "dyce".into(),
            inputs: inputs.into_iter().map(grpc_tensor).collect(),
            outputs: outputs.into_iter().map(grpc_tensor).collect(),
        }))
    }

    async fn model_infer(
        &self,
        req: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let start = Instant::now();
        let rt = self.rt()?;
        let answered = Self::admitted(&rt, req.into_inner()).await;
        // Counted as the REST route counts: by the HTTP status the same error would have had.
        let (out, images) = match &answered {
            Ok((_, n)) => ("ok", Some(*n)),
            Err(e) => (outcome(e.status()), None),
        };
        rt.record_request(out, images, start.elapsed().as_secs_f64());
        answered.map(|(resp, _)| Response::new(resp)).map_err(Status::from)
    }
}
