#!/usr/bin/env python3
"""Talks to a dyce runtime's gRPC port with Triton's `tritonclient.grpc`, unchanged.

`check`: live, ready, server and model metadata, then the first --images Fashion-MNIST test
images classified three ways: over gRPC with raw binary contents (tritonclient's own
encoding), over gRPC with typed contents (`uint_contents`, built with the client's protobuf
module), and over HTTP with `tritonclient.http` for reference. Prints one JSON line.

`flood`: --requests concurrent one-image infers; prints the count of each gRPC status code,
so a test can see a full queue answer RESOURCE_EXHAUSTED.

`peak`: a rough gRPC peak: --in-flight one-image raw infers kept outstanding for --seconds;
prints answered images/s and the client's own CPU seconds (Python is often the bottleneck).
"""

import argparse
import gzip
import json
import sys
import threading

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

TEST_IMAGES = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def test_images(n: int) -> np.ndarray:
    """The first n Fashion-MNIST test images, uint8 [n, 1, 28, 28] (IDX: 16-byte header)."""
    with gzip.open(TEST_IMAGES, "rb") as f:
        raw = f.read(16 + n * 784)
    return np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, 1, 28, 28)


def check(args) -> dict:
    client = grpcclient.InferenceServerClient(url=args.grpc)
    if not client.is_server_live() or not client.is_server_ready():
        raise SystemExit("gRPC: server not live/ready")
    if not client.is_model_ready(args.model):
        raise SystemExit("gRPC: model not ready")
    meta = client.get_server_metadata(as_json=True)
    md = client.get_model_metadata(args.model, as_json=True)
    inp = md["inputs"][0]
    pixels = test_images(args.images)
    out_names = [o["name"] for o in md["outputs"]]

    # Raw: tritonclient puts the numpy bytes in raw_input_contents.
    x = grpcclient.InferInput(inp["name"], list(pixels.shape), inp["datatype"])
    x.set_data_from_numpy(pixels)
    outs = [grpcclient.InferRequestedOutput(n) for n in out_names]
    r = client.infer(args.model, [x], outputs=outs, request_id="raw-1")
    raw = {"label": r.as_numpy("label").tolist(), "exit_position": r.as_numpy("exit_position").tolist(),
           "probabilities_sum": r.as_numpy("probabilities").sum(axis=1).tolist(),
           "id": r.get_response().id,
           "config_id": r.get_response().parameters["config_id"].string_param}

    # Typed: the same pixels in InferTensorContents.uint_contents, through the client's stub.
    req = service_pb2.ModelInferRequest(model_name=args.model, id="typed-1")
    t = req.inputs.add(name=inp["name"], datatype="UINT8", shape=list(pixels.shape))
    t.contents.uint_contents.extend(int(p) for p in pixels.reshape(-1))
    with grpc.insecure_channel(args.grpc) as channel:
        resp = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req)
    by_name = {o.name: o for o in resp.outputs}
    typed = {"label": list(by_name["label"].contents.int64_contents),
             "exit_position": list(by_name["exit_position"].contents.int_contents),
             "raw_output_contents": len(resp.raw_output_contents), "id": resp.id}

    # HTTP, the reference answer for the same images.
    h = httpclient.InferenceServerClient(url=args.http)
    hx = httpclient.InferInput(inp["name"], list(pixels.shape), inp["datatype"])
    hx.set_data_from_numpy(pixels)
    hr = h.infer(args.model, [hx])
    http = {"label": hr.as_numpy("label").tolist(), "exit_position": hr.as_numpy("exit_position").tolist()}

    return {"server": meta["name"], "version": meta["version"], "model": md["name"],
            "versions": md["versions"], "inputs": md["inputs"], "outputs": out_names,
            "raw": raw, "typed": typed, "http": http}


def flood(args) -> dict:
    client = grpcclient.InferenceServerClient(url=args.grpc)
    pixels = test_images(1)
    counts: dict = {}
    lock = threading.Lock()
    done = threading.Semaphore(0)

    def answered(result, error):
        code = "OK" if error is None else str(error.status())
        with lock:
            counts[code] = counts.get(code, 0) + 1
        if error is not None and code.endswith("RESOURCE_EXHAUSTED"):
            counts.setdefault("message", error.message())
        done.release()

    for _ in range(args.requests):
        x = grpcclient.InferInput("input", list(pixels.shape), "UINT8")
        x.set_data_from_numpy(pixels)
        client.async_infer(args.model, [x], callback=answered)
    for _ in range(args.requests):
        if not done.acquire(timeout=60):
            raise SystemExit("flood: an answer did not come within 60 s")
    return counts


def peak(args) -> dict:
    import time
    client = grpcclient.InferenceServerClient(url=args.grpc)
    pixels = test_images(1)
    x = grpcclient.InferInput("input", list(pixels.shape), "UINT8")
    x.set_data_from_numpy(pixels)
    counts = {"ok": 0, "refused": 0}
    lock = threading.Lock()
    slots = threading.Semaphore(args.in_flight)
    stop_at = time.monotonic() + args.seconds

    def answered(result, error):
        with lock:
            counts["ok" if error is None else "refused"] += 1
        slots.release()

    cpu0, t0 = time.process_time(), time.monotonic()
    while time.monotonic() < stop_at:
        slots.acquire()
        client.async_infer(args.model, [x], callback=answered)
    for _ in range(args.in_flight):
        slots.acquire()
    elapsed = time.monotonic() - t0
    return {"ok_per_second": counts["ok"] / elapsed, "refused": counts["refused"], "seconds": elapsed,
            "client_cpu_seconds": time.process_time() - cpu0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["check", "flood", "peak"])
    ap.add_argument("--grpc", required=True, help="gRPC port host:port")
    ap.add_argument("--http", help="data port host:port (check)")
    ap.add_argument("--model", required=True, help="model name")
    ap.add_argument("--images", type=int, default=16, help="test images (check)")
    ap.add_argument("--requests", type=int, default=64, help="concurrent requests (flood)")
    ap.add_argument("--in-flight", type=int, default=64, help="requests outstanding (peak)")
    ap.add_argument("--seconds", type=float, default=10, help="duration (peak)")
    args = ap.parse_args()
    try:
        out = {"check": check, "flood": flood, "peak": peak}[args.mode](args)
    except InferenceServerException as e:
        print(f"{args.mode}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
