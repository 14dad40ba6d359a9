#!/usr/bin/env python3
"""Two configuration tables of one bundle, side by side in the same `dyce bench` rounds.

Writes a bundle under target/bench-tables/ whose configs.json holds the chosen configs of both
tables (ids prefixed `a` for the first, `b` for the second) and the full model, and runs
`dyce bench` on it, so both tables' configs are measured against the same full-model rounds.

    scripts/bench/compare_config_tables.py OLD_CONFIGS_JSON NEW_CONFIGS_JSON c00,c03 [--rounds 30] [--runs 2]

A table from history: `git show 1ac156f:runtime/models/fmnist-resnet20/configs.json > old.json`.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "runtime/models/fmnist-resnet20")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", help="configs.json of the first table (ids become aNN)")
    ap.add_argument("second", help="configs.json of the second table (ids become bNN)")
    ap.add_argument("ids", help="comma-separated config ids to take from each table")
    ap.add_argument("--model", default=MODEL, help="bundle whose weights and manifest both tables use")
    ap.add_argument("--rounds", type=int, default=30, help="dyce bench rounds per run")
    ap.add_argument("--runs", type=int, default=2, help="dyce bench processes, one after the other")
    ap.add_argument("--dyce", default=os.path.join(ROOT, "target/release/dyce"))
    a = ap.parse_args()
    ids = a.ids.split(",")
    out = os.path.join(ROOT, "target/bench-tables")
    os.makedirs(out, exist_ok=True)
    for f in ("weights.safetensors", "manifest.json"):
        dst = os.path.join(out, f)
        if os.path.lexists(dst):
            os.remove(dst)
        os.symlink(os.path.abspath(os.path.join(a.model, f)), dst)
    table = {"model": None, "configs": []}
    full = None
    for tag, path in (("a", a.first), ("b", a.second)):
        t = json.load(open(path))
        table["model"] = t["model"]
        by_id = {c["id"]: c for c in t["configs"]}
        missing = [i for i in ids if i not in by_id]
        if missing:
            sys.exit(f"error: {path} has no config {missing[0]!r}")
        for i in ids:
            c = dict(by_id[i])
            c["id"] = tag + i[1:]
            table["configs"].append(c)
        full = next(c for c in t["configs"] if not c["exits"])
    table["configs"].append(full)
    with open(os.path.join(out, "configs.json"), "w") as f:
        json.dump(table, f, indent=1)
    for c in table["configs"]:
        print(f"{c['id']:>5}: expected accuracy {c.get('expected_accuracy')}, MACs ratio {c.get('macs_ratio'):.3f}")
    for run in range(a.runs):
        print(f"== run {run + 1}/{a.runs} ==", flush=True)
        subprocess.run([a.dyce, "bench", "--model", out, "--rounds", str(a.rounds)], check=True)


if __name__ == "__main__":
    main()
