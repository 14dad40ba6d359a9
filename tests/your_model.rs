//! The bring-your-own-model path end to end (docs/your-model.md): Fashion-MNIST written as an
//! image folder (PNG files at 28×28 grayscale and RGB JPEG files at another size), the shipped
//! backbone exported as a plain torchvision state dict, `dyce calibrate --weights --arch
//! --images`, then `dyce serve` answering every test file as calibration recorded it, through
//! `/v1/classify` and through OIP.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::*;
use dyce_data::export::{write_folder, ExportOptions};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/runtime/models/fmnist-resnet20");

fn dyce(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dyce")).args(args).env("RUST_LOG", "warn").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The shipped bundle's backbone without its exits: what `torch.save(model.state_dict())`
/// through safetensors gives for a torchvision ResNet (BatchNorm not folded).
fn export_backbone(to: &Path) {
    let all = candle_core::safetensors::load(
        Path::new(SHIPPED).join("weights.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let backbone: HashMap<String, candle_core::Tensor> =
        all.into_iter().filter(|(k, _)| !k.starts_with("exits.")).collect();
    assert!(backbone.contains_key("bn1.running_var"), "BatchNorm is stored unfolded");
    candle_core::safetensors::save(&backbone, to).unwrap();
}

/// (file, label, predicted, confidence) of the test split in `predictions.csv`.
fn recorded(bundle: &Path) -> Vec<(String, u32, u32, f32)> {
    std::fs::read_to_string(bundle.join("predictions.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("test,"))
        .map(|l| {
            let (_, rest) = l.split_once(",\"").unwrap();
            let (file, rest) = rest.split_once("\",").unwrap();
            let v: Vec<&str> = rest.split(',').collect();
            (file.to_string(), v[0].parse().unwrap(), v[1].parse().unwrap(), v[2].parse().unwrap())
        })
        .collect()
}

#[test]
#[ignore = "needs Debian's dataset-fashion-mnist (scripts/ci/setup.sh); run by scripts/test.sh"]
fn a_torchvision_checkpoint_and_an_image_folder_become_a_served_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (images, weights, bundle, cache) = (
        dir.path().join("images"),
        dir.path().join("w.safetensors"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let splits = dyce_data::fashion_mnist::load(Path::new(dyce_data::fashion_mnist::DEFAULT_DIR)).unwrap();
    write_folder(&splits, &images, ExportOptions { per_class: Some(12), ..Default::default() }).unwrap();
    let jpeg = ExportOptions { per_class: Some(12), jpeg: true, size: 40, rgb: true };
    write_folder(&splits, &images, jpeg).unwrap();
    export_backbone(&weights);
    let (ok, err) = dyce(&[
        "calibrate",
        "--weights",
        s(&weights),
        "--arch",
        "resnet20",
        "--images",
        s(&images),
        "--input-size",
        "28",
        "--resize",
        "none",
        "--mean",
        "0.286",
        "--std",
        "0.353",
        "--exit-types",
        "mlp1",
        "--exit-epochs",
        "3",
        "--k-min",
        "2",
        "--cache",
        s(&cache),
        "--out",
        s(&bundle),
        "--name",
        "fmnist-folder",
    ]);
    assert!(ok, "calibrate failed: {err}");
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("calibration.json")).unwrap()).unwrap();
    assert_eq!(rep["sizes"]["test"], 240, "{}", rep["sizes"]);
    let files = recorded(&bundle);
    assert_eq!(files.len(), 240);
    assert!(files.iter().any(|f| f.0.ends_with(".jpg")) && files.iter().any(|f| f.0.ends_with(".png")));

    let server = serve(&bundle, &["--initial-config", "full"]);
    let mut correct = 0;
    for (file, label, predicted, confidence) in &files {
        let body = std::fs::read(file).unwrap();
        let (status, v) = post(&format!("{}/v1/classify", server.data), &body);
        assert_eq!(status, 200, "{file}: {v}");
        assert_eq!(v["class"], *predicted, "{file}: {v}");
        assert_eq!(v["exit"], -1, "{file}: the full configuration");
        let got = v["confidence"].as_f64().unwrap() as f32;
        assert!((got - confidence).abs() < 2e-5, "{file}: {got} vs {confidence}");
        correct += usize::from(predicted == label);
        if file.ends_with(".png") {
            // A 28×28 PNG is the model's input as is: OIP with its pixels answers the same.
            let pixels = image::open(file).unwrap().into_luma8().into_raw();
            let req = serde_json::json!({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "UINT8", "data": pixels}]});
            let (status, v) =
                post(&format!("{}/v2/models/fmnist-folder/infer", server.data), req.to_string().as_bytes());
            assert_eq!(status, 200, "{v}");
            let label_out = v["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "label").unwrap();
            assert_eq!(label_out["data"][0], *predicted, "{file}");
        }
    }
    let accuracy = correct as f64 / files.len() as f64;
    let reported = rep["full_accuracy"]["test"].as_f64().unwrap();
    assert!((accuracy - reported).abs() < 1e-9, "served {accuracy} vs reported {reported}");
    assert!(accuracy > 0.8, "the shipped backbone classifies its own images: {accuracy}");

    // `dyce load` sends the same test split, prepared for the bundle's input, over OIP (both
    // encodings): 4 requests of 60 images send each once, so its accuracy is the report's.
    for encoding in ["json", "binary"] {
        let out = Command::new(env!("CARGO_BIN_EXE_dyce"))
            .args(["load", "--url", &server.data, "--images", s(&images), "--bundle", s(&bundle)])
            .args([
                "--profile",
                "constant:4",
                "--arrivals",
                "constant",
                "--duration",
                "1",
                "--images-per-request",
                "60",
            ])
            .args(["--encoding", encoding])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "dyce load: {err}");
        let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(sum["images_answered"], 240, "{encoding}: {sum}");
        let got = sum["accuracy"].as_f64().unwrap();
        assert!((got - reported).abs() < 1e-9, "{encoding}: load measured {got} vs reported {reported}");
    }
}

#[test]
fn bad_inputs_name_the_file_or_field_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.safetensors");
    export_backbone(&weights);
    let images = dir.path().join("images");
    let img = |p: &str, bytes: &[u8]| {
        let p = images.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    let mut png = Vec::new();
    image::GrayImage::new(28, 28)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    for c in 0..10 {
        for i in 0..3 {
            img(&format!("c{c}/{i}.png"), &png);
        }
    }
    let (cache, out) = (dir.path().join("cache"), dir.path().join("out"));
    let base = |extra: &[&str]| {
        let arch = if extra.contains(&"--arch") { &[][..] } else { &["--arch", "resnet20"][..] };
        let mut a = vec!["calibrate", "--weights", s(&weights), "--images", s(&images)];
        a.extend_from_slice(arch);
        a.extend_from_slice(&["--input-size", "28", "--mean", "0.286", "--std", "0.353", "--cache"]);
        a.extend_from_slice(&[s(&cache), "--out", s(&out)]);
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        // Progress logs off: what is left on stderr is the error, which must be one line.
        let out =
            Command::new(env!("CARGO_BIN_EXE_dyce")).args(&args).env("RUST_LOG", "warn").output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).trim().to_string())
    };
    // Too few images to search on.
    let (code, err) = run(base(&[]));
    assert_eq!(code, Some(2));
    assert!(err.contains("too few to search on") && err.lines().count() == 1, "{err}");
    // An empty class folder.
    std::fs::create_dir_all(images.join("c9x")).unwrap();
    let (code, err) = run(base(&[]));
    assert_eq!(code, Some(2));
    assert!(err.contains("c9x") && err.contains("empty class folder"), "{err}");
    std::fs::remove_dir(images.join("c9x")).unwrap();
    // A class count that does not match the checkpoint.
    img("extra/0.png", &png);
    let (code, err) = run(base(&[]));
    assert!(code == Some(2) && err.contains("11 class folders") && err.contains("10 outputs"), "{err}");
    std::fs::remove_dir_all(images.join("extra")).unwrap();
    // Wrong channels for the normalisation, a wrong architecture, a bad resize.
    for (extra, want) in [
        (&["--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2"][..], "need 1 values each"),
        (&["--arch", "resnet18"][..], "does not hold a resnet18"),
        (&["--resize", "big"][..], "--resize"),
        (&["--interpolation", "lanczos"][..], "--interpolation"),
        (&["--exit-recipes", "ce,kd"][..], "unknown exit recipe `kd`"),
        (&["--exit-cost-model", "/nonexistent/exit_cost.json"][..], "--exit-cost-model: reading"),
    ] {
        let (code, err) = run(base(extra));
        assert!(code == Some(2) && err.contains(want) && err.lines().count() == 1, "{extra:?}: {err}");
    }
    // An unreadable image, named with its path: enough images, one broken.
    for c in 0..10 {
        for i in 3..60 {
            img(&format!("c{c}/{i}.png"), &png);
        }
    }
    img("c3/broken.png", b"\x89PNG\r\n\x1a\nnot really");
    let (code, err) = run(base(&["--exit-types", "mlp1", "--exit-epochs", "1"]));
    assert!(code == Some(2) && err.contains("broken.png") && err.lines().count() == 1, "{err}");
}
