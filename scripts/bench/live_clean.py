#!/usr/bin/env python3
"""Every configuration's live estimate against its real accuracy on clean traffic (issue 22's
acceptance: "the live estimate of each served configuration after 60 s agrees with its real
accuracy within its stated bound").

One fresh `dyce serve` per round (embedded fmnist-resnet20) with every answered image shadow-
checked (`--shadow-rate 1`, so one full-model pass gives every configuration's answer) and no
decay to speak of (`--shadow-half-life 86400`); `dyce load` sends labelled Fashion-MNIST test
images (a seeded shuffle of the whole test split, each image once until it wraps) and posts the
true label of every answer (`--feedback 1`). Then, per configuration, `GET /v1/accuracy` has both
the shadow-only estimate and bound (`estimate`, `lower_bound`: what dyce believes without labels)
and the real accuracy on exactly the images sent (`feedback.accuracy`). A round passes when every
configuration's real accuracy is at or above its lower bound.

Usage: scripts/bench/live_clean.py [--bin target/release/dyce] [--rounds 3] [--seconds 60]
       [--rps 150] [--out target/bench-live-clean]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from answer_at_exit import Server, machine  # noqa: E402  (same server helper)


def accuracy(server):
    """`GET /v1/accuracy` on the server's admin port (from its first stdout line)."""
    server.out.seek(0)
    admin = "http://" + json.loads(server.out.readline())["admin"]
    with urllib.request.urlopen(admin + "/v1/accuracy", timeout=10) as r:
        return json.load(r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/dyce")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rps", type=float, default=150, help="offered load; every image also runs the full model")
    ap.add_argument("--out", default="target/bench-live-clean")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    m = machine(a.bin)
    print(f"machine: {m['cpu']}, {m['cpus']} CPUs, kernels {m['kernels_isa']}", file=sys.stderr)
    flags = ["--shadow-rate", "1", "--shadow-half-life", "86400", "--feedback-capacity", "200000"]
    rounds = []
    for r in range(a.rounds):
        s = Server(a.bin, a.out, f"r{r}", flags)
        seed = 3 + r
        cmd = [a.bin, "load", "--url", s.data, "--profile", f"constant:{a.rps}", "--duration", str(a.seconds),
               "--seed", str(seed), "--feedback", "1"]
        run = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "RUST_LOG": "warn"})
        summary = json.loads(run.stdout)
        acc = accuracy(s)
        s.stop()
        rows = {}
        for cid, c in acc["configs"].items():
            fb = c.get("feedback") or {}
            rows[cid] = {"disagreement": c["disagreement"], "estimate": c["estimate"],
                         "lower_bound": c["lower_bound"], "real": fb.get("accuracy"),
                         "labelled": fb.get("samples_total", 0)}
        held = all(x["real"] is not None and x["real"] >= x["lower_bound"] for x in rows.values())
        rounds.append({"seed": seed, "answers": summary["ok"], "checked": acc["checked_total"],
                       "dropped": acc["dropped_total"], "load_accuracy": summary.get("accuracy"),
                       "configs": rows, "every_bound_held": held})
        print(f"  round {r} (seed {seed}): {summary['ok']} answers, {acc['checked_total']} checked, "
              f"{acc['dropped_total']} dropped; every real accuracy within its bound: {held}", file=sys.stderr)
    ids = list(rounds[0]["configs"])
    print(f"\n{m['cpu']}, {m['cpus']} CPUs, kernels {m['kernels_isa']}; {a.rounds} rounds of {a.seconds:.0f} s "
          f"at {a.rps:.0f} req/s; medians over rounds, worst margin over rounds\n")
    print("| config | disagreement with full | live estimate | lower bound | real accuracy | real − estimate "
          "| worst real − bound | within the bound |")
    print("|---|---|---|---|---|---|---|---|")
    for cid in ids:
        xs = [rd["configs"][cid] for rd in rounds]
        med = {k: statistics.median(x[k] for x in xs) for k in ("disagreement", "estimate", "lower_bound", "real")}
        worst = min(x["real"] - x["lower_bound"] for x in xs)
        inside = sum(x["real"] >= x["lower_bound"] for x in xs)
        print(f"| {cid} | {med['disagreement']:.4f} | {med['estimate']:.4f} | {med['lower_bound']:.4f} | "
              f"{med['real']:.4f} | {med['real'] - med['estimate']:+.4f} | {worst:+.4f} | {inside}/{len(xs)} |")
    out = {"machine": m, "seconds": a.seconds, "rps": a.rps, "rounds": rounds}
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(out, f, indent=2)
    return 0 if all(rd["every_bound_held"] for rd in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
