"""Tests for scripts/peers/onnx_resnet.py.

Run with:  python3 -m pytest scripts/peers/test_onnx_resnet.py

The onnxruntime output is checked against a pure-numpy forward pass written
here from the architecture description alone (it does not reuse the layout or
graph code of onnx_resnet.py), so a mistake in one is unlikely to be repeated
in the other. The CLI is exercised through subprocesses, as users run it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

SCRIPT = Path(__file__).resolve().parent / "onnx_resnet.py"

BASIC_SPEC = {"block": "basic", "depths": [1, 1], "widths": [4, 8],
              "stem": "small", "stem_width": 4, "in_channels": 1,
              "num_classes": 3}
BOTTLENECK_SPEC = {"block": "bottleneck", "depths": [1, 1], "widths": [4, 8],
                   "stem": "imagenet", "stem_width": 4, "in_channels": 3,
                   "num_classes": 5}


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


# ---------------------------------------------------------------------------
# Independent numpy reference (float64 throughout)
# ---------------------------------------------------------------------------

def np_conv(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Convolution via im2col: gather every kernel tap, then one einsum."""
    n, c, h, wd = x.shape
    o, c2, kh, kw = w.shape
    assert c == c2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i:i + stride * oh:stride,
                                  j:j + stride * ow:stride]
    return np.einsum("ncijyx,ocij->noyx", cols, w)


def np_bn(x: np.ndarray, wt: dict, prefix: str) -> np.ndarray:
    g, b, m, v = (wt[f"{prefix}.{p}"].astype(np.float64)[None, :, None, None]
                  for p in ("weight", "bias", "running_mean", "running_var"))
    return (x - m) / np.sqrt(v + 1e-5) * g + b


def np_maxpool3s2p1(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    oh, ow = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
    out = np.full((n, c, oh, ow), -np.inf)
    for i in range(3):
        for j in range(3):
            out = np.maximum(out, xp[:, :, i:i + 2 * oh:2, j:j + 2 * ow:2])
    return out


def np_forward(spec: dict, wt: dict, x: np.ndarray) -> np.ndarray:
    relu = lambda t: np.maximum(t, 0.0)  # noqa: E731
    W = {k: v.astype(np.float64) for k, v in wt.items()}
    x = x.astype(np.float64)
    if spec["stem"] == "imagenet":
        x = np_maxpool3s2p1(relu(np_bn(np_conv(x, W["conv1.weight"], 2, 3), W, "bn1")))
    else:
        x = relu(np_bn(np_conv(x, W["conv1.weight"], 1, 1), W, "bn1"))
    for si, depth in enumerate(spec["depths"]):
        for bi in range(depth):
            p = f"layer{si + 1}.{bi}"
            s = 2 if (si > 0 and bi == 0) else 1
            if spec["block"] == "basic":
                h = relu(np_bn(np_conv(x, W[f"{p}.conv1.weight"], s, 1), W, f"{p}.bn1"))
                h = np_bn(np_conv(h, W[f"{p}.conv2.weight"], 1, 1), W, f"{p}.bn2")
            else:
                h = relu(np_bn(np_conv(x, W[f"{p}.conv1.weight"], 1, 0), W, f"{p}.bn1"))
                h = relu(np_bn(np_conv(h, W[f"{p}.conv2.weight"], s, 1), W, f"{p}.bn2"))
                h = np_bn(np_conv(h, W[f"{p}.conv3.weight"], 1, 0), W, f"{p}.bn3")
            # Presence of the downsample tensors is itself checked against
            # the rule stride != 1 or channels change.
            needs_ds = s != 1 or x.shape[1] != h.shape[1]
            assert needs_ds == (f"{p}.downsample.0.weight" in W), p
            if needs_ds:
                sc = np_bn(np_conv(x, W[f"{p}.downsample.0.weight"], s, 0),
                           W, f"{p}.downsample.1")
            else:
                sc = x
            x = relu(h + sc)
    feat = x.mean(axis=(2, 3))
    return feat @ W["fc.weight"].T + W["fc.bias"]


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

def make_case(tmp_path: Path, spec: dict, shape: tuple[int, ...], seed: int):
    spec_f = tmp_path / "spec.json"
    spec_f.write_text(json.dumps(spec))
    w_f = tmp_path / "w.safetensors"
    run_cli("random-weights", "--spec", spec_f, "--out", w_f, "--seed", seed)
    x = np.random.default_rng(seed + 100).standard_normal(shape).astype(np.float32)
    x_f = tmp_path / "x.safetensors"
    save_file({"input": x}, str(x_f))
    return spec_f, w_f, x_f, x


def assert_close_rel(got: np.ndarray, want: np.ndarray, rel: float = 1e-4) -> None:
    # Relative to the output's scale: element-wise relative error is
    # meaningless for logits that happen to be near zero.
    err = np.max(np.abs(got - want)) / np.max(np.abs(want))
    assert err <= rel, f"max relative error {err:.3g} > {rel}"


@pytest.mark.parametrize("spec,shape", [
    (BASIC_SPEC, (2, 1, 12, 12)),
    (BOTTLENECK_SPEC, (2, 3, 32, 32)),
], ids=["basic-small-stem", "bottleneck-imagenet-stem"])
def test_reference_matches_numpy(tmp_path, spec, shape):
    spec_f, w_f, x_f, x = make_case(tmp_path, spec, shape, seed=7)
    y_f = tmp_path / "y.safetensors"
    onnx_f = tmp_path / "model.onnx"
    run_cli("reference", "--spec", spec_f, "--weights", w_f, "--input", x_f,
            "--output", y_f, "--onnx-out", onnx_f)
    got = load_file(str(y_f))["logits"]
    assert got.dtype == np.float32
    assert got.shape == (shape[0], spec["num_classes"])
    want = np_forward(spec, load_file(str(w_f)), x)
    assert_close_rel(got, want)
    assert onnx_f.stat().st_size > 0


def test_dynamic_batch_and_extra_tensors_ignored(tmp_path):
    # Extra tensors (early exits, BN counters) must be ignored, and the same
    # graph must serve any batch size.
    spec_f, w_f, _, _ = make_case(tmp_path, BASIC_SPEC, (1, 1, 8, 8), seed=3)
    w = load_file(str(w_f))
    w["exits.0.fc.weight"] = np.ones((3, 4), np.float32)
    w["bn1.num_batches_tracked"] = np.array(5, dtype=np.int64)
    save_file(w, str(w_f))
    for n in (1, 5):
        x = np.random.default_rng(n).standard_normal((n, 1, 10, 10)).astype(np.float32)
        x_f, y_f = tmp_path / f"x{n}.safetensors", tmp_path / f"y{n}.safetensors"
        save_file({"input": x}, str(x_f))
        run_cli("reference", "--spec", spec_f, "--weights", w_f, "--input", x_f,
                "--output", y_f)
        assert_close_rel(load_file(str(y_f))["logits"], np_forward(BASIC_SPEC, w, x))


def test_missing_tensor_fails_naming_it(tmp_path):
    spec_f, w_f, x_f, _ = make_case(tmp_path, BOTTLENECK_SPEC, (1, 3, 32, 32), seed=1)
    w = load_file(str(w_f))
    missing = "layer2.0.downsample.1.running_var"
    del w[missing]
    save_file(w, str(w_f))
    proc = run_cli("reference", "--spec", spec_f, "--weights", w_f, "--input", x_f,
                   "--output", tmp_path / "y.safetensors", check=False)
    assert proc.returncode != 0
    msg = proc.stderr.strip()
    assert missing in msg
    assert len(msg.splitlines()) == 1, msg
    assert not (tmp_path / "y.safetensors").exists()


def test_bench_json(tmp_path):
    spec_f, w_f, _, _ = make_case(tmp_path, BASIC_SPEC, (1, 1, 8, 8), seed=2)
    out = tmp_path / "bench.json"
    proc = run_cli("bench", "--spec", spec_f, "--weights", w_f, "--height", 16,
                   "--width", 16, "--batches", "1,4", "--threads", 1,
                   "--repeats", 2, "--min-seconds", 0.05, "--warmup-seconds", 0.01,
                   "--json", out)
    assert "onnxruntime" in proc.stdout and "threads=1" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["peer"] == "onnxruntime" and doc["threads"] == 1 and doc["version"]
    assert [r["batch"] for r in doc["results"]] == [1, 4]
    for r in doc["results"]:
        assert len(r["runs"]) == 2 and r["img_per_s"] > 0


# ---------------------------------------------------------------------------
# ConvNeXt-V2 (onnx_convnext.py): the same independent-reference approach
# ---------------------------------------------------------------------------

CONVNEXT_SPEC = {"family": "convnextv2", "depths": [1, 2], "widths": [12, 20],
                 "stem_patch": 2, "in_channels": 3, "num_classes": 7}


def np_ln_channels(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """LayerNorm over axis 1 of NCHW (timm's LayerNorm2d), eps 1e-6."""
    mu = x.mean(axis=1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-6) * g[None, :, None, None] + b[None, :, None, None]


def np_depthwise(x: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    c = x.shape[1]
    out = np.stack([np_conv(x[:, i:i + 1], w[i:i + 1], 1, w.shape[-1] // 2)[:, 0] for i in range(c)], axis=1)
    return out + bias[None, :, None, None]


def np_convnext(spec: dict, w: dict, x: np.ndarray) -> np.ndarray:
    from math import erf
    gelu = np.vectorize(lambda v: 0.5 * v * (1.0 + erf(v / np.sqrt(2.0))))
    w = {k: v.astype(np.float64) for k, v in w.items()}
    p = spec["stem_patch"]
    y = np_conv(x, w["stem.0.weight"], p, 0) + w["stem.0.bias"][None, :, None, None]
    y = np_ln_channels(y, w["stem.1.weight"], w["stem.1.bias"])
    for s, depth in enumerate(spec["depths"]):
        if s > 0:
            y = np_ln_channels(y, w[f"stages.{s}.downsample.0.weight"], w[f"stages.{s}.downsample.0.bias"])
            y = np_conv(y, w[f"stages.{s}.downsample.1.weight"], 2, 0) \
                + w[f"stages.{s}.downsample.1.bias"][None, :, None, None]
        for j in range(depth):
            pre = f"stages.{s}.blocks.{j}"
            h = np_depthwise(y, w[f"{pre}.conv_dw.weight"], w[f"{pre}.conv_dw.bias"])
            h = np_ln_channels(h, w[f"{pre}.norm.weight"], w[f"{pre}.norm.bias"])
            h = np.einsum("nchw,oc->nohw", h, w[f"{pre}.mlp.fc1.weight"]) + w[f"{pre}.mlp.fc1.bias"][None, :, None, None]
            h = gelu(h)
            gx = np.sqrt((h ** 2).sum(axis=(2, 3), keepdims=True))
            nx = gx / (gx.mean(axis=1, keepdims=True) + 1e-6)
            gam = w[f"{pre}.mlp.grn.weight"][None, :, None, None]
            h = h + w[f"{pre}.mlp.grn.bias"][None, :, None, None] + gam * h * nx
            h = np.einsum("nchw,oc->nohw", h, w[f"{pre}.mlp.fc2.weight"]) + w[f"{pre}.mlp.fc2.bias"][None, :, None, None]
            y = y + h
    pooled = y.mean(axis=(2, 3))
    mu = pooled.mean(axis=1, keepdims=True)
    var = ((pooled - mu) ** 2).mean(axis=1, keepdims=True)
    pooled = (pooled - mu) / np.sqrt(var + 1e-6) * w["head.norm.weight"] + w["head.norm.bias"]
    return pooled @ w["head.fc.weight"].T + w["head.fc.bias"]


def test_convnext_reference_matches_numpy(tmp_path):
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(CONVNEXT_SPEC))
    weights = tmp_path / "w.safetensors"
    run_cli("random-weights", "--spec", spec_path, "--out", weights, "--seed", "3")
    x = np.random.default_rng(5).standard_normal((2, 3, 17, 17)).astype(np.float32)
    save_file({"input": x}, str(tmp_path / "x.safetensors"))
    run_cli("reference", "--spec", spec_path, "--weights", weights,
            "--input", tmp_path / "x.safetensors", "--output", tmp_path / "y.safetensors")
    got = load_file(str(tmp_path / "y.safetensors"))["logits"]
    want = np_convnext(CONVNEXT_SPEC, load_file(str(weights)), x.astype(np.float64))
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 1e-4, err
