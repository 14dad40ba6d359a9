#!/usr/bin/env python3
"""Turns the JSON files of scripts/bench/engine.sh into the markdown table of docs/benchmarks.md."""

import glob
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def main(out: str) -> None:
    peaks = [load(p).get("peak_gflop_per_s") for p in glob.glob(os.path.join(out, "*-dyce-*.json"))]
    peaks = sorted(p for p in peaks if p)
    peak = peaks[len(peaks) // 2]
    mm = os.path.join(out, "peak-matmul.json")
    print(f"FMA peak (register-resident AVX2 FMA loop on every thread, median of {len(peaks)} measurements "
          f"in this run): {peak:.1f} GFLOP/s")
    if os.path.exists(mm):
        print(f"numpy float32 matmul (OpenBLAS), for comparison: {load(mm)['gflop_per_s']:.1f} GFLOP/s")
    print()
    print("| network | batch | engine | img/s | GFLOP/s | share of peak | / ONNX Runtime |")
    print("|---|---|---|---|---|---|---|")
    for ort_path in sorted(glob.glob(os.path.join(out, "*-ort.json"))):
        arch = os.path.basename(ort_path)[: -len("-ort.json")]
        ort = load(ort_path)
        ours = [load(p) for p in sorted(glob.glob(os.path.join(out, f"{arch}-dyce-*.json")))]
        macs = ours[0]["macs_per_image"] if ours else None
        size = ort.get("height", "")
        for r in ort["results"]:
            b, ort_rate = r["batch"], r["img_per_s"]
            rows = [("ONNX Runtime " + ort.get("version", ""), ort_rate)]
            for o in ours:
                rate = next(x["img_per_s"] for x in o["results"] if x["batch"] == b)
                rows.append((o["engine"], rate))
            for name, rate in rows:
                gf = 2 * macs * rate / 1e9 if macs else float("nan")
                print(f"| {arch} @{size} | {b} | {name} | {rate:,.1f} | {gf:.1f} | {100 * gf / peak:.0f}% | {rate / ort_rate:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench-engine")
