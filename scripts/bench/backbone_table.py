#!/usr/bin/env python3
"""Turns the JSON files of scripts/bench/engine.sh into the markdown table of docs/benchmarks.md.

Files are OUT/{arch}-r{round}-{engine}.json; `ort` is ONNX Runtime. Each engine's figure is its
median img/s over rounds; its ratio is the median over rounds of (engine / ONNX Runtime in the
same round), so a round slowed by another process affects both sides of its ratio.
"""

import glob
import json
import os
import re
import statistics
import sys

ENGINE_NAMES = {
    "dyce-avx512": "dyce, AVX-512F kernels",
    "dyce-avx2": "dyce, AVX2 kernels",
    "dyce-portable": "dyce, portable kernels",
    "base-avx2": "dyce baseline binary, AVX2",
    "base-avx512": "dyce baseline binary, AVX-512F",
    "candle": "dyce, candle reference",
}


def load(path):
    with open(path) as f:
        return json.load(f)


def main(out: str) -> None:
    runs = {}  # (arch, engine) -> {round: doc}
    for path in glob.glob(os.path.join(out, "*-r*-*.json")):
        m = re.match(r"(.+)-r(\d+)-(.+)\.json$", os.path.basename(path))
        if m:
            runs.setdefault((m[1], m[3]), {})[int(m[2])] = load(path)
    # Each dyce run probes the FMA peak of the ISA it ran with: median per ISA.
    peaks = {}
    for (arch, eng), by_round in runs.items():
        for doc in by_round.values():
            if doc.get("peak_gflop_per_s") and doc.get("isa"):
                peaks.setdefault(doc["isa"], []).append(doc["peak_gflop_per_s"])
    peaks = {isa: statistics.median(v) for isa, v in peaks.items()}
    any_doc = next((d for (a, e), by in runs.items() if e != "ort" for d in by.values() if d.get("cpu_model")),
                   next(iter(next(iter(runs.values())).values())))
    print(f"CPU: {any_doc.get('cpu_model', 'unknown')}, {any_doc.get('threads')} threads; "
          f"rounds: {max(max(r) for r in runs.values())}")
    for isa, p in sorted(peaks.items(), key=lambda kv: -kv[1]):
        print(f"FMA peak with {isa} vectors (register-resident FMA loop on every thread, median of the run's probes): "
              f"{p:.1f} GFLOP/s")
    best_peak = max(peaks.values()) if peaks else float("nan")
    mm = os.path.join(out, "peak-matmul.json")
    if os.path.exists(mm):
        print(f"numpy float32 matmul (OpenBLAS), for comparison: {load(mm)['gflop_per_s']:.1f} GFLOP/s")
    print()
    print("| network | batch | engine | kernels | img/s | GFLOP/s | share of peak | / ONNX Runtime |")
    print("|---|---|---|---|---|---|---|---|")
    archs = sorted({a for a, _ in runs}, key=lambda a: (len(a), a))
    for arch in archs:
        ort = runs.get((arch, "ort"), {})
        engines = sorted((e for a, e in runs if a == arch and e != "ort"), key=lambda e: list(ENGINE_NAMES).index(e)
                         if e in ENGINE_NAMES else 99)
        ours = next(iter(runs[(arch, engines[0])].values())) if engines else {}
        macs = ours.get("macs_per_image")
        size = next(iter(ort.values())).get("height", "") if ort else ""
        batches = [r["batch"] for r in next(iter(ort.values()))["results"]] if ort else []
        for b in batches:
            def rate(doc):
                return next(x["img_per_s"] for x in doc["results"] if x["batch"] == b)
            ort_rates = {rnd: rate(d) for rnd, d in ort.items()}
            rows = [("ONNX Runtime " + next(iter(ort.values())).get("version", ""), "MLAS", ort_rates, None)]
            for e in engines:
                by_round = runs[(arch, e)]
                # A baseline binary may predate the "isa" field: its tag names the path it ran.
                isa = next(iter(by_round.values())).get("isa") or {"avx2": "avx2+fma", "avx512": "avx512f"}.get(
                    e.rsplit("-", 1)[-1], "?")
                rows.append((ENGINE_NAMES.get(e, e), isa,
                             {rnd: rate(d) for rnd, d in by_round.items()}, e))
            for name, isa, rates, eng in rows:
                med = statistics.median(rates.values())
                ratios = [rates[r] / ort_rates[r] for r in rates if r in ort_rates]
                ratio = statistics.median(ratios) if ratios else float("nan")
                gf = 2 * macs * med / 1e9 if macs else float("nan")
                peak = peaks.get(isa, best_peak)
                shown = f"**{ratio:.2f}**" if eng and eng.startswith("dyce") else f"{ratio:.2f}"
                print(f"| {arch} @{size} | {b} | {name} | {isa} | {med:,.1f} | {gf:.1f} | {100 * gf / peak:.0f}% | {shown} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench-engine")
