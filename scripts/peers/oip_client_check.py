#!/usr/bin/env python3
"""Talks to a dyce runtime with the standard Triton/KServe v2 HTTP client, unchanged.

Reads the model metadata, builds a request from it (UINT8 pixels, the client's default binary
tensor encoding, and once more as JSON), and prints one JSON line with what came back, so a
test can compare it with the runtime's own JSON answers.
"""

import argparse
import json
import sys

import numpy as np
import tritonclient.http as httpclient


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True, help="data port host:port")
    ap.add_argument("--model", required=True, help="model name (GET /v1/configs on the admin port names it)")
    ap.add_argument("--images", type=int, default=4, help="images in the request")
    args = ap.parse_args()

    client = httpclient.InferenceServerClient(url=args.url)
    if not client.is_server_live() or not client.is_server_ready():
        print("server not live/ready", file=sys.stderr)
        return 1
    meta = client.get_server_metadata()
    index = client.get_model_repository_index()
    md = client.get_model_metadata(args.model)
    inp = md["inputs"][0]
    shape = [args.images] + [int(d) for d in inp["shape"][1:]]
    pixels = (np.arange(np.prod(shape)) * 31 % 256).astype(np.uint8).reshape(shape)
    results = {}
    for binary in (True, False):
        x = httpclient.InferInput(inp["name"], shape, inp["datatype"])
        x.set_data_from_numpy(pixels, binary_data=binary)
        outs = None if binary else [httpclient.InferRequestedOutput(o["name"], binary_data=False) for o in md["outputs"]]
        r = client.infer(args.model, [x], outputs=outs)
        results["binary" if binary else "json"] = {
            "label": r.as_numpy("label").tolist(),
            "exit_position": r.as_numpy("exit_position").tolist(),
            "probabilities_sum": r.as_numpy("probabilities").sum(axis=1).tolist(),
            "config_id": r.get_response()["parameters"]["config_id"],
        }
    repository = [m["name"] for m in index if m.get("state") == "READY"]
    print(json.dumps({"server": meta["name"], "extensions": meta.get("extensions", []), "repository": repository, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
