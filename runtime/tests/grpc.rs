//! The KServe v2 gRPC port with a tonic client on port 0: health, metadata, raw and typed
//! infer answering as the REST route does for the same pixels, the same reasons for bad
//! requests, RESOURCE_EXHAUSTED on a full queue, and shutdown with the HTTP ports.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use common::*;
use dyce_api::ConfigTable;
use dyce_runtime::model::random::random_checkpoint;
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::Bundle;
use dyce_runtime::server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use dyce_runtime::server::grpc::proto::infer_parameter::ParameterChoice;
use dyce_runtime::server::grpc::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use dyce_runtime::server::grpc::proto::*;
use dyce_runtime::server::{self, Server};
use dyce_runtime::service::metrics::OutcomeLabel;
use dyce_runtime::service::{Runtime, ServeConfig};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;
use tower::ServiceExt;

type Client = GrpcInferenceServiceClient<Channel>;

/// A served runtime: its gRPC client, its REST data router (same runtime) and its stop token.
struct Served {
    rt: Arc<Runtime>,
    client: Client,
    rest: Router,
    stop: CancellationToken,
    run: tokio::task::JoinHandle<Result<(), dyce_runtime::service::ServeError>>,
}

async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

async fn serve(bundle: Bundle, cfg: ServeConfig) -> Served {
    let cfg = ServeConfig { threads: Some(1), ..cfg };
    let server =
        Server::new(bundle, &cfg, loopback().await, loopback().await).unwrap().with_grpc(loopback().await);
    let addr = server.grpc_addr().unwrap().unwrap();
    let rt = server.runtime().clone();
    let stop = CancellationToken::new();
    let run = tokio::spawn(server.run(stop.clone()));
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut client = GrpcInferenceServiceClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client.server_ready(ServerReadyRequest {}).await.unwrap().into_inner().ready {
        assert!(Instant::now() < deadline, "not ready within a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Served { rest: server::data_router(rt.clone()), rt, client, stop, run }
}

impl Served {
    /// Stops the servers as SIGTERM does and waits for `Server::run` to return (the model
    /// thread ends once the last handle on the runtime is gone: the test's are dropped here).
    async fn stop(self) {
        let Served { rt, client, rest, stop, run } = self;
        drop((rt, client, rest));
        stop.cancel();
        let ran = tokio::time::timeout(Duration::from_secs(15), run).await.expect("stopped within 15 s");
        ran.unwrap().unwrap();
    }
}

async fn tiny(cfg: ServeConfig) -> Served {
    serve(tiny_bundle(5, vec![entry("zero", &[(1, "mlp1", 0.0)])]).0, cfg).await
}

/// `n` 12×12 grayscale images of UINT8 pixels.
fn pixels(n: usize, seed: u32) -> Vec<u32> {
    (0..n as u32 * 144).map(|i| (i * 31 + seed * 7) % 256).collect()
}

async fn rest_infer(rest: &Router, body: Value) -> (u16, Value) {
    let req = Request::post("/v2/models/tiny/infer")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = rest.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn input(shape: Vec<i64>, datatype: &str, contents: Option<InferTensorContents>) -> InferInputTensor {
    InferInputTensor {
        name: "input".into(),
        datatype: datatype.into(),
        shape,
        parameters: Default::default(),
        contents,
    }
}

fn request(inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "tiny".into(),
        id: "req-7".into(),
        inputs,
        raw_input_contents: raw,
        ..Default::default()
    }
}

fn raw_request(px: &[u32], n: usize) -> ModelInferRequest {
    let bytes = px.iter().map(|&p| p as u8).collect();
    request(vec![input(vec![n as i64, 1, 12, 12], "UINT8", None)], vec![bytes])
}

fn typed_request(px: &[u32], n: usize) -> ModelInferRequest {
    let contents = InferTensorContents { uint_contents: px.to_vec(), ..Default::default() };
    request(vec![input(vec![n as i64, 1, 12, 12], "UINT8", Some(contents))], vec![])
}

/// One output's values as f64, from raw bytes or typed contents.
fn values(resp: &ModelInferResponse, name: &str) -> Vec<f64> {
    let i = resp.outputs.iter().position(|o| o.name == name).unwrap_or_else(|| panic!("no output {name}"));
    let o = &resp.outputs[i];
    if let Some(raw) = resp.raw_output_contents.get(i) {
        assert!(o.contents.is_none());
        return match o.datatype.as_str() {
            "FP32" => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            "INT64" => {
                raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect()
            }
            _ => raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        };
    }
    let c = o.contents.as_ref().expect("typed contents");
    match o.datatype.as_str() {
        "FP32" => c.fp32_contents.iter().map(|&v| v as f64).collect(),
        "INT64" => c.int64_contents.iter().map(|&v| v as f64).collect(),
        _ => c.int_contents.iter().map(|&v| v as f64).collect(),
    }
}

fn rest_values(v: &Value, name: &str) -> Vec<f64> {
    let o = v["outputs"].as_array().unwrap().iter().find(|o| o["name"] == name).unwrap();
    o["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[tokio::test]
async fn health_and_metadata() {
    let mut s = tiny(ServeConfig::default()).await;
    let c = &mut s.client;
    assert!(c.server_live(ServerLiveRequest {}).await.unwrap().into_inner().live);
    for version in ["", "1"] {
        let r = c.model_ready(ModelReadyRequest { name: "tiny".into(), version: version.into() }).await;
        assert!(r.unwrap().into_inner().ready, "version {version:?}");
    }
    let e = c.model_ready(ModelReadyRequest { name: "tiny".into(), version: "2".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = c.model_ready(ModelReadyRequest { name: "nope".into(), version: "".into() }).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::NotFound, "unknown model \"nope\""));

    let meta = c.server_metadata(ServerMetadataRequest {}).await.unwrap().into_inner();
    assert_eq!((meta.name.as_str(), meta.version.as_str()), ("dyce", env!("CARGO_PKG_VERSION")));
    let md = c.model_metadata(ModelMetadataRequest { name: "tiny".into(), version: "".into() }).await;
    let md = md.unwrap().into_inner();
    assert_eq!(
        (md.name.as_str(), md.versions.as_slice(), md.platform.as_str()),
        ("tiny", &["1".to_string()][..], "dyce")
    );
    assert_eq!((md.inputs[0].name.as_str(), md.inputs[0].datatype.as_str()), ("input", "UINT8"));
    assert_eq!(md.inputs[0].shape, [-1, 1, 12, 12]);
    let outs: Vec<_> =
        md.outputs.iter().map(|o| (o.name.as_str(), o.datatype.as_str(), o.shape.clone())).collect();
    assert_eq!(
        outs,
        [
            ("probabilities", "FP32", vec![-1, 5]),
            ("label", "INT64", vec![-1]),
            ("confidence", "FP32", vec![-1]),
            ("exit_position", "INT32", vec![-1])
        ]
    );
    let e =
        c.model_metadata(ModelMetadataRequest { name: "nope".into(), version: "".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    s.stop().await;
}

#[tokio::test]
async fn raw_and_typed_answer_as_rest_does() {
    let mut s = tiny(ServeConfig::default()).await;
    let n = 5;
    let px = pixels(n, 3);
    let (status, rest) = rest_infer(
        &s.rest,
        json!({"inputs": [{"name": "input", "shape": [n, 1, 12, 12], "datatype": "UINT8", "data": px}]}),
    )
    .await;
    assert_eq!(status, 200, "{rest}");
    for (enc, req) in [("raw", raw_request(&px, n)), ("typed", typed_request(&px, n))] {
        let r = s.client.model_infer(req).await.unwrap().into_inner();
        assert_eq!((r.model_name.as_str(), r.model_version.as_str(), r.id.as_str()), ("tiny", "1", "req-7"));
        let names: Vec<_> = r.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["probabilities", "label", "confidence", "exit_position"], "{enc}");
        assert_eq!(r.raw_output_contents.len(), if enc == "raw" { 4 } else { 0 }, "{enc}");
        assert_eq!(r.outputs[0].shape, [n as i64, 5]);
        for name in ["label", "exit_position", "confidence"] {
            assert_eq!(values(&r, name), rest_values(&rest, name), "{enc} {name}");
        }
        let probs = values(&r, "probabilities");
        for (a, b) in probs.iter().zip(rest_values(&rest, "probabilities")) {
            assert!((a - b).abs() < 1e-6, "{enc}: {a} vs {b}");
        }
        let cfg = &r.parameters["config_id"].parameter_choice;
        assert_eq!(
            cfg,
            &Some(ParameterChoice::StringParam(rest["parameters"]["config_id"].as_str().unwrap().into()))
        );
    }
    // FP32 pixels in [0, 1], raw and typed, give the same labels.
    let fp: Vec<f32> = px.iter().map(|&p| p as f32 / 255.0).collect();
    let raw = fp.iter().flat_map(|v| v.to_le_bytes()).collect();
    let typed = InferTensorContents { fp32_contents: fp.clone(), ..Default::default() };
    for req in [
        request(vec![input(vec![n as i64, 1, 12, 12], "FP32", None)], vec![raw]),
        request(vec![input(vec![n as i64, 1, 12, 12], "FP32", Some(typed))], vec![]),
    ] {
        let r = s.client.model_infer(req).await.unwrap().into_inner();
        assert_eq!(values(&r, "label"), rest_values(&rest, "label"));
    }
    // A chosen subset of outputs, in the order asked for.
    let mut req = raw_request(&px, n);
    req.outputs = ["exit_position", "label"]
        .map(|name| InferRequestedOutputTensor { name: name.into(), parameters: Default::default() })
        .to_vec();
    let r = s.client.model_infer(req).await.unwrap().into_inner();
    assert_eq!(r.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["exit_position", "label"]);
    assert_eq!(values(&r, "label"), rest_values(&rest, "label"));
    // Counted in the same request series as REST.
    let ok = s.rt.metrics.requests.get_or_create(&OutcomeLabel { outcome: "ok" }).get();
    assert!(ok >= 5, "{ok} ok requests counted");
    s.stop().await;
}

#[tokio::test]
async fn bad_requests_get_rest_reasons() {
    let mut s = tiny(ServeConfig { max_body_bytes: 64 << 10, ..Default::default() }).await;
    let px = pixels(2, 1);
    let rest_json = |shape: Value, datatype: &str, name: &str, data: Value| json!({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]});
    let mut out_of_range = px.clone();
    out_of_range[3] = 300;
    let cases: Vec<(ModelInferRequest, Value)> = vec![
        (typed_request(&px[..144], 2), rest_json(json!([2, 1, 12, 12]), "UINT8", "input", json!(px[..144]))),
        (
            request(vec![input(vec![2, 1, 11, 12], "UINT8", None)], vec![vec![0; 264]]),
            rest_json(json!([2, 1, 11, 12]), "UINT8", "input", json!(vec![0; 264])),
        ),
        (
            request(vec![input(vec![2, 1, 12, 12], "INT32", None)], vec![vec![0; 288 * 4]]),
            rest_json(json!([2, 1, 12, 12]), "INT32", "input", json!(vec![0; 288])),
        ),
        (
            typed_request(&out_of_range, 2),
            rest_json(json!([2, 1, 12, 12]), "UINT8", "input", json!(out_of_range)),
        ),
        (
            {
                let mut r = raw_request(&px, 2);
                r.inputs[0].name = "x".into();
                r
            },
            rest_json(json!([2, 1, 12, 12]), "UINT8", "x", json!(px)),
        ),
    ];
    for (req, body) in cases {
        let (status, rest) = rest_infer(&s.rest, body).await;
        assert_eq!(status, 400, "{rest}");
        let e = s.client.model_infer(req).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::InvalidArgument, rest["error"].as_str().unwrap()));
    }
    let mut req = raw_request(&px, 2);
    req.outputs = vec![InferRequestedOutputTensor { name: "logits".into(), parameters: Default::default() }];
    let e = s.client.model_infer(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("unknown output \"logits\""), "{}", e.message());
    let mut req = raw_request(&px, 2);
    req.inputs[0].contents = Some(InferTensorContents { uint_contents: px.clone(), ..Default::default() });
    let e = s.client.model_infer(req).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "input has both contents and raw_input_contents")
    );
    let typed_wrong_field = request(
        vec![input(
            vec![2, 1, 12, 12],
            "UINT8",
            Some(InferTensorContents { int_contents: vec![0; 288], ..Default::default() }),
        )],
        vec![],
    );
    let e = s.client.model_infer(typed_wrong_field).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("uint_contents"), "{}", e.message());
    let mut req = raw_request(&px, 2);
    req.model_name = "nope".into();
    let e = s.client.model_infer(req).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::NotFound, "unknown model \"nope\""));
    // Over --max-body-bytes: refused before decoding, and the port still serves.
    let big = pixels(600, 1);
    let e = s.client.model_infer(raw_request(&big, 600)).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    s.client.model_infer(raw_request(&px, 2)).await.unwrap();
    s.stop().await;
}

#[tokio::test]
async fn full_queue_answers_resource_exhausted() {
    // A 64×64 input makes each batch take long enough to find the queue full.
    let spec = tiny_spec();
    let tensors = random_checkpoint(&spec, &[], 2).unwrap();
    let b = Bundle::from_parts(
        manifest(&spec, 64, &[]),
        &TensorStore::new(tensors),
        ConfigTable::full_only("tiny"),
    )
    .unwrap();
    let mut s = serve(b, ServeConfig { max_batch: 8, max_queued: 8, ..Default::default() }).await;
    let per = s.rt.queue.per_image();
    let px: Vec<u8> = (0..64 * 64).map(|i| (i % 251) as u8).collect();
    let req = || request(vec![input(vec![1, 1, 64, 64], "UINT8", None)], vec![px.clone()]);
    let mut refused = None;
    for _ in 0..50 {
        // Take every permit, then ask while that batch runs.
        let held = s.rt.queue.submit(vec![0.0; 8 * per], 8).unwrap();
        let answer = s.client.model_infer(req()).await;
        held.await.unwrap().unwrap();
        match answer {
            Err(e) if e.code() == Code::ResourceExhausted => {
                refused = Some(e);
                break;
            }
            other => assert!(other.is_ok(), "{other:?}"),
        }
    }
    let e = refused.expect("an infer while the queue is full is refused");
    assert!(e.message().contains("overloaded"), "{}", e.message());
    let shed = s.rt.metrics.requests.get_or_create(&OutcomeLabel { outcome: "shed" }).get();
    assert!(shed >= 1, "{shed} shed requests counted");
    // Room again once the batch is done.
    s.client.model_infer(req()).await.unwrap();
    s.stop().await;
}

#[tokio::test]
async fn stops_with_the_http_ports() {
    // A drain period far above the bound below: an open client connection, idle, must not
    // hold shutdown up (HTTP/2 GOAWAY closes it at once).
    let mut s = tiny(ServeConfig { drain_timeout: Duration::from_secs(60), ..Default::default() }).await;
    s.client.model_infer(raw_request(&pixels(1, 0), 1)).await.unwrap();
    let mut client = s.client.clone();
    let t = Instant::now();
    s.stop().await;
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert!(client.server_live(ServerLiveRequest {}).await.is_err(), "the port is closed");
}
