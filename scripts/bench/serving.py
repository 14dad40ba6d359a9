#!/usr/bin/env python3
"""Helpers of scripts/bench/serving.sh (stdlib only).

  machine --bin BIN      machine state as JSON (date, load average, CPUs, commit, other jobs)
  brief RUN_STEM         one line about a finished run (for the progress log)
  rate OUT CFG PERCENT   PERCENT of CFG's single-image HTTP peak (median of the reps), req/s
  offer OUT CFG IPR      requests/s to offer in a peak run: PEAK_OVER x CFG's in-process img/s
                         (an upper bound of the HTTP peak) / IPR, else PEAK_OFFER / IPR
  summarize OUT          writes OUT/summary.json and prints the markdown tables
"""

import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
CONFIGS_JSON = Path(__file__).resolve().parents[2] / "runtime/models/fmnist-resnet20/configs.json"
SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)$")


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def machine(binary):
    load = Path("/proc/loadavg").read_text().split()[:3]
    model = next(
        (l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")),
        "?",
    )
    others = [
        l
        for l in sh("pgrep", "-fa", "dyce |cargo|rustc").splitlines()
        if "bench_serving" not in l and "pgrep" not in l and "binary_backend" not in l
    ]
    st = os.stat(binary) if os.path.exists(binary) else None
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "loadavg": [float(x) for x in load],
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "git_head": sh("git", "rev-parse", "--short", "HEAD"),
        "git_dirty_files": len(sh("git", "status", "--porcelain").splitlines()),
        "bin": binary,
        "bin_mtime_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(st.st_mtime)) if st else None,
        "other_jobs": [o[:160] for o in others],
    }


def metrics(path):
    out = {}
    for line in Path(path).read_text().splitlines():
        m = SERIES.match(line)
        if m and not line.startswith("#"):
            # The runtime's model label (one value per runtime) is dropped from the key, so
            # keys read the same whatever the model and before the label existed.
            key = re.sub(r'model="[^"]*",?', "", m.group(1)).replace(",}", "}").replace("{}", "")
            try:
                out[key] = float(m.group(2))
            except ValueError:
                pass
    return out


def snap(stem, name):
    s = json.loads(Path(f"{stem}.{name}.snap.json").read_text())
    s["metrics"] = metrics(f"{stem}.{name}.metrics")
    s["t"] = (s["t0"] + s["t1"]) / 2
    return s


def delta(stem, a, b):
    """What happened on the server (and in the client, when both snapshots have it) between two
    snapshots of a run."""
    x, y = snap(stem, a), snap(stem, b)
    d = lambda k: y["metrics"].get(k, 0.0) - x["metrics"].get(k, 0.0)
    out = {
        "seconds": y["t"] - x["t"],
        "images": d("dyce_batch_size_sum"),
        "batches": d("dyce_batch_size_count"),
        "compute_s": d("dyce_batch_compute_duration_seconds_sum"),
        "ok_requests": d('dyce_requests_total{outcome="ok"}'),
        "shed_requests": d('dyce_requests_total{outcome="shed"}'),
        "request_s": d("dyce_request_duration_seconds_sum"),
        "server_cpu_s": (y["server_ticks"] - x["server_ticks"]) / CLK_TCK,
        "vmhwm_kb": [x["vmhwm_kb"], y["vmhwm_kb"]],
        "vmrss_kb": [x["vmrss_kb"], y["vmrss_kb"]],
    }
    if x["client_ticks"] is not None and y["client_ticks"] is not None:
        out["client_cpu_s"] = (y["client_ticks"] - x["client_ticks"]) / CLK_TCK
        # Everything else the machine ran meanwhile: interference (plus the script's curl).
        out["other_cpu_s"] = (y["busy_ticks"] - x["busy_ticks"]) / CLK_TCK - out["client_cpu_s"] - out["server_cpu_s"]
    out["images_per_s"] = out["images"] / out["seconds"]
    return out


def cpu_shares(w, nproc):
    c, s = w.get("client_cpu_s"), w["server_cpu_s"]
    if c is None:
        return {}
    return {
        "client_share_of_used": c / (c + s) if c + s > 0 else None,
        "client_cores": c / w["seconds"],
        "server_cores": s / w["seconds"],
        "machine_busy": (c + s) / (w["seconds"] * nproc),
        "other_cores": w["other_cpu_s"] / w["seconds"],
    }


def run(stem):
    stem = str(stem)
    summary = json.loads(Path(f"{stem}.sum.json").read_text())
    r = {"tag": Path(stem).name, "summary": summary, "window": delta(stem, "s1", "s2"), "whole": delta(stem, "s0", "s3")}
    t = Path(f"{stem}.time.json")
    if t.exists():
        r["client_time"] = json.loads(t.read_text())
    return r


def brief(stem):
    r = run(stem)
    s, w = r["summary"], r["window"]
    lat = s.get("latency_ms") or {}
    share = cpu_shares(w, len(os.sched_getaffinity(0))).get("client_share_of_used")
    return (
        f"window {w['images_per_s']:.0f} img/s, ok {s['ok']} shed {s['shed']} dropped {s['dropped_by_client']} "
        f"timeouts {s['timeouts']} errors {s['errors']}, p50 {fmt(lat.get('p50'))} p99 {fmt(lat.get('p99'))} ms, "
        f"client share {fmt(share, 2)}, other cores {fmt(w.get('other_cpu_s', 0) / w['seconds'], 2)}, "
        f"lag p99 {fmt(s['send_lag_ms']['p99'])} ms"
    )


def fmt(v, nd=1):
    if v is None:
        return "-"
    return f"{v:,.{nd}f}"


def pct(v, nd=0):
    return "-" if v is None else f"{100 * v:.{nd}f}%"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def runs_of(out, prefix):
    """Runs whose tag starts with prefix, as {rep: run}."""
    found = {}
    for p in sorted((Path(out) / "runs").glob(f"{prefix}-r*.sum.json")):
        stem = str(p)[: -len(".sum.json")]
        rep = int(stem.rsplit("-r", 1)[1])
        found[rep] = run(stem)
    return found


def peaks(out, cfg, ipr):
    return {rep: r["window"]["images_per_s"] for rep, r in runs_of(out, f"peak-{cfg}-ipr{ipr}").items()}


def rate(out, cfg, percent):
    p = med(peaks(out, cfg, 1).values())
    return p * percent / 100.0


def offer(out, cfg, ipr):
    st = settings(out)
    ip = Path(out) / "inproc.json"
    if ip.exists():
        rows = {c["id"]: c for c in json.loads(ip.read_text())["configs"]}
        return st["peak_over"] * rows[cfg]["img_per_s"] / ipr
    return st["peak_offer"] / ipr


def settings(out):
    return json.loads((Path(out) / "settings.json").read_text())


def macs_ratios():
    t = json.loads(CONFIGS_JSON.read_text())
    return {c["id"]: c["macs_ratio"] for c in t["configs"]}


def shed_latencies(log):
    lat, status = [], {}
    with open(log) as f:
        for line in f:
            r = json.loads(line)
            if r["outcome"] == "shed":
                status[r["status"]] = status.get(r["status"], 0) + 1
                if r["latency_s"] is not None:
                    lat.append(r["latency_s"] * 1e3)
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, max(0, math.ceil(p * len(lat)) - 1))] if lat else None  # nearest rank
    return {"count": len(lat), "status": status, "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": lat[-1] if lat else None}


def summarize(out):
    out = Path(out)
    st = settings(out)
    cfgs = st["configs"].split()
    bipr = st["batch_ipr"]
    m0 = json.loads((out / "machine-start.json").read_text())
    m1 = json.loads((out / "machine-end.json").read_text())
    nproc = m0["nproc"]
    macs = macs_ratios()
    full = "full"
    res = {"settings": st, "machine_start": m0, "machine_end": m1, "configs": {}}

    inproc = {}
    ip = out / "inproc.json"
    if ip.exists():
        rows = {c["id"]: c for c in json.loads(ip.read_text())["configs"]}
        for c in cfgs:
            # `dyce bench` reports the median of its rounds' side-by-side speed-ups.
            inproc[c] = {"img_per_s": rows[c]["img_per_s"], "runs": rows[c]["runs"], "rel_full": rows[c]["speedup"]}

    others = []
    for p in sorted((out / "runs").glob("*.sum.json")):
        wnd = run(str(p)[: -len(".sum.json")])["window"]
        if "other_cpu_s" in wnd:
            others.append(wnd["other_cpu_s"] / wnd["seconds"])
    if (out / "inproc.busy.json").exists():
        t = json.loads((out / "inproc.time.json").read_text())
        b = json.loads((out / "inproc.busy.json").read_text())["busy_ticks"]
        res["inproc_other_cores"] = ((b[1] - b[0]) / CLK_TCK - t["user"] - t["sys"]) / t["wall"]
        others.append(res["inproc_other_cores"])
    res["other_cores"] = {"median": med(others), "max": max(others) if others else None}

    lines = []
    w = lines.append
    w(f"Run of {m0['date_utc']} to {m1['date_utc']} UTC, commit {m0['git_head']} "
      f"({m0['git_dirty_files']} files modified in the tree), `{st['bin']}` built {m0['bin_mtime_utc']} UTC; "
      f"{nproc} CPUs ({m0['cpu_model']}); load average (1/5/15 min) {m0['loadavg']} at the start, "
      f"{m1['loadavg']} at the end; other dyce/cargo jobs at the start: {len(m0['other_jobs'])}, "
      f"at the end: {len(m1['other_jobs'])}; CPU used by anything but the server and the load generator during the "
      f"measurement windows (and `dyce bench`: {fmt(res.get('inproc_other_cores'), 2)}): median {fmt(res['other_cores']['median'], 2)} cores, max {fmt(res['other_cores']['max'], 2)}. "
      f"{st['reps']} repetitions, configurations interleaved in each; `dyce load --encoding "
      f"{st.get('encoding', 'json')}`.")
    w("")

    # Peaks.
    w("### Peak throughput (images/s, median of the repetitions)")
    w("")
    w(f"| config | MACs ratio | in-process (`dyce bench`, batch 32) | HTTP, 1 image/request | HTTP / in-process | "
      f"HTTP, {bipr} images/request | HTTP / in-process | load generator's share of CPU used (1 / {bipr}) |")
    w("|---|---|---|---|---|---|---|---|")
    table_b = []
    for c in cfgs:
        pk = {}
        for ipr in (1, bipr):
            rs = runs_of(out, f"peak-{c}-ipr{ipr}")
            per = {rep: r["window"]["images_per_s"] for rep, r in rs.items()}
            fulls = peaks(out, full, ipr)
            rel = [per[k] / fulls[k] for k in per if k in fulls]
            shares = [cpu_shares(r["window"], nproc) for r in rs.values()]
            sheds = sum(r["summary"]["shed"] for r in rs.values())
            drops = [r["summary"]["dropped_by_client"] / max(1, r["summary"]["scheduled"]) for r in rs.values()]
            pk[ipr] = {
                "img_per_s": med(per.values()),
                "runs": [per[k] for k in sorted(per)],
                "rel_full": med(rel),
                "client_share_of_used": med(s.get("client_share_of_used") for s in shares),
                "client_cores": med(s.get("client_cores") for s in shares),
                "server_cores": med(s.get("server_cores") for s in shares),
                "machine_busy": med(s.get("machine_busy") for s in shares),
                "shed": sheds,
                "min_dropped_share": min(drops) if drops else None,
                "generator_bottleneck": sum(bool(r["summary"]["generator_bottleneck"]) for r in rs.values()),
                "ok_latency_p50_ms": med(r["summary"]["latency_ms"]["p50"] for r in rs.values()),
            }
        ipc = inproc.get(c, {})
        hs1 = pk[1]["img_per_s"] / ipc["img_per_s"] if ipc else None
        hsb = pk[bipr]["img_per_s"] / ipc["img_per_s"] if ipc else None
        w(f"| {c} | {macs[c]:.3f} | {fmt(ipc.get('img_per_s'), 0)} | {fmt(pk[1]['img_per_s'], 0)} | {pct(hs1)} | "
          f"{fmt(pk[bipr]['img_per_s'], 0)} | {pct(hsb)} | {pct(pk[1]['client_share_of_used'])} / "
          f"{pct(pk[bipr]['client_share_of_used'])} |")
        res["configs"][c] = {"macs_ratio": macs[c], "inproc": ipc, "peak": {str(k): v for k, v in pk.items()}}
        table_b.append((c, ipc, pk))
    w("")
    w("### Speed-up over the full model (side by side in each repetition; median of per-repetition ratios)")
    w("")
    w(f"| config | ideal = 1 / MACs ratio | in-process | share of ideal | HTTP, 1 image/request | share of ideal | "
      f"HTTP, {bipr} images/request | share of ideal |")
    w("|---|---|---|---|---|---|---|---|")
    for c, ipc, pk in table_b:
        ideal = 1 / macs[c]
        cells = []
        for v in (ipc.get("rel_full"), pk[1]["rel_full"], pk[bipr]["rel_full"]):
            cells += [f"{v:.2f}×" if v is not None else "-", pct(v / ideal if v is not None else None)]
            res["configs"][c].setdefault("share_of_ideal", []).append(v / ideal if v is not None else None)
        w(f"| {c} | {ideal:.2f}× | " + " | ".join(cells) + " |")
    w("")
    checks = []
    for c, _, pk in table_b:
        for ipr in (1, bipr):
            p = pk[ipr]
            if p["shed"]:
                checks.append(f"{c} at {ipr} image(s)/request: {p['shed']} requests shed in peak runs")
            if p["min_dropped_share"] is not None and p["min_dropped_share"] < 0.05:
                checks.append(f"{c} at {ipr} image(s)/request: the offered load barely exceeded the peak "
                              f"(only {pct(p['min_dropped_share'])} held back by the client)")
    res["peak_checks"] = checks

    # Latency at 50% / 90%.
    w("### Latency at 50% and 90% of each configuration's single-image peak (Poisson arrivals, 1 image/request)")
    w("")
    w("| config | peak (img/s) | load | offered (req/s) | answered (img/s) | p50 (ms) | p99 (ms) | shed | accuracy | load generator's share of CPU used |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for c in cfgs:
        for level in (50, 90):
            rs = runs_of(out, f"lat-{c}-{level}")
            if not rs:
                continue
            sm = [r["summary"] for r in rs.values()]
            row = {
                "offered_per_s": med(s["offered_per_second"] for s in sm),
                "ok_per_s": med(s["ok_per_second"] for s in sm),
                "p50_ms": med(s["latency_ms"]["p50"] for s in sm),
                "p99_ms": med(s["latency_ms"]["p99"] for s in sm),
                "p50_runs": [s["latency_ms"]["p50"] for s in sm],
                "p99_runs": [s["latency_ms"]["p99"] for s in sm],
                "shed": sum(s["shed"] for s in sm),
                "sent": sum(s["sent"] for s in sm),
                "accuracy": sum(s["images_correct"] for s in sm) / max(1, sum(s["images_answered"] for s in sm)),
                "client_share_of_used": med(cpu_shares(r["window"], nproc).get("client_share_of_used") for r in rs.values()),
                "generator_bottleneck": sum(bool(s["generator_bottleneck"]) for s in sm),
            }
            res["configs"][c][f"latency_{level}"] = row
            if row["generator_bottleneck"]:
                checks.append(f"{c} at {level}%: the load generator's send lag p99 was over 10 ms in "
                              f"{row['generator_bottleneck']} of {len(sm)} runs")
            w(f"| {c} | {fmt(res['configs'][c]['peak']['1']['img_per_s'], 0)} | {level}% | {fmt(row['offered_per_s'], 0)} | "
              f"{fmt(row['ok_per_s'], 0)} | {fmt(row['p50_ms'], 2)} | {fmt(row['p99_ms'], 2)} | "
              f"{row['shed']:,} of {row['sent']:,} | {pct(row['accuracy'], 2)} | {pct(row['client_share_of_used'])} |")
    w("")

    # Low load: HTTP overhead.
    w(f"### HTTP overhead at low load ({st['low_rate']} requests/s of 1 image, evenly spaced, {st['low_seconds']} s)")
    w("")
    w("| config | batch size (mean) | compute per batch (mean, ms) | server end-to-end (mean, ms) | client end-to-end (mean / p50, ms) | "
      "overhead = client mean − compute (ms) | of which in the server (ms) |")
    w("|---|---|---|---|---|---|---|")
    for c in cfgs:
        p = out / "runs" / f"low-{c}"
        if not Path(f"{p}.sum.json").exists():
            continue
        r = run(p)
        d, s = r["whole"], r["summary"]
        compute = d["compute_s"] / d["batches"] * 1e3
        server = d["request_s"] / d["ok_requests"] * 1e3
        client = s["latency_ms"]["mean"]
        row = {
            "batch_size": d["images"] / d["batches"],
            "compute_ms": compute,
            "server_e2e_ms": server,
            "client_mean_ms": client,
            "client_p50_ms": s["latency_ms"]["p50"],
            "overhead_ms": client - compute,
            "server_overhead_ms": server - compute,
        }
        res["configs"][c]["low"] = row
        w(f"| {c} | {row['batch_size']:.2f} | {compute:.3f} | {server:.3f} | {client:.3f} / {row['client_p50_ms']:.3f} | "
          f"{row['overhead_ms']:.3f} | {row['server_overhead_ms']:.3f} |")
    w("")

    # Overload.
    ov = {}
    for tag in ("ov-base", "ov-over"):
        p = out / "runs" / tag
        if not Path(f"{p}.sum.json").exists():
            continue
        r = run(p)
        s, wnd, whole = r["summary"], r["window"], r["whole"]
        sl = shed_latencies(f"{p}.log.jsonl")
        ov[tag] = {
            "offered_per_s": s["offered_per_second"],
            "ok_per_s": s["ok_per_second"],
            "window_images_per_s": wnd["images_per_s"],
            "sent": s["sent"],
            "ok": s["ok"],
            "shed": s["shed"],
            "shed_share_of_sent": s["shed"] / max(1, s["sent"]),
            "timeouts": s["timeouts"],
            "errors": s["errors"],
            "dropped": s["dropped_by_client"],
            "ok_p50_ms": s["latency_ms"]["p50"],
            "ok_p99_ms": s["latency_ms"]["p99"],
            "shed_latency": sl,
            "vmhwm_kb": [whole["vmhwm_kb"][0], whole["vmhwm_kb"][1]],
            "vmrss_kb_end": whole["vmrss_kb"][1],
            "generator_bottleneck": s["generator_bottleneck"],
            "send_lag_p99_ms": s["send_lag_ms"]["p99"],
            **cpu_shares(wnd, nproc),
        }
    res["overload"] = ov
    for tag, o in ov.items():
        if o["generator_bottleneck"]:
            checks.append(f"{tag}: the load generator's send lag p99 was {o['send_lag_p99_ms']:.1f} ms")
    if ov:
        pf = res["configs"][full]["peak"]["1"]["img_per_s"]
        w(f"### Overload: full config, single-image requests, max-queue {st['max_queue']} (fresh server; "
          f"peak = {fmt(pf, 0)} img/s from the table above)")
        w("")
        w("| phase | offered (req/s) | answered (img/s) | shed (429) | shed latency p50 / p99 (ms) | "
          "accepted latency p50 / p99 (ms) | timeouts / errors / dropped | VmHWM before → after (MiB) | load generator's share of CPU used |")
        w("|---|---|---|---|---|---|---|---|---|")
        names = {"ov-base": "50% of peak", "ov-over": f"{st['overload_factor']}× peak"}
        for tag, o in ov.items():
            sl = o["shed_latency"]
            w(f"| {names[tag]}, {st['overload_seconds']} s | {fmt(o['offered_per_s'], 0)} | {fmt(o['ok_per_s'], 0)} | "
              f"{pct(o['shed_share_of_sent'], 1)} of {o['sent']:,} sent | {fmt(sl['p50_ms'], 2)} / {fmt(sl['p99_ms'], 2)} | "
              f"{fmt(o['ok_p50_ms'], 1)} / {fmt(o['ok_p99_ms'], 1)} | {o['timeouts']} / {o['errors']} / {o['dropped']} | "
              f"{o['vmhwm_kb'][0] / 1024:.1f} → {o['vmhwm_kb'][1] / 1024:.1f} | {pct(o.get('client_share_of_used'))} |")
        w("")
    if checks:
        w("Checks: " + "; ".join(checks) + ".")
        w("")
    (out / "summary.json").write_text(json.dumps(res, indent=1))
    print("\n".join(lines))


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "machine":
        print(json.dumps(machine(argv[argv.index("--bin") + 1])))
    elif cmd == "brief":
        print(brief(argv[2]))
    elif cmd == "rate":
        print(f"{rate(argv[2], argv[3], float(argv[4])):.1f}")
    elif cmd == "offer":
        print(f"{offer(argv[2], argv[3], int(argv[4])):.1f}")
    elif cmd == "summarize":
        summarize(argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
