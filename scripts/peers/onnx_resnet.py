#!/usr/bin/env python3
"""ONNX Runtime peer for dyce's backbones.

Builds a torchvision-style ResNet (any number of stages, basic or bottleneck
blocks) as an ONNX graph from a JSON spec plus a safetensors file of weights
with torchvision tensor names, and runs it with onnxruntime on the CPU. A spec
with ``"family": "convnextv2"`` is a timm ConvNeXt-V2 instead (weights under
timm's names; the graph is built by onnx_convnext.py next to this file).

It serves two purposes for the Rust side:
  * ``reference``: an independent numeric reference (same weights, same
    network, a different engine);
  * ``bench``: onnxruntime throughput on the same weights and shapes.

Helpers: ``random-weights`` writes random weights in the same naming, and
``peak-matmul`` measures numpy float32 matmul GFLOP/s as a rough estimate of
the machine's peak.

The graph deliberately keeps BatchNormalization as separate nodes: onnxruntime
folds them into the convolutions itself, so the reference does not depend on
dyce's own BN-folding code.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx_convnext  # noqa: E402  (next to this file)

BN_EPS = 1e-5
# Opset 17 / IR 8 are old enough for any recent onnxruntime and new enough
# for everything used here (BatchNormalization-15 defaults to inference mode).
OPSET = 17
IR_VERSION = 8

EXPANSION = {"basic": 1, "bottleneck": 4}
BN_PARAMS = ("weight", "bias", "running_mean", "running_var")


class UsageError(Exception):
    """A problem with the user's inputs; reported as one line, exit code 1."""


# --------------------------------------------------------------------------
# Spec and layout
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    """One residual block: its tensor-name prefix and its shape parameters."""

    prefix: str  # e.g. "layer2.0"
    in_ch: int
    width: int  # inner width; output channels = width * expansion
    stride: int
    downsample: bool


def load_spec(path: str) -> dict:
    try:
        with open(path) as f:
            spec = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read spec {path}: {e}") from e
    if spec.get("family") == "convnextv2":
        onnx_convnext.check_spec(spec, path, UsageError)
        return spec
    if spec.get("family", "resnet") != "resnet":
        raise UsageError(f"spec {path}: unknown family {spec['family']!r}")
    for key in ("block", "depths", "widths", "stem", "stem_width",
                "in_channels", "num_classes"):
        if key not in spec:
            raise UsageError(f"spec {path}: missing key '{key}'")
    if spec["block"] not in EXPANSION:
        raise UsageError(f"spec {path}: block must be 'basic' or 'bottleneck', "
                         f"got {spec['block']!r}")
    if spec["stem"] not in ("small", "imagenet"):
        raise UsageError(f"spec {path}: stem must be 'small' or 'imagenet', "
                         f"got {spec['stem']!r}")
    if not spec["depths"] or len(spec["depths"]) != len(spec["widths"]):
        raise UsageError(f"spec {path}: depths and widths must be non-empty "
                         "and of equal length")
    return spec


def blocks(spec: dict) -> list[Block]:
    """The residual blocks in forward order, torchvision-style."""
    exp = EXPANSION[spec["block"]]
    in_ch = spec["stem_width"]
    out = []
    for i, (depth, width) in enumerate(zip(spec["depths"], spec["widths"])):
        for j in range(depth):
            # Only the first block of a stage changes resolution, and never
            # in the first stage (the stem already did).
            stride = 2 if (j == 0 and i > 0) else 1
            ds = stride != 1 or in_ch != width * exp
            out.append(Block(f"layer{i + 1}.{j}", in_ch, width, stride, ds))
            in_ch = width * exp
    return out


def block_convs(spec: dict, b: Block) -> list[tuple[int, int, int, int, int]]:
    """(conv index, out_ch, in_ch, kernel, stride) of each main-path conv.

    torchvision v1.5: the stride sits on the first 3x3 conv (conv1 of a basic
    block, conv2 of a bottleneck).
    """
    if spec["block"] == "basic":
        return [(1, b.width, b.in_ch, 3, b.stride), (2, b.width, b.width, 3, 1)]
    return [(1, b.width, b.in_ch, 1, 1), (2, b.width, b.width, 3, b.stride),
            (3, b.width * 4, b.width, 1, 1)]


def expected_shapes(spec: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor the network needs, with its shape, in forward order."""
    if spec.get("family") == "convnextv2":
        return onnx_convnext.expected_shapes(spec)
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, ch: int) -> None:
        for p in BN_PARAMS:
            shapes[f"{prefix}.{p}"] = (ch,)

    k = 7 if spec["stem"] == "imagenet" else 3
    shapes["conv1.weight"] = (spec["stem_width"], spec["in_channels"], k, k)
    bn("bn1", spec["stem_width"])
    feat = spec["stem_width"]
    for b in blocks(spec):
        for idx, o, i, kk, _ in block_convs(spec, b):
            shapes[f"{b.prefix}.conv{idx}.weight"] = (o, i, kk, kk)
            bn(f"{b.prefix}.bn{idx}", o)
        feat = b.width * EXPANSION[spec["block"]]
        if b.downsample:
            shapes[f"{b.prefix}.downsample.0.weight"] = (feat, b.in_ch, 1, 1)
            bn(f"{b.prefix}.downsample.1", feat)
    shapes["fc.weight"] = (spec["num_classes"], feat)
    shapes["fc.bias"] = (spec["num_classes"],)
    return shapes


def load_weights(spec: dict, path: str) -> dict[str, np.ndarray]:
    """Load and check exactly the tensors the network needs (others ignored)."""
    from safetensors import safe_open

    try:
        f = safe_open(path, framework="numpy")
    except Exception as e:  # safetensors raises several unrelated types
        raise UsageError(f"cannot read weights {path}: {e}") from e
    with f:
        present = set(f.keys())
        out = {}
        for name, shape in expected_shapes(spec).items():
            if name not in present:
                raise UsageError(f"missing tensor '{name}' in weights file {path}")
            t = f.get_tensor(name)
            if tuple(t.shape) != shape:
                raise UsageError(f"tensor '{name}' in {path} has shape "
                                 f"{list(t.shape)}, expected {list(shape)}")
            out[name] = np.ascontiguousarray(t, dtype=np.float32)
    return out


# --------------------------------------------------------------------------
# ONNX graph
# --------------------------------------------------------------------------

def build_model(spec: dict, weights: dict[str, np.ndarray],
                height: int | None = None, width: int | None = None):
    """The ResNet as an onnx.ModelProto.

    The batch dimension is always symbolic ("N"); height/width are symbolic
    unless given (the benchmark fixes them, the reference keeps them open).
    """
    if spec.get("family") == "convnextv2":
        return onnx_convnext.build_model(spec, weights, height, width, OPSET, IR_VERSION)
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = []
    counter = [0]

    def fresh(tag: str) -> str:
        counter[0] += 1
        return f"{tag}_{counter[0]}"

    def conv(x: str, w: str, stride: int, pad: int) -> str:
        k = weights[w].shape[-1]
        y = fresh("conv")
        nodes.append(helper.make_node(
            "Conv", [x, w], [y], name=y, kernel_shape=[k, k],
            strides=[stride, stride], pads=[pad] * 4))
        return y

    def bn(x: str, prefix: str) -> str:
        y = fresh("bn")
        nodes.append(helper.make_node(
            "BatchNormalization", [x] + [f"{prefix}.{p}" for p in BN_PARAMS],
            [y], name=y, epsilon=BN_EPS))
        return y

    def relu(x: str) -> str:
        y = fresh("relu")
        nodes.append(helper.make_node("Relu", [x], [y], name=y))
        return y

    # Stem.
    if spec["stem"] == "imagenet":
        x = relu(bn(conv("input", "conv1.weight", 2, 3), "bn1"))
        y = fresh("maxpool")
        nodes.append(helper.make_node("MaxPool", [x], [y], name=y,
                                      kernel_shape=[3, 3], strides=[2, 2],
                                      pads=[1, 1, 1, 1]))
        x = y
    else:
        x = relu(bn(conv("input", "conv1.weight", 1, 1), "bn1"))

    # Residual stages.
    for b in blocks(spec):
        h = x
        convs = block_convs(spec, b)
        for n, (idx, _, _, k, stride) in enumerate(convs):
            h = bn(conv(h, f"{b.prefix}.conv{idx}.weight", stride, k // 2),
                   f"{b.prefix}.bn{idx}")
            if n + 1 < len(convs):
                h = relu(h)
        if b.downsample:
            sc = bn(conv(x, f"{b.prefix}.downsample.0.weight", b.stride, 0),
                    f"{b.prefix}.downsample.1")
        else:
            sc = x
        s = fresh("add")
        nodes.append(helper.make_node("Add", [h, sc], [s], name=s))
        x = relu(s)

    # Head.
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"],
                                  ["logits"], name="fc", transB=1))

    inp = helper.make_tensor_value_info(
        "input", TensorProto.FLOAT,
        ["N", spec["in_channels"], height or "H", width or "W"])
    out = helper.make_tensor_value_info(
        "logits", TensorProto.FLOAT, ["N", spec["num_classes"]])
    inits = [numpy_helper.from_array(weights[name], name)
             for name in expected_shapes(spec)]
    graph = helper.make_graph(nodes, "dyce_resnet", [inp], [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="dyce/scripts/peers/onnx_resnet.py")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def make_session(model, threads: int):
    """A CPU-EP session with full graph optimisation and `threads` intra-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    # One model, one request at a time: no parallelism between nodes.
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), sess_options=so,
                                providers=["CPUExecutionProvider"])


def available_cpus() -> int:
    return len(os.sched_getaffinity(0))


# --------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------

def cmd_reference(args: argparse.Namespace) -> None:
    from safetensors.numpy import load_file, save_file

    spec = load_spec(args.spec)
    weights = load_weights(spec, args.weights)
    try:
        tensors = load_file(args.input)
    except Exception as e:
        raise UsageError(f"cannot read input {args.input}: {e}") from e
    if "input" not in tensors:
        raise UsageError(f"missing tensor 'input' in input file {args.input}")
    x = np.ascontiguousarray(tensors["input"], dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != spec["in_channels"]:
        raise UsageError(f"input has shape {list(x.shape)}, expected "
                         f"[N, {spec['in_channels']}, H, W]")

    model = build_model(spec, weights)
    if args.onnx_out:
        import onnx
        onnx.save(model, args.onnx_out)
    sess = make_session(model, args.threads or available_cpus())
    (logits,) = sess.run(["logits"], {"input": x})
    save_file({"logits": np.ascontiguousarray(logits, dtype=np.float32)}, args.output)
    print(f"wrote logits {list(logits.shape)} to {args.output}")


def cmd_bench(args: argparse.Namespace) -> None:
    import onnxruntime as ort

    spec = load_spec(args.spec)
    weights = load_weights(spec, args.weights)
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError as e:
        raise UsageError(f"--batches must be comma-separated integers: {e}") from e
    if not batches or min(batches) < 1:
        raise UsageError("--batches must list positive integers")
    threads = args.threads or available_cpus()

    model = build_model(spec, weights, args.height, args.width)
    sess = make_session(model, threads)
    print(f"onnxruntime {ort.__version__}  threads={threads}  "
          f"(cpus available: {available_cpus()})  "
          f"input [N,{spec['in_channels']},{args.height},{args.width}]  "
          f"spec {args.spec}", flush=True)

    rng = np.random.default_rng(0)
    results = []
    for b in batches:
        x = rng.standard_normal(
            (b, spec["in_channels"], args.height, args.width)).astype(np.float32)
        feed = {"input": x}

        # Warm-up: first runs pay for allocation and kernel selection.
        t0 = time.perf_counter()
        n = 0
        while n < 2 or time.perf_counter() - t0 < args.warmup_seconds:
            sess.run(["logits"], feed)
            n += 1

        runs = []
        for _ in range(args.repeats):
            iters = 0
            t0 = time.perf_counter()
            while True:
                sess.run(["logits"], feed)
                iters += 1
                dt = time.perf_counter() - t0
                if dt >= args.min_seconds:
                    break
            runs.append(iters * b / dt)
        med = statistics.median(runs)
        results.append({"batch": b, "img_per_s": med, "runs": runs})
        print(f"  batch {b:>4}: {med:10.1f} img/s  "
              f"({1000.0 * b / med:8.2f} ms/batch, "
              f"min {min(runs):.1f}, max {max(runs):.1f}, {len(runs)} runs)",
              flush=True)

    print()
    print(f"{'batch':>6} {'img/s':>12} {'ms/batch':>10}")
    for r in results:
        print(f"{r['batch']:>6} {r['img_per_s']:>12.1f} "
              f"{1000.0 * r['batch'] / r['img_per_s']:>10.2f}")
    print(f"(onnxruntime {ort.__version__}, threads={threads})")

    if args.json:
        doc = {
            "peer": "onnxruntime",
            "version": ort.__version__,
            "threads": threads,
            "spec": spec,
            "height": args.height,
            "width": args.width,
            "repeats": args.repeats,
            "min_seconds": args.min_seconds,
            "results": results,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")


def random_weights(spec: dict, seed: int) -> dict[str, np.ndarray]:
    """Random weights with torchvision names (also used by the tests)."""
    if spec.get("family") == "convnextv2":
        return onnx_convnext.random_weights(spec, seed)
    rng = np.random.default_rng(seed)
    shapes = expected_shapes(spec)
    out = {}
    for name, shape in shapes.items():
        if name in ("fc.weight", "fc.bias"):
            # torch.nn.Linear's default init: U(+-1/sqrt(in_features)).
            bound = 1.0 / np.sqrt(shapes["fc.weight"][1])
            t = rng.uniform(-bound, bound, shape)
        elif name.endswith(".weight") and len(shape) == 4:
            # He-normal (fan_in) keeps activation scale roughly constant.
            fan_in = shape[1] * shape[2] * shape[3]
            t = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif name.endswith(".weight"):  # BN gamma
            t = 1.0 + rng.uniform(-0.1, 0.1, shape)
        elif name.endswith(".bias"):  # BN beta
            t = rng.uniform(-0.1, 0.1, shape)
        elif name.endswith(".running_mean"):
            t = rng.uniform(-0.1, 0.1, shape)
        elif name.endswith(".running_var"):
            t = rng.uniform(0.5, 1.5, shape)
        else:  # pragma: no cover - expected_shapes only yields the above
            raise AssertionError(name)
        out[name] = t.astype(np.float32)
    return out


def cmd_random_weights(args: argparse.Namespace) -> None:
    from safetensors.numpy import save_file

    spec = load_spec(args.spec)
    w = random_weights(spec, args.seed)
    save_file(w, args.out)
    n = sum(t.size for t in w.values())
    print(f"wrote {len(w)} tensors ({n:,} parameters) to {args.out}")


def blas_description() -> str:
    """Which BLAS numpy uses, as one or more lines of text."""
    lines = []
    try:
        cfg = np.show_config(mode="dicts")  # numpy >= 1.25
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        lines.append(f"numpy {np.__version__} built with BLAS: "
                     f"{blas.get('name', '?')} {blas.get('version', '')}".rstrip())
        simd = cfg.get("SIMD Extensions", {})
        if simd:
            lines.append(f"numpy SIMD baseline {simd.get('baseline')}, "
                         f"found {simd.get('found')}")
    except Exception:
        lines.append(f"numpy {np.__version__} (show_config(mode='dicts') unavailable)")
    try:
        # threadpoolctl (optional) reports the BLAS actually loaded at runtime,
        # including the core type OpenBLAS picked and its thread count.
        from threadpoolctl import threadpool_info
        for info in threadpool_info():
            if info.get("user_api") == "blas":
                lines.append(
                    f"runtime BLAS: {info.get('internal_api')} "
                    f"{info.get('version')} arch={info.get('architecture')} "
                    f"threads={info.get('num_threads')} "
                    f"({info.get('filepath')})")
    except ImportError:
        lines.append("(install threadpoolctl to see the BLAS core type and "
                     "thread count picked at runtime)")
    # These are read, never changed: the reader should know whether the
    # number below was measured under them.
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        lines.append(f"{var}={os.environ.get(var, '<unset>')}")
    return "\n".join(lines)


def cmd_peak_matmul(args: argparse.Namespace) -> None:
    n = args.n
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    flop = 2.0 * n ** 3

    info = blas_description()
    print(info)
    print(f"cpus available: {available_cpus()}  machine: {platform.machine()}")

    np.matmul(a, b, out=c)  # warm-up (thread pool start, page faults)
    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        runs.append(flop / (time.perf_counter() - t0) / 1e9)
    med = statistics.median(runs)
    print(f"float32 matmul {n}x{n}x{n}: median {med:.1f} GFLOP/s "
          f"(min {min(runs):.1f}, max {max(runs):.1f}, {len(runs)} runs)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": n, "gflop_per_s": med, "runs": runs,
                       "numpy": np.__version__, "blas": info.splitlines(),
                       "cpus": available_cpus()}, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def positive_float(s: str) -> float:
    v = float(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="onnxruntime peer for dyce ResNets: reference logits, "
                    "throughput benchmark, random weights, matmul peak.")
    sub = p.add_subparsers(dest="cmd", required=True)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--spec", required=True,
                        help="JSON network spec (block, depths, widths, stem, "
                             "stem_width, in_channels, num_classes)")
        sp.add_argument("--weights", required=True,
                        help="safetensors file of f32 weights with torchvision names")

    r = sub.add_parser("reference", help="run the network with onnxruntime and "
                                         "write the logits")
    model_args(r)
    r.add_argument("--input", required=True,
                   help="safetensors file holding tensor 'input' [N, C, H, W] f32")
    r.add_argument("--output", required=True,
                   help="safetensors file to write tensor 'logits' [N, classes] f32 to")
    r.add_argument("--onnx-out", default=None,
                   help="also save the ONNX model (dynamic N, H, W) to this path")
    r.add_argument("--threads", type=positive_int, default=None,
                   help="intra-op threads (default: CPUs available to the process)")
    r.set_defaults(func=cmd_reference)

    b = sub.add_parser("bench", help="measure onnxruntime throughput (img/s)")
    model_args(b)
    b.add_argument("--height", type=positive_int, required=True, help="input height")
    b.add_argument("--width", type=positive_int, required=True, help="input width")
    b.add_argument("--batches", default="1,8,32",
                   help="comma-separated batch sizes (default 1,8,32)")
    b.add_argument("--threads", type=positive_int, default=None,
                   help="intra-op threads (default: CPUs available to the process)")
    b.add_argument("--repeats", type=positive_int, default=7,
                   help="timed runs per batch size; the median is reported (default 7)")
    b.add_argument("--min-seconds", type=positive_float, default=1.0,
                   help="minimum duration of one timed run, in seconds (default 1.0)")
    b.add_argument("--warmup-seconds", type=float, default=0.5,
                   help="warm-up time per batch size before timing, at least "
                        "2 runs (default 0.5)")
    b.add_argument("--json", default=None, help="write the results as JSON to this path")
    b.set_defaults(func=cmd_bench)

    w = sub.add_parser("random-weights", help="write random weights with torchvision names")
    w.add_argument("--spec", required=True, help="JSON network spec")
    w.add_argument("--out", required=True, help="safetensors file to write")
    w.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    w.set_defaults(func=cmd_random_weights)

    m = sub.add_parser("peak-matmul", help="numpy float32 matmul GFLOP/s, a rough "
                                           "machine-peak estimate")
    m.add_argument("--n", type=positive_int, default=2048,
                   help="matrix size n for an n x n x n product (default 2048)")
    m.add_argument("--repeats", type=positive_int, default=7,
                   help="timed products; the median is reported (default 7)")
    m.add_argument("--json", default=None, help="write the result as JSON to this path")
    m.set_defaults(func=cmd_peak_matmul)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
