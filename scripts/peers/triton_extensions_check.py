#!/usr/bin/env python3
"""Triton's HTTP client, unchanged, against a dyce runtime: the versioned routes, the
model-configuration and statistics extensions, and a gzip-compressed infer request.

Prints one JSON line with what came back, so a test (tests/triton_http.rs) can check it against
the runtime's own answers. Exits non-zero on the first thing tritonclient refuses.
"""

import argparse
import json
import sys
import urllib.error
import urllib.request

import numpy as np
import tritonclient.http as httpclient


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True, help="data port host:port")
    ap.add_argument("--model", required=True, help="model name")
    ap.add_argument("--images", type=int, default=4, help="images in the request")
    args = ap.parse_args()

    client = httpclient.InferenceServerClient(url=args.url)
    out = {
        "ready_v1": client.is_model_ready(args.model, "1"),
        "ready_v2": client.is_model_ready(args.model, "2"),
        "config": client.get_model_config(args.model),
        "config_v1": client.get_model_config(args.model, "1"),
    }
    md = client.get_model_metadata(args.model, "1")
    inp = md["inputs"][0]
    shape = [args.images] + [int(d) for d in inp["shape"][1:]]
    pixels = (np.arange(np.prod(shape)) * 31 % 256).astype(np.uint8).reshape(shape)
    for name, compression in (("plain", None), ("gzip", "gzip"), ("deflate", "deflate")):
        x = httpclient.InferInput(inp["name"], shape, inp["datatype"])
        x.set_data_from_numpy(pixels, binary_data=True)
        r = client.infer(args.model, [x], model_version="1", request_compression_algorithm=compression)
        out[name] = {"label": r.as_numpy("label").tolist(), "exit_position": r.as_numpy("exit_position").tolist()}
    out["stats"] = client.get_inference_statistics(args.model)
    out["stats_v1"] = client.get_inference_statistics(args.model, "1")
    # An unknown route: a JSON 404 whose `error` says which route.
    try:
        urllib.request.urlopen(f"http://{args.url}/v2/no/such/route", timeout=10)
        out["unknown_route"] = {"status": 200}
    except urllib.error.HTTPError as e:
        out["unknown_route"] = {"status": e.code, "content_type": e.headers.get("Content-Type", ""),
                                "body": json.loads(e.read().decode())}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
