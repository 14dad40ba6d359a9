#!/usr/bin/env python3
"""Answers at the exit, side by side: latency of one configuration with `--answer-at-exit true`
against `false`, at a share of its single-image HTTP peak, Poisson arrivals of single-image
requests from `dyce load` (labelled Fashion-MNIST test images), one fresh `dyce serve` per run,
the two modes alternating (the order flips every round) so that drift on a shared machine hits
both alike. Prints the machine, every run and the medians; writes OUT/summary.json.

Usage: scripts/bench/answer_at_exit.py [--bin target/release/dyce] [--config c00] [--rounds 5]
       [--seconds 20] [--load 0.5] [--ipr 1] [--out target/bench-exit]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request


def machine(binary):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "")
    isa = "avx512" if " avx512f" in flags else ("avx2" if " avx2" in flags else "portable")
    kernels = os.environ.get("DYCE_KERNELS", isa)
    return {"cpu": cpu, "cpus": os.cpu_count(), "kernels_isa": kernels, "bin": binary}


def port_flags(binary):
    """Free ports for the optional listeners and no drain delay, for binaries that have them."""
    text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
    flags = []
    for flag, value in (("--grpc-addr", "127.0.0.1:0"), ("--metrics-addr", "127.0.0.1:0"), ("--drain-delay", "0")):
        if flag in text:
            flags += [flag, value]
    return flags


class Server:
    def __init__(self, binary, out, tag, flags):
        self.out = open(os.path.join(out, f"{tag}.serve.out"), "w+")
        self.err = open(os.path.join(out, f"{tag}.serve.err"), "w")
        cmd = [binary, "serve", "--data-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", *port_flags(binary),
               *flags]
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=self.err, env={**os.environ, "RUST_LOG": "warn"})
        for _ in range(600):
            self.out.seek(0)
            line = self.out.readline()
            if line.strip():
                break
            time.sleep(0.1)
        addrs = json.loads(line)
        self.data = "http://" + addrs["data"]
        self.admin = "http://" + addrs["admin"]
        for _ in range(600):
            try:
                if urllib.request.urlopen(self.data + "/v2/health/ready", timeout=1).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("server not ready")

    def stages(self):
        """Server-side means per request in ms, from the admin port's /metrics: each stage of
        `dyce_request_stage_duration_seconds`, the whole request, and the mean batch size."""
        text = urllib.request.urlopen(self.admin + "/metrics", timeout=5).read().decode()
        sums, counts = {}, {}
        for line in text.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            name, value = line.rsplit(" ", 1)
            base, _, labels = name.partition("{")
            suffix, into = ("_sum", sums) if base.endswith("_sum") else ("_count", counts)
            if not base.endswith(suffix):
                continue
            base = base[: -len(suffix)]
            if base.endswith("request_stage_duration_seconds"):
                key = labels.split('stage="')[1].split('"')[0]
            elif base.endswith("request_duration_seconds"):
                key = "server_total"
            elif base.endswith("batch_size"):
                key = "batch_size"
            else:
                continue
            into[key] = into.get(key, 0.0) + float(value)
        out = {}
        for k, total in sums.items():
            if counts.get(k):
                out[k] = total / counts[k] * (1 if k == "batch_size" else 1000)
        return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def bench_args(ap, rounds, seconds, out):
    """The flags every side-by-side serving benchmark here takes."""
    ap.add_argument("--bin", default="target/release/dyce")
    ap.add_argument("--config", default="c00")
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--seconds", type=float, default=seconds)
    ap.add_argument("--out", default=out)


def begin(a):
    """Creates the output directory and prints the machine; returns its description."""
    os.makedirs(a.out, exist_ok=True)
    m = machine(a.bin)
    print(f"machine: {m['cpu']}, {m['cpus']} CPUs, kernels {m['kernels_isa']}", file=sys.stderr)
    return m


def peak(binary, out, flags, ipr=1):
    """Single-server peak in answered req/s: far more offered than served, outstanding images
    bounded by the queue (256)."""
    s = Server(binary, out, "peak", flags)
    try:
        return load(binary, s.data, 20000, 10, 99, ipr, 256 // ipr)["ok_per_second"]
    finally:
        s.stop()


def load(binary, url, rate, seconds, seed, ipr, max_in_flight):
    cmd = [binary, "load", "--url", url, "--profile", f"constant:{rate:.1f}", "--duration", str(seconds),
           "--seed", str(seed), "--images-per-request", str(ipr), "--max-in-flight", str(max_in_flight)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "RUST_LOG": "warn"})
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser()
    bench_args(ap, rounds=5, seconds=20, out="target/bench-exit")
    ap.add_argument("--load", type=float, default=0.5, help="share of the measured peak to offer")
    ap.add_argument("--ipr", type=int, default=1, help="images per request")
    a = ap.parse_args()
    m = begin(a)
    flags = ["--initial-config", a.config]

    peak_rps = peak(a.bin, a.out, flags, a.ipr)
    rate = a.load * peak_rps
    print(f"{a.config} peak {peak_rps:.0f} req/s ({a.ipr} image(s) each); offering {rate:.0f} req/s", file=sys.stderr)

    runs = {"true": [], "false": []}
    for r in range(a.rounds):
        order = ["true", "false"] if r % 2 == 0 else ["false", "true"]
        for mode in order:
            s = Server(a.bin, a.out, f"r{r}-{mode}", flags + ["--answer-at-exit", mode])
            res = load(a.bin, s.data, rate, a.seconds, r + 1, a.ipr, 4096)
            stages = s.stages()
            s.stop()
            lat = res["latency_ms"]
            runs[mode].append({"mean": lat["mean"], "p50": lat["p50"], "p99": lat["p99"], "ok": res["ok"],
                               "failed": res["shed"] + res["errors"] + res["timeouts"] + res["dropped_by_client"],
                               "accuracy": res["accuracy"], "server_ms": stages})
            x = runs[mode][-1]
            print(f"  round {r} answer-at-exit={mode:5}: mean {x['mean']:.2f} ms, p50 {x['p50']:.2f}, "
                  f"p99 {x['p99']:.2f}, ok {x['ok']}, failed {x['failed']}", file=sys.stderr)

    med = {mode: {k: statistics.median(x[k] for x in rs) for k in ("mean", "p50", "p99")} for mode, rs in runs.items()}
    keys = sorted({k for rs in runs.values() for x in rs for k in x["server_ms"]})
    server = {mode: {k: statistics.median(x["server_ms"].get(k, 0.0) for x in rs) for k in keys}
              for mode, rs in runs.items()}
    ratio = {k: med["true"][k] / med["false"][k] for k in ("mean", "p50", "p99")}
    summary = {"machine": m, "config": a.config, "peak_rps": peak_rps, "offered_rps": rate, "rounds": a.rounds,
               "seconds": a.seconds, "ipr": a.ipr, "runs": runs, "median": med, "server_median_ms": server, "ratio_on_over_off": ratio}
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"| answers | mean ms | p50 ms | p99 ms |\n|---|---|---|---|")
    for mode, name in (("false", "when the batch ends"), ("true", "at the exit")):
        print(f"| {name} | {med[mode]['mean']:.2f} | {med[mode]['p50']:.2f} | {med[mode]['p99']:.2f} |")
    print(f"| ratio (at exit / batch end) | {ratio['mean']:.3f} | {ratio['p50']:.3f} | {ratio['p99']:.3f} |")
    # Where a request's time goes, server side (means, medians over the runs): the part answering
    # at the exit can shorten is `compute`; the client's mean minus `server_total` is the HTTP
    # client, the kernel's loopback and axum outside the handler.
    print("\n| answers | " + " | ".join(f"{k} ms" if k != "batch_size" else "batch size" for k in keys)
          + " | client mean ms |\n|---|" + "---|" * (len(keys) + 1))
    for mode, name in (("false", "when the batch ends"), ("true", "at the exit")):
        print(f"| {name} | " + " | ".join(f"{server[mode][k]:.3f}" for k in keys) + f" | {med[mode]['mean']:.3f} |")


if __name__ == "__main__":
    main()
