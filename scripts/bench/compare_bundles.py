#!/usr/bin/env python3
"""Compares calibrated bundles' accuracy-compute fronts (issue 24: ResNet-20 against ConvNeXt-V2).

Usage: scripts/bench/compare_bundles.py BUNDLE_DIR [BUNDLE_DIR ...] [--dyce target/release/dyce]

Reads each bundle's calibration.json (the searched front of our method, every point measured
on both splits) and its total MACs from `dyce inspect --model`. Every choice is made on the
calibration split and reported on the test split, as the calibration reports do:
- MACs saved within a drop of the bundle's own full model (the reports' headline);
- the same in absolute MACs per image, which is what compares two models;
- at equal absolute MACs budgets, the test accuracy of each bundle's configuration that is
  most accurate on the calibration split within the budget.
Prints Markdown.
"""
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

DROPS = [0.0, 0.005, 0.01, 0.02]


def total_macs(dyce, bundle):
    out = subprocess.run([dyce, "inspect", "--model", str(bundle)], check=True, capture_output=True, text=True).stdout
    m = re.search(r"([0-9.]+) G MACs in total", out)
    if not m:
        sys.exit(f"compare_bundles: no MAC total in `dyce inspect --model {bundle}`:\n{out}")
    return float(m.group(1)) * 1e9


def load(dyce, bundle):
    cal = json.loads((bundle / "calibration.json").read_text())
    name = json.loads((bundle / "manifest.json").read_text())["name"]
    front = cal["fronts"]["ours"]
    full = cal["full_accuracy"]
    # The full model is a point of every front: MACs ratio 1.
    front = front + [{"calibration_accuracy": full["calibration"], "test_accuracy": full["test"],
                      "calibration_macs_ratio": 1.0, "test_macs_ratio": 1.0}]
    return {"name": name, "front": front, "full": full, "macs": total_macs(dyce, bundle)}


def within_drop(b, drop):
    ok = [p for p in b["front"] if p["calibration_accuracy"] >= b["full"]["calibration"] - drop - 1e-12]
    return min(ok, key=lambda p: p["calibration_macs_ratio"])


def within_budget(b, budget):
    ok = [p for p in b["front"] if p["calibration_macs_ratio"] * b["macs"] <= budget]
    return max(ok, key=lambda p: p["calibration_accuracy"]) if ok else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bundles", nargs="+", type=Path)
    ap.add_argument("--dyce", default="target/release/dyce")
    args = ap.parse_args()
    bs = [load(args.dyce, b) for b in args.bundles]

    print("| bundle | MACs per image | full model, test | " + " | ".join(f"≤ {100 * d:.1f} pt: saved, MACs, test acc." for d in DROPS) + " |")
    print("|---|---|---|" + "---|" * len(DROPS))
    for b in bs:
        cells = []
        for d in DROPS:
            p = within_drop(b, d)
            r = p["test_macs_ratio"]
            cells.append(f"{100 * (1 - r):.1f}%, {r * b['macs'] / 1e6:.1f} M, {100 * p['test_accuracy']:.2f}%")
        print(f"| {b['name']} | {b['macs'] / 1e6:.1f} M | {100 * b['full']['test']:.2f}% | " + " | ".join(cells) + " |")

    print()
    budgets = sorted({round(b["macs"] * f / 1e6) for b in bs for f in (0.2, 0.3, 0.4, 0.6)} | {round(b["macs"] / 1e6) for b in bs})
    print("| MACs budget per image | " + " | ".join(f"{b['name']}: test acc. (MACs)" for b in bs) + " |")
    print("|---|" + "---|" * len(bs))
    for m in budgets:
        cells = []
        for b in bs:
            p = within_budget(b, m * 1e6)
            cells.append("-" if p is None else f"{100 * p['test_accuracy']:.2f}% ({p['test_macs_ratio'] * b['macs'] / 1e6:.1f} M)")
        print(f"| {m} M | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
