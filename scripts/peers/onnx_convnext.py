"""ConvNeXt-V2 for the ONNX Runtime peer (used by onnx_resnet.py).

Builds timm's ``convnextv2_*`` as an ONNX graph from a JSON spec (``"family":
"convnextv2"``, ``depths``, ``widths``, ``stem_patch``, ``in_channels``,
``num_classes``) and weights under timm's tensor names, the way timm computes
it: the block's MLP runs channels-last (Transpose, LayerNormalization over the
last axis, MatMul, exact GELU from Erf, GRN from ReduceSumSquare/ReduceMean),
so nothing here shares code or layout with dyce's kernels.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6
DW_KERNEL = 7
MLP_RATIO = 4
KEYS = ("depths", "widths", "stem_patch", "in_channels", "num_classes")


def check_spec(spec: dict, path: str, usage_error) -> None:
    for key in KEYS:
        if key not in spec:
            raise usage_error(f"spec {path}: missing key '{key}'")
    if not spec["depths"] or len(spec["depths"]) != len(spec["widths"]):
        raise usage_error(f"spec {path}: depths and widths must be non-empty and of equal length")


def layout(spec: dict) -> list[tuple[str, int, int, int | None]]:
    """(prefix, stage, channels, downsample input channels or None) per block."""
    out = []
    for s, (depth, width) in enumerate(zip(spec["depths"], spec["widths"])):
        for j in range(depth):
            ds = spec["widths"][s - 1] if (s > 0 and j == 0) else None
            out.append((f"stages.{s}.blocks.{j}", s, width, ds))
    return out


def expected_shapes(spec: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor the network needs under timm's names, with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}

    def norm(prefix: str, c: int) -> None:
        shapes[f"{prefix}.weight"] = (c,)
        shapes[f"{prefix}.bias"] = (c,)

    p, w0 = spec["stem_patch"], spec["widths"][0]
    shapes["stem.0.weight"] = (w0, spec["in_channels"], p, p)
    shapes["stem.0.bias"] = (w0,)
    norm("stem.1", w0)
    for prefix, s, c, ds in layout(spec):
        if ds is not None:
            norm(f"stages.{s}.downsample.0", ds)
            shapes[f"stages.{s}.downsample.1.weight"] = (c, ds, 2, 2)
            shapes[f"stages.{s}.downsample.1.bias"] = (c,)
        shapes[f"{prefix}.conv_dw.weight"] = (c, 1, DW_KERNEL, DW_KERNEL)
        shapes[f"{prefix}.conv_dw.bias"] = (c,)
        norm(f"{prefix}.norm", c)
        h = c * MLP_RATIO
        shapes[f"{prefix}.mlp.fc1.weight"] = (h, c)
        shapes[f"{prefix}.mlp.fc1.bias"] = (h,)
        norm(f"{prefix}.mlp.grn", h)
        shapes[f"{prefix}.mlp.fc2.weight"] = (c, h)
        shapes[f"{prefix}.mlp.fc2.bias"] = (c,)
    f = spec["widths"][-1]
    norm("head.norm", f)
    shapes["head.fc.weight"] = (spec["num_classes"], f)
    shapes["head.fc.bias"] = (spec["num_classes"],)
    return shapes


def build_model(spec: dict, weights: dict[str, np.ndarray], height, width, opset: int, ir_version: int):
    """The ConvNeXt-V2 as an onnx.ModelProto (batch symbolic; H, W symbolic unless given)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = []
    inits = {}
    counter = [0]

    def fresh(tag: str) -> str:
        counter[0] += 1
        return f"{tag}_{counter[0]}"

    def node(op: str, inputs: list[str], **attrs) -> str:
        y = fresh(op.lower())
        nodes.append(helper.make_node(op, inputs, [y], name=y, **attrs))
        return y

    def const(name: str, value: np.ndarray) -> str:
        inits[name] = np.ascontiguousarray(value, dtype=np.float32)
        return name

    def conv(x: str, prefix: str, stride: int, pad: int, groups: int = 1) -> str:
        k = weights[f"{prefix}.weight"].shape[-1]
        return node("Conv", [x, const(f"{prefix}.weight", weights[f"{prefix}.weight"]),
                             const(f"{prefix}.bias", weights[f"{prefix}.bias"])],
                    kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=groups)

    def ln_last(x: str, prefix: str) -> str:
        return node("LayerNormalization", [x, const(f"{prefix}.weight", weights[f"{prefix}.weight"]),
                                           const(f"{prefix}.bias", weights[f"{prefix}.bias"])],
                    axis=-1, epsilon=EPS)

    def to_nhwc(x: str) -> str:
        return node("Transpose", [x], perm=[0, 2, 3, 1])

    def to_nchw(x: str) -> str:
        return node("Transpose", [x], perm=[0, 3, 1, 2])

    def linear(x: str, prefix: str) -> str:
        wt = const(f"{prefix}.weight_t", weights[f"{prefix}.weight"].T)
        return node("Add", [node("MatMul", [x, wt]), const(f"{prefix}.bias", weights[f"{prefix}.bias"])])

    half = const("half", np.array(0.5))
    one = const("one", np.array(1.0))
    inv_sqrt2 = const("inv_sqrt2", np.array(1.0 / np.sqrt(2.0)))
    eps = const("eps", np.array(EPS))

    def gelu(x: str) -> str:
        # 0.5·x·(1 + erf(x/√2)): PyTorch's default GELU (onnxruntime fuses it into one node).
        e = node("Erf", [node("Mul", [x, inv_sqrt2])])
        return node("Mul", [node("Mul", [x, half]), node("Add", [e, one])])

    def grn(x: str, prefix: str) -> str:
        # timm's GlobalResponseNorm on NHWC: ‖x‖₂ over H, W; divided by its mean over C.
        gx = node("Sqrt", [node("ReduceSumSquare", [x], axes=[1, 2], keepdims=1)])
        nx = node("Div", [gx, node("Add", [node("ReduceMean", [gx], axes=[-1], keepdims=1), eps])])
        g = const(f"{prefix}.weight", weights[f"{prefix}.weight"])
        b = const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return node("Add", [node("Add", [x, b]), node("Mul", [g, node("Mul", [x, nx])])])

    p = spec["stem_patch"]
    x = to_nchw(ln_last(to_nhwc(conv("input", "stem.0", p, 0)), "stem.1"))
    for prefix, s, _c, ds in layout(spec):
        if ds is not None:
            x = to_nchw(ln_last(to_nhwc(x), f"stages.{s}.downsample.0"))
            x = conv(x, f"stages.{s}.downsample.1", 2, 0)
        c = weights[f"{prefix}.conv_dw.weight"].shape[0]
        h = to_nhwc(conv(x, f"{prefix}.conv_dw", 1, DW_KERNEL // 2, groups=c))
        h = ln_last(h, f"{prefix}.norm")
        h = grn(gelu(linear(h, f"{prefix}.mlp.fc1")), f"{prefix}.mlp.grn")
        h = to_nchw(linear(h, f"{prefix}.mlp.fc2"))
        x = node("Add", [h, x])
    pooled = node("Flatten", [node("GlobalAveragePool", [x])], axis=1)
    normed = ln_last(pooled, "head.norm")
    nodes.append(helper.make_node("Gemm", [normed, const("head.fc.weight", weights["head.fc.weight"]),
                                           const("head.fc.bias", weights["head.fc.bias"])],
                                  ["logits"], name="fc", transB=1))
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                        ["N", spec["in_channels"], height or "H", width or "W"])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", spec["num_classes"]])
    graph = helper.make_graph(nodes, "dyce_convnextv2", [inp], [out],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="dyce/scripts/peers/onnx_convnext.py")
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


def random_weights(spec: dict, seed: int) -> dict[str, np.ndarray]:
    """Random weights under timm's names (for the script's own tests)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in expected_shapes(spec).items():
        if len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            t = rng.uniform(-1, 1, shape) * np.sqrt(6.0 / fan_in)
        elif len(shape) == 2:
            t = rng.uniform(-1, 1, shape) / np.sqrt(shape[1])
        elif name.endswith(".weight"):
            t = rng.uniform(0.6, 1.4, shape) if ".grn." not in name else rng.uniform(-0.5, 0.5, shape)
        else:
            t = rng.uniform(-0.1, 0.1, shape)
        out[name] = t.astype(np.float32)
    return out
