//! `POST /v1/classify`: images answer exactly as OIP infer answers for their pixels, in every
//! conversion (channels, size, format), and bad images get JSON 4xx.

mod common;

use std::io::Cursor;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use common::*;
use dyce_api::{ClassifyResponse, ConfigTable};
use dyce_runtime::model::random::random_checkpoint;
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::{BackboneSpec, Bundle};
use dyce_runtime::server;
use dyce_runtime::service::{self, Runtime, ServeConfig};
use image::{DynamicImage, GrayImage, ImageFormat, RgbImage};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tower::ServiceExt;

fn app(bundle: Bundle, cfg: ServeConfig) -> (Arc<Runtime>, Router) {
    let cfg = ServeConfig { threads: Some(1), ..cfg };
    let rt = service::start(bundle, &cfg).unwrap().0;
    (rt.clone(), server::data_router(rt))
}

fn tiny(cfg: ServeConfig) -> (Arc<Runtime>, Router) {
    app(tiny_bundle(5, vec![entry("zero", &[(1, "mlp1", 0.0)])]).0, cfg)
}

/// A 3-channel 12×12 model.
fn rgb_bundle() -> Bundle {
    let spec = BackboneSpec::small(vec![1, 1, 1], vec![4, 8, 8], 3, 5);
    let tensors = random_checkpoint(&spec, &[], 9).unwrap();
    Bundle::from_parts(manifest(&spec, 12, &[]), &TensorStore::new(tensors), ConfigTable::full_only("tiny"))
        .unwrap()
}

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

fn gray(w: u32, h: u32, seed: u64) -> GrayImage {
    let mut r = rng(seed);
    GrayImage::from_fn(w, h, |_, _| image::Luma([r.random()]))
}

fn rgb(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut r = rng(seed);
    RgbImage::from_fn(w, h, |_, _| image::Rgb([r.random(), r.random(), r.random()]))
}

fn encode(img: impl Into<DynamicImage>, format: ImageFormat) -> Vec<u8> {
    let mut buf = Vec::new();
    img.into().write_to(&mut Cursor::new(&mut buf), format).unwrap();
    buf
}

async fn post(
    router: &Router,
    uri: &str,
    body: Vec<u8>,
    content_type: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::post(uri);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = router.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn classify(router: &Router, body: Vec<u8>) -> ClassifyResponse {
    let (status, _, v) = post(router, "/v1/classify", body, Some("image/png")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    serde_json::from_value(v).unwrap()
}

/// OIP infer's answer for CHW `pixels` (UINT8), as a classify answer.
async fn oip(router: &Router, pixels: &[u8], [c, h, w]: [usize; 3]) -> ClassifyResponse {
    let req =
        json!({"inputs": [{"name": "input", "shape": [1, c, h, w], "datatype": "UINT8", "data": pixels}]});
    let (status, _, v) = post(router, "/v2/models/tiny/infer", req.to_string().into_bytes(), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let out = |name: &str| {
        v["outputs"].as_array().unwrap().iter().find(|o| o["name"] == name).unwrap()["data"][0].clone()
    };
    let class = out("label").as_u64().unwrap() as usize;
    ClassifyResponse {
        label: format!("class{class}"),
        class,
        confidence: out("confidence").as_f64().unwrap() as f32,
        exit: out("exit_position").as_i64().unwrap() as i32,
        config: v["parameters"]["config_id"].as_str().unwrap().into(),
        generation: v["parameters"]["config_generation"].as_u64().unwrap(),
        answer_id: v["parameters"]["answer_id"].as_str().map(str::to_string),
    }
}

fn assert_same(got: &ClassifyResponse, want: &ClassifyResponse) {
    assert_eq!(
        (&got.label, got.class, got.exit, &got.config),
        (&want.label, want.class, want.exit, &want.config)
    );
    assert_eq!(got.generation, want.generation);
    assert!((got.confidence - want.confidence).abs() < 1e-5, "{got:?} vs {want:?}");
}

#[tokio::test]
async fn png_answers_as_oip_for_the_same_pixels() {
    for (config, exit) in [(None, -1), (Some("zero"), 1)] {
        let (rt, router) =
            tiny(ServeConfig { initial_config: config.map(String::from), ..Default::default() });
        for seed in 0..4 {
            let img = gray(12, 12, seed);
            let got = classify(&router, encode(img.clone(), ImageFormat::Png)).await;
            assert_eq!(got.exit, exit);
            assert_same(&got, &oip(&router, img.as_raw(), [1, 12, 12]).await);
        }
        rt.queue.close();
    }
}

#[tokio::test]
async fn jpeg_works_whatever_the_content_type() {
    let (rt, router) = tiny(ServeConfig::default());
    let jpeg = encode(gray(12, 12, 3), ImageFormat::Jpeg);
    // Lossy: the reference is the decoded JPEG, not the original pixels.
    let decoded = image::load_from_memory(&jpeg).unwrap().into_luma8();
    for ct in [None, Some("text/plain"), Some("image/png")] {
        let (status, _, v) = post(&router, "/v1/classify", jpeg.clone(), ct).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let got: ClassifyResponse = serde_json::from_value(v).unwrap();
        assert_same(&got, &oip(&router, decoded.as_raw(), [1, 12, 12]).await);
    }
    rt.queue.close();
}

#[tokio::test]
async fn other_sizes_go_through_the_bundles_transform() {
    // The reference is dyce-data's transform (the one calibration runs on files), whose
    // agreement with PIL is proven by dyce-data's fixture test: serving must not have a resize
    // of its own.
    let (rt, router) = tiny(ServeConfig::default());
    let transform = dyce_data::Transform::default();
    for (w, h) in [(30, 20), (5, 7), (12, 40)] {
        let img = gray(w, h, u64::from(w * h));
        let png = encode(img, ImageFormat::Png);
        let limits = dyce_data::DecodeLimits { max_pixels: 1 << 20, max_alloc: 8 << 20 };
        let decoded = dyce_data::decode(&png, 1, limits).unwrap();
        let want = transform.apply(&decoded, (12, 12)).unwrap();
        let got = classify(&router, png).await;
        assert_same(&got, &oip(&router, &want.data, [1, 12, 12]).await);
    }
    rt.queue.close();
}

#[tokio::test]
async fn colour_becomes_luma_for_a_grayscale_model() {
    let (rt, router) = tiny(ServeConfig::default());
    let img = rgb(12, 12, 4);
    // PIL's convert("L"), in its fixed-point form (what torchvision's Grayscale applies).
    let want: Vec<u8> = img
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(u32::from);
            ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8
        })
        .collect();
    let got = classify(&router, encode(img, ImageFormat::Png)).await;
    assert_same(&got, &oip(&router, &want, [1, 12, 12]).await);
    rt.queue.close();
}

#[tokio::test]
async fn rgb_model_gets_planar_rgb() {
    let (rt, router) = app(rgb_bundle(), ServeConfig::default());
    let planar =
        |img: &RgbImage| -> Vec<u8> { (0..3).flat_map(|ch| img.pixels().map(move |p| p.0[ch])).collect() };
    let img = rgb(12, 12, 6);
    let got = classify(&router, encode(img.clone(), ImageFormat::Png)).await;
    assert_same(&got, &oip(&router, &planar(&img), [3, 12, 12]).await);
    // A grayscale image on an RGB model: the gray value in all three channels.
    let g = gray(12, 12, 7);
    let got = classify(&router, encode(g.clone(), ImageFormat::Png)).await;
    let want = DynamicImage::ImageLuma8(g).into_rgb8();
    assert_same(&got, &oip(&router, &planar(&want), [3, 12, 12]).await);
    rt.queue.close();
}

#[tokio::test]
async fn label_falls_back_to_the_class_index() {
    let (mut b, _) = tiny_bundle(5, vec![]);
    b.manifest.input.labels.clear();
    let (rt, router) = app(b, ServeConfig::default());
    let got = classify(&router, encode(gray(12, 12, 1), ImageFormat::Png)).await;
    assert_eq!(got.label, got.class.to_string());
    rt.queue.close();
}

#[tokio::test]
async fn bad_images_get_json_4xx() {
    let (rt, router) = tiny(ServeConfig { max_body_bytes: 256 << 10, ..Default::default() });
    let png = encode(gray(12, 12, 1), ImageFormat::Png);
    let huge = encode(GrayImage::new(4100, 4100), ImageFormat::Png);
    assert!(huge.len() < 256 << 10, "a blank image compresses to {} bytes", huge.len());
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        ("empty", vec![], StatusCode::BAD_REQUEST, "empty body"),
        ("garbage", b"hello, not an image".to_vec(), StatusCode::BAD_REQUEST, "not a PNG or JPEG"),
        ("gif", b"GIF89a\x01\x00\x01\x00".to_vec(), StatusCode::BAD_REQUEST, "not a PNG or JPEG"),
        ("truncated PNG", png[..png.len() / 2].to_vec(), StatusCode::BAD_REQUEST, "could not decode the PNG"),
        ("bare JPEG marker", vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0], StatusCode::BAD_REQUEST, "JPEG"),
        ("over the pixel limit", huge, StatusCode::PAYLOAD_TOO_LARGE, "4100×4100"),
        ("over max_body_bytes", vec![0x89; 257 << 10], StatusCode::PAYLOAD_TOO_LARGE, "over the limit"),
    ];
    for (what, body, status, reason) in cases {
        let (got, headers, v) = post(&router, "/v1/classify", body, Some("image/png")).await;
        assert_eq!(got, status, "{what}: {v}");
        assert_eq!(headers["content-type"], "application/json", "{what}");
        let error = v["error"].as_str().unwrap_or_else(|| panic!("{what}: {v}"));
        assert!(error.contains(reason), "{what}: {error}");
    }
    // Still serving.
    classify(&router, png).await;
    rt.queue.close();
}

#[tokio::test]
async fn full_queue_refuses_with_429_and_retry_after() {
    // A larger input makes each batch take long enough to find the queue full.
    let spec = tiny_spec();
    let tensors = random_checkpoint(&spec, &[], 2).unwrap();
    let b = Bundle::from_parts(
        manifest(&spec, 64, &[]),
        &TensorStore::new(tensors),
        ConfigTable::full_only("tiny"),
    )
    .unwrap();
    let (rt, router) = app(b, ServeConfig { max_batch: 8, max_queued: 8, ..Default::default() });
    let png = encode(gray(64, 64, 2), ImageFormat::Png);
    let per = rt.queue.per_image();
    let mut refused = None;
    for _ in 0..50 {
        // Take every permit, then ask while that batch runs.
        let held = rt.queue.submit(vec![0.0; 8 * per], 8).unwrap();
        let (status, headers, v) = post(&router, "/v1/classify", png.clone(), None).await;
        held.await.unwrap().unwrap();
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some((headers, v));
            break;
        }
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let (headers, v) = refused.expect("a classify request while the queue is full is refused");
    assert_eq!(headers["retry-after"], "1");
    assert!(v["error"].as_str().unwrap().contains("overloaded"), "{v}");
    // Room again once the batch is done.
    classify(&router, png).await;
    rt.queue.close();
}
