#!/usr/bin/env python3
"""Static checks of the Grafana dashboards in charts/dyce/dashboards/ (the one copy; the top-level
dashboards/ links to it). No Grafana or Prometheus needed.

Every dashboard must: be JSON with a uid, a title, the `dyce` tag and schemaVersion 39; have a
`datasource` variable of type datasource (query prometheus) that every panel and every query
uses (no hard-coded datasource uid anywhere but Grafana's built-in annotations); define every
`$variable` a query uses and use every variable it defines; use `=~` for the job, namespace,
instance and policy variables (so "All" = `.*` also matches series without the label, e.g. no
namespace outside Kubernetes); give every panel a title and a description, unique ids and
refIds, and a place on the 24-column grid that overlaps no other panel.

Usage: scripts/checks/dashboards.py [DASHBOARD.json ...]   (default: charts/dyce/dashboards/*.json)
The live checks (every query returns data) are in scripts/checks/observability.py, which imports
`load` and `queries` from here.
"""

import glob
import json
import os
import re
import sys

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's built-in variables: substituted by Grafana itself.
BUILTIN_VARS = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s", "__range_ms"}
# Variables that select series by label: must be matched with =~ (multi-value, All = .*).
LABEL_VARS = {"job", "namespace", "instance", "policy"}
VAR_RE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}?")


def load(path):
    """The dashboard JSON at `path`."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def panels(dash):
    """Every panel, rows' nested panels included (rows themselves excluded)."""
    out = []
    for p in dash.get("panels", []):
        if p.get("type") == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def queries(dash):
    """(panel title, refId, expr) of every query of every panel."""
    return [(p.get("title", ""), t.get("refId", ""), t.get("expr", ""))
            for p in panels(dash) for t in p.get("targets", [])]


def variables(dash):
    """The templating variables, by name."""
    return {v["name"]: v for v in dash.get("templating", {}).get("list", [])}


def variable_query(v):
    """The query string of a query variable (both Grafana encodings)."""
    q = v.get("query")
    return q.get("query", "") if isinstance(q, dict) else (q or "")


def _walk_uids(node, path, found):
    if isinstance(node, dict):
        if "uid" in node and isinstance(node.get("uid"), str) and "type" in node:
            found.append((path, node))
        for k, v in node.items():
            _walk_uids(v, f"{path}.{k}", found)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk_uids(v, f"{path}[{i}]", found)


def check(path):
    """Problems found in the dashboard at `path` (empty when it is fine)."""
    errs = []
    try:
        d = load(path)
    except (OSError, json.JSONDecodeError) as e:
        return [f"{path}: not readable JSON: {e}"]
    name = os.path.basename(path)
    for key in ("uid", "title"):
        if not d.get(key):
            errs.append(f"{name}: no {key}")
    if d.get("schemaVersion") != 39:
        errs.append(f"{name}: schemaVersion {d.get('schemaVersion')}, expected 39")
    if "dyce" not in d.get("tags", []):
        errs.append(f"{name}: no `dyce` tag (the dashboard links find each other by it)")
    if d.get("id") is not None:
        errs.append(f"{name}: id must be null (Grafana assigns it on import)")

    vs = variables(d)
    ds = vs.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errs.append(f"{name}: no `datasource` variable of type datasource with query prometheus")
    for v in vs.values():
        if v.get("type") == "query":
            if v.get("datasource") != DATASOURCE:
                errs.append(f"{name}: variable {v['name']} does not use ${{datasource}}")
            if not variable_query(v).startswith("label_values("):
                errs.append(f"{name}: variable {v['name']} is not a label_values() query")
            if v.get("includeAll") and v.get("allValue") != ".*":
                errs.append(f"{name}: variable {v['name']} includes All but its allValue is not .*")

    # Datasource references: only ${datasource}, besides Grafana's own annotation source.
    refs = []
    _walk_uids(d, name, refs)
    for where, node in refs:
        if node.get("type") == "grafana" and node.get("uid") == "-- Grafana --":
            continue
        if node.get("type") == "datasource" and node.get("uid") in ("grafana", "-- Dashboard --"):
            continue
        if node != DATASOURCE:
            errs.append(f"{where}: datasource {node} is not {DATASOURCE}")

    titles = [p.get("title") for p in panels(d)]
    for t in sorted({t for t in titles if titles.count(t) > 1}):
        errs.append(f"{name}: panel title {t!r} is not unique (docs/metrics.md names panels by title)")
    ids, cells, used = set(), [], set()
    ps = [p for p in d.get("panels", [])]
    for p in ps + [q for r in ps if r.get("type") == "row" for q in r.get("panels", [])]:
        pid, title = p.get("id"), p.get("title")
        where = f"{name}: panel {pid} {title!r}"
        if pid in ids:
            errs.append(f"{where}: duplicate id")
        ids.add(pid)
        if not title:
            errs.append(f"{where}: no title")
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in ("x", "y", "w", "h")) or g["x"] < 0 or g["x"] + g["w"] > 24:
            errs.append(f"{where}: gridPos {g} is off the 24-column grid")
        else:
            for other, og in cells:
                if (g["x"] < og["x"] + og["w"] and og["x"] < g["x"] + g["w"]
                        and g["y"] < og["y"] + og["h"] and og["y"] < g["y"] + g["h"]):
                    errs.append(f"{where}: overlaps panel {other}")
            cells.append((pid, g))
        if p.get("type") == "row":
            continue
        if not p.get("description"):
            errs.append(f"{where}: no description")
        if p.get("datasource") != DATASOURCE:
            errs.append(f"{where}: panel datasource is not ${{datasource}}")
        targets = p.get("targets", [])
        if not targets:
            errs.append(f"{where}: no queries")
        refids = [t.get("refId") for t in targets]
        if len(set(refids)) != len(refids):
            errs.append(f"{where}: duplicate refIds {refids}")
        for t in targets:
            expr = t.get("expr", "")
            if not expr.strip():
                errs.append(f"{where} {t.get('refId')}: empty expr")
            for m in VAR_RE.finditer(expr):
                used.add(m.group(1))
            for label in LABEL_VARS:
                for m in re.finditer(rf'\b{label}\s*(!?=~?)\s*"\$\{{?{label}\b', expr):
                    if m.group(1) != "=~":
                        errs.append(f"{where} {t.get('refId')}: {label} matched with {m.group(1)}, not =~")
    for v in vs.values():
        for m in VAR_RE.finditer(variable_query(v)):
            used.add(m.group(1))
    for u in sorted(used - BUILTIN_VARS):
        if u not in vs:
            errs.append(f"{name}: ${u} is used but not defined")
    for v in sorted(set(vs) - used - {"datasource"}):
        errs.append(f"{name}: variable {v} is defined but never used")
    return errs


def main(argv):
    paths = argv[1:] or sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "charts", "dyce", "dashboards", "*.json")))
    if not paths:
        print("check_dashboards: no dashboards found", file=sys.stderr)
        return 1
    failed = 0
    for path in paths:
        errs = check(path)
        d = load(path) if not errs or "not readable" not in errs[0] else {}
        n = len(queries(d)) if d else 0
        if errs:
            failed += 1
            print(f"FAIL {path}")
            for e in errs:
                print(f"  {e}")
        else:
            print(f"ok   {path}: {len(panels(d))} panels, {n} queries, {len(variables(d))} variables")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
