#!/usr/bin/env python3
"""The side-by-side table of scripts/bench/drift.sh, from the files each run left under OUT/RUN.

Usage: scripts/bench/drift_report.py OUT RUN [RUN ...]

Per run: the controller's floor (from its policy and the embedded table), real accuracy before and
after the drift from `dyce load`'s labelled answers, the configs that answered after the drift
with their real accuracy there, the last answer after the drift from a config whose post-drift
real accuracy is under the floor, the configs excluded, and when DyceLiveAccuracyUnderFloor fired
in Prometheus (seconds into the run). Standard library only.
"""

import collections
import json
import os
import re
import sys


def floor(d):
    """The policy's floor: the full model's expected accuracy minus maxAccuracyDrop."""
    drop = float(re.search(r"maxAccuracyDrop: ([0-9.]+)", open(f"{d}/policy.yaml").read()).group(1))
    here = os.path.dirname(os.path.abspath(__file__))
    table = json.load(open(os.path.join(here, "../../runtime/models/fmnist-resnet20/configs.json")))
    full = next(c for c in table["configs"] if c["id"] == "full")
    return full["expected_accuracy"] - drop


def main(out, runs):
    rows = []
    for source in runs:
        d = os.path.join(out, source)
        load = json.load(open(f"{d}/load.json"))
        drift_at = load["drift"]["at_s"]
        lines = [json.loads(l) for l in open(f"{d}/requests.jsonl")]
        f = floor(d)
        per = collections.defaultdict(lambda: [0, 0])
        for r in lines:
            if r["outcome"] == "ok" and r["scheduled_s"] >= drift_at:
                per[r["config_id"]][0] += r["correct"]
                per[r["config_id"]][1] += r["images"]
        acc = {c: k / n for c, (k, n) in per.items() if n}
        under = {c for c, a in acc.items() if a < f}
        last_under = max(
            (r["scheduled_s"] for r in lines
             if r["outcome"] == "ok" and r["scheduled_s"] >= drift_at and r["config_id"] in under),
            default=None,
        )
        status = json.load(open(f"{d}/status.json")) if os.path.getsize(f"{d}/status.json") else {}
        excluded = sorted(status.get("accuracy_excluded", {}))
        t0 = float(open(f"{d}/t0").read())
        fired = []
        try:
            for s in json.load(open(f"{d}/alerts.json"))["data"]["result"]:
                ts = [float(t) - t0 for t, _ in s["values"]]
                fired.append(f"{s['metric'].get('config', '?')} {min(ts):.0f}–{max(ts):.0f} s")
        except (OSError, ValueError, KeyError):
            fired = ["(no answer from Prometheus)"]
        dr = load["drift"]
        served = ", ".join(f"{c} {a:.3f} ({per[c][1]})" for c, a in sorted(acc.items()))
        rows.append(
            f"| {source} | {f:.4f} | {dr['before']['accuracy']:.4f} | {dr['after']['accuracy']:.4f} "
            f"({'≥' if dr['after']['accuracy'] >= f else '<'} floor) | {served or '-'} | "
            f"{'-' if last_under is None else f'{last_under - drift_at:.1f} s after the drift'} | "
            f"{', '.join(excluded) or '-'} | {'; '.join(fired) or 'not fired'} | "
            f"{load.get('shed', '?')} |"
        )
    print("| accuracy source | floor | real accuracy before the drift | after | configs answering after the drift: real accuracy (images) | last answer from a config under the floor | excluded at the end | DyceLiveAccuracyUnderFloor firing (s into the run) | shed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
