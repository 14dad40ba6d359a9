#!/usr/bin/env python3
"""Live checks of dyce's dashboards, rules and metrics against a real Prometheus scraping a real
runtime and controller (scripts/checks/observability_test.sh starts all three and drives load).
Python 3 standard library only.

  scripts/checks/observability.py check --prometheus URL --runtime ADMIN_URL --controller URL
  scripts/checks/observability.py load  --url DATA_URL --model NAME --rate R --duration S   (fallback driver)

What `check` asserts (each line of its output is PASS, FAIL or NOTE; exit 1 on any FAIL):
  1. Prometheus scrapes both targets (jobs dyce-runtime and dyce-controller are up).
  2. Rules: every rule of the rules file is loaded, its health is "ok" and lastError empty;
     every recording rule returns at least one finite sample.
  3. Every series selector in every rule expression (alerting and recording) matches live
     series. This is the criterion for alerts: an alert expression is normally empty (nothing
     is wrong), so "returns data" would be the wrong test; what can silently break an alert is
     an input that never matches (wrong name, label, bucket or job), and that is checked
     exactly, selector by selector. Series that the code creates only on their first event
     (LAZY below) are reported as NOTE when absent.
  4. Every dashboard variable query returns values (namespace may be empty outside
     Kubernetes: then All = .*), and every panel query, with variables substituted as Grafana
     would (first value of each query variable, regex-escaped; text variables' defaults;
     $__rate_interval = --rate-interval), returns a non-empty result with a finite value.
  5. Every metric name a dashboard or rule uses exists in the live /metrics output of the
     runtime or the controller (or is LAZY and registered in the source).
  6. docs/metrics.md has one row per metric the code registers and per family the servers
     export, with the right type and labels; every exported metric is used by a panel, or its
     row says "not shown"; every panel a row names exists and queries that metric.
  7. Every alert has summary, description and runbook annotations, and the runbook anchor
     exists in docs/metrics.md.
  8. `promtool check metrics` on each /metrics output. The servers answer OpenMetrics whatever
     the Accept header, which promtool (a text-format 0.0.4 parser) cannot fully read: the raw
     output is checked and a failure that is only the known `unknown metric type "info"` is a
     NOTE; the same output converted to text format 0.0.4 (HELP/TYPE renamed to the sample
     names, info as gauge, # UNIT and # EOF dropped: what a text-format client emits) must
     lint with no problem at all.
"""

import argparse
import concurrent.futures
import json
import math
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dashboards as check_dashboards  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
RUNTIME_JOB, CONTROLLER_JOB = "dyce-runtime", "dyce-controller"
SOURCES = [os.path.join(ROOT, f) for f in
           ("runtime/src/service/metrics.rs", "runtime/src/service/process.rs", "runtime/src/service/live.rs",
            "controller/src/metrics.rs")]
# Series created by the code only on their first event, with the event: absent from a healthy
# run without it. (Proposed upstream: create them at start with value 0.)
LAZY = {
    "dyce_controller_push_errors_total": "created by the first failed config push",
    "dyce_controller_observed_latency_seconds": "created by the first tick with a latency to read",
    "dyce_feedback_accuracy_lower_bound": "created by the first true label (POST /v1/feedback)",
    "dyce_feedback_effective_samples": "created by the first true label (POST /v1/feedback)",
}
DASHBOARD_PREFIX = {"runtime": "dyce-runtime", "controller": "dyce-controller"}


class Report:
    """PASS / FAIL / NOTE lines and their counts."""

    def __init__(self):
        self.counts = {"PASS": 0, "FAIL": 0, "NOTE": 0}

    def line(self, kind, msg):
        self.counts[kind] += 1
        print(f"{kind} {msg}", flush=True)

    def ok(self, msg):
        self.line("PASS", msg)

    def fail(self, msg):
        self.line("FAIL", msg)

    def note(self, msg):
        self.line("NOTE", msg)

    def expect(self, cond, msg, why=""):
        if cond:
            self.ok(msg)
        else:
            self.fail(f"{msg}{': ' + why if why else ''}")
        return cond


def http_get(url, accept=None, timeout=10):
    """(status, content type, body text) of a GET."""
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode("utf-8", "replace")


class Prom:
    """The Prometheus HTTP API."""

    def __init__(self, url):
        self.url = url.rstrip("/")

    def api(self, path, **params):
        q = urllib.parse.urlencode(params, doseq=True)
        status, _, body = http_get(f"{self.url}/api/v1/{path}?{q}", timeout=30)
        doc = json.loads(body)
        if doc.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr):
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def label_values(self, label, selector=None):
        start = time.time() - 600
        if selector:
            return sorted(set(s[label] for s in self.api("series", **{"match[]": selector, "start": start})
                              if label in s))
        return self.api(f"label/{label}/values", start=start)


# ---------------------------------------------------------------------------- PromQL selectors

AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
LABEL_LIST_KW = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2"} | LABEL_LIST_KW
TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<dur>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*(?![A-Za-z0-9_]))
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(),@])
""", re.X)


def _tokens(expr):
    out, i = [], 0
    while i < len(expr):
        if expr[i] == "{":
            j, quote = i + 1, None
            while j < len(expr):
                c = expr[j]
                if quote:
                    if c == "\\":
                        j += 1
                    elif c == quote:
                        quote = None
                elif c in "\"'`":
                    quote = c
                elif c == "}":
                    break
                j += 1
            out.append(("brace", expr[i:j + 1]))
            i = j + 1
            continue
        m = TOKEN_RE.match(expr, i)
        if not m:
            raise ValueError(f"cannot tokenise {expr[i:i + 30]!r} in {expr!r}")
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
        i = m.end()
    return out


def selectors(expr):
    """(metric name, selector text) of every vector selector in a PromQL expression."""
    toks, out, i = _tokens(expr), [], 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else (None, None)
        if kind == "ident":
            low = text.lower()
            if low in LABEL_LIST_KW and nxt == ("op", "("):
                while i < len(toks) and toks[i] != ("op", ")"):
                    i += 1
            elif low in KEYWORDS or low in AGGREGATIONS or nxt == ("op", "("):
                pass
            else:
                sel = text + (nxt[1] if nxt[0] == "brace" else "")
                out.append((text, sel))
        elif kind == "brace" and (i == 0 or toks[i - 1][0] != "ident"):
            m = re.search(r'__name__\s*=\s*"([^"]+)"', text)
            out.append((m.group(1) if m else "", text))
        i += 1
    return out


# ---------------------------------------------------------------------------- exposition

def parse_exposition(text):
    """{family: (type, {sample name: set of label names})} from OpenMetrics or text format."""
    fams, types = {}, {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            types[m.group(1)] = m.group(2)
            fams.setdefault(m.group(1), (m.group(2), {}))
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{([^}]*)\})?\s", line)
        if not m:
            continue
        name, labels = m.group(1), set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', m.group(3) or ""))
        fam = name
        for suffix in ("_total", "_info", "_bucket", "_sum", "_count", "_created"):
            if name.endswith(suffix) and name[: -len(suffix)] in types:
                fam = name[: -len(suffix)]
                break
        fams.setdefault(fam, (types.get(fam, "untyped"), {}))[1].setdefault(name, set()).update(labels)
    return fams


def family_key(fam, typ):
    """The name a family is queried and documented by."""
    return {"counter": fam + "_total", "info": fam + "_info"}.get(typ, fam)


def sample_names(key, typ):
    """Sample names a documented metric is queried through."""
    if typ == "histogram":
        return {key + "_bucket", key + "_sum", key + "_count"}
    return {key}


def to_text_format(text):
    """OpenMetrics as a text-format 0.0.4 client writes it (for promtool check metrics)."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    out = []
    for line in text.splitlines():
        if line.startswith("# UNIT") or line == "# EOF":
            continue
        m = re.match(r"# (HELP|TYPE) (\S+) ?(.*)", line)
        if m:
            kind, name, rest = m.groups()
            typ = types.get(name)
            if typ == "counter":
                name += "_total"
            elif typ == "info":
                name += "_info"
                rest = "gauge" if kind == "TYPE" else rest
            out.append(f"# {kind} {name} {rest}")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def source_metrics():
    """{base name: source file} of every metric registered in the code."""
    out = {}
    for path in SOURCES:
        with open(path, encoding="utf-8") as f:
            # register(...) for the registries' metrics; the process collector names its own.
            for name in re.findall(r'(?:register(?:_with_unit)?|encode_descriptor|gauge)\(\s*"([a-z_]+)"', f.read()):
                out[name] = os.path.relpath(path, ROOT)
    return out


def registered_key(base, documented):
    """The documented key of a registered base name (None if undocumented)."""
    for cand in (base, base + "_total", base + "_info", base + "_seconds", base + "_seconds_total", base + "_bytes"):
        if cand in documented:
            return cand
    return None


# ---------------------------------------------------------------------------- docs

def slug(heading):
    """GitHub's anchor of a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def parse_docs(path):
    """({metric: row dict}, set of anchors) of docs/metrics.md."""
    rows, anchors = {}, set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            h = re.match(r"#+\s+(.*)", line)
            if h:
                anchors.add(slug(h.group(1)))
            cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| `") else []
            if len(cells) == 6:
                m = re.match(r"`([a-z_:]+)`", cells[0])
                if m:
                    rows[m.group(1)] = {"type": cells[1], "labels": set(re.findall(r"`([a-z_]+)`", cells[2])),
                                        "unit": cells[3], "shown": cells[5]}
    return rows, anchors


# ---------------------------------------------------------------------------- dashboards

def grafana_regex(value):
    """A single value as Grafana writes it into a =~ matcher (regex-escaped, in a PromQL string)."""
    esc = re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value)
    return esc.replace("\\", "\\\\")


def substitute(expr, values, rate_interval):
    builtin = {"__rate_interval": rate_interval, "__interval": "15s", "__range": "5m"}

    def rep(m):
        name = m.group(1)
        if name in builtin:
            return builtin[name]
        if name not in values:
            raise KeyError(name)
        return values[name]

    return check_dashboards.VAR_RE.sub(rep, expr)


def resolve_variables(rep, prom, dash, rate_interval):
    values = {}
    for v in dash.get("templating", {}).get("list", []):
        name, typ = v["name"], v.get("type")
        if typ == "datasource":
            continue
        if typ in ("textbox", "constant", "custom"):
            values[name] = str(v.get("current", {}).get("value") or v.get("query"))
            continue
        q = substitute(check_dashboards.variable_query(v), values, rate_interval)
        m = re.fullmatch(r"label_values\((?:(.*),\s*)?([A-Za-z_][A-Za-z0-9_]*)\)", q.strip())
        if not m:
            rep.fail(f"{dash['uid']}: variable {name}: cannot read query {q!r}")
            values[name] = ".*"
            continue
        try:
            vals = prom.label_values(m.group(2), m.group(1))
        except Exception as e:  # noqa: BLE001 (reported)
            rep.fail(f"{dash['uid']}: variable {name}: {q}: {e}")
            vals = []
        if vals:
            values[name] = grafana_regex(vals[0])
            rep.ok(f"{dash['uid']}: variable {name} = {vals[0]!r} (of {vals})")
        elif name == "namespace" and v.get("includeAll"):
            values[name] = v.get("allValue") or ".*"
            rep.note(f"{dash['uid']}: variable namespace has no values here (no Kubernetes): All = .*")
        else:
            values[name] = v.get("allValue") or ".*"
            rep.fail(f"{dash['uid']}: variable {name}: {q} returned no values")
    return values


def finite_values(result):
    vals = []
    for s in result:
        try:
            x = float(s["value"][1])
        except (KeyError, ValueError, TypeError):
            continue
        if math.isfinite(x):
            vals.append(x)
    return vals


# ---------------------------------------------------------------------------- check

def check(args):
    rep = Report()
    prom = Prom(args.prometheus)
    runtime_url, controller_url = args.runtime.rstrip("/"), args.controller.rstrip("/")

    # 1. Targets.
    deadline = time.time() + args.wait
    while True:
        targets = prom.api("targets")["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        if all(health.get(j) == "up" for j in (RUNTIME_JOB, CONTROLLER_JOB)) or time.time() > deadline:
            break
        time.sleep(1)
    for t in targets:
        rep.expect(t["health"] == "up", f"target {t['labels']['job']} {t['scrapeUrl']} is up",
                   f"health {t['health']}, lastError {t.get('lastError')!r}")
    for j in (RUNTIME_JOB, CONTROLLER_JOB):
        rep.expect(j in health, f"Prometheus has a {j} target")
    # Wait for traffic to be visible, so "no data" below is never just "too early".
    while time.time() < deadline and not prom.query("sum(rate(dyce_requests_total[1m])) > 0"):
        time.sleep(1)

    # Live expositions.
    expositions = {}
    text_expositions = {}
    for who, url in (("runtime", runtime_url), ("controller", controller_url)):
        status, ctype, body = http_get(f"{url}/metrics", accept="application/openmetrics-text;version=1.0.0")
        rep.expect(status == 200, f"{who} GET /metrics answers 200", f"got {status}")
        rep.expect(ctype.startswith("application/openmetrics-text"), f"{who} /metrics serves OpenMetrics to Prometheus",
                   f"Content-Type {ctype!r}")
        expositions[who] = body
        status, ctype, text = http_get(f"{url}/metrics", accept="text/plain;version=0.0.4")
        rep.expect(status == 200 and ctype.startswith("text/plain; version=0.0.4"),
                   f"{who} /metrics serves text format 0.0.4 when asked", f"{status} {ctype!r}")
        text_expositions[who] = text
    live = {}
    for who, body in expositions.items():
        for fam, (typ, samples) in parse_exposition(body).items():
            live[family_key(fam, typ)] = (typ, samples, who)
    live_samples = {s for (_, samples, _) in live.values() for s in samples}

    # 2. Rules.
    with open(args.rules, encoding="utf-8") as f:
        file_rules = re.findall(r"^\s*- (record|alert): (\S+)", f.read(), re.M)
    loaded = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
    by_name = {r["name"]: r for r in loaded}
    for kind, name in file_rules:
        r = by_name.get(name)
        if not rep.expect(r is not None, f"rule {name} is loaded"):
            continue
        rep.expect(r.get("health") == "ok" and not r.get("lastError"),
                   f"rule {name} evaluates (health {r.get('health')})", f"lastError {r.get('lastError')!r}")
        if kind == "record":
            res = prom.query(name)
            vals = finite_values(res)
            rep.expect(bool(vals), f"recording rule {name} has data: {[round(v, 4) for v in vals]}",
                       f"result {res}")

    # 3. Rule inputs.
    checked = set()
    for r in loaded:
        for metric, sel in selectors(r["query"]):
            if ":" in metric or sel in checked:
                continue
            checked.add(sel)
            res = prom.query(sel)
            if res:
                rep.ok(f"rule input {sel} matches {len(res)} series")
            elif metric in LAZY and metric not in live_samples:
                rep.note(f"rule input {sel} matches nothing yet: {LAZY[metric]} (none in this run)")
            else:
                rep.fail(f"rule input {sel} (in {r['name']}) matches no series")

    # 4. Dashboards.
    dash_queries = []  # (dashboard uid, panel title, expr after substitution)
    for path in sorted(args.dashboards):
        dash = check_dashboards.load(path)
        values = resolve_variables(rep, prom, dash, args.rate_interval)
        for title, ref, expr in check_dashboards.queries(dash):
            q = substitute(expr, values, args.rate_interval)
            dash_queries.append((dash["uid"], title, q))
            try:
                res = prom.query(q)
            except RuntimeError as e:
                rep.fail(f"{dash['uid']} / {title} / {ref}: {e}")
                continue
            vals = finite_values(res)
            rep.expect(bool(vals), f"{dash['uid']} / {title} / {ref}: {len(res)} series",
                       f"no finite value in {res!r:.300} for {q}")

    # 5. Metric names used anywhere exist live.
    used = {}
    for uid, title, q in dash_queries:
        for metric, _ in selectors(q):
            used.setdefault(metric, set()).add(f"{uid} / {title}")
    for r in loaded:
        for metric, _ in selectors(r["query"]):
            used.setdefault(metric, set()).add(f"rule {r['name']}")
    record_names = {n for k, n in file_rules if k == "record"}
    registered = source_metrics()
    for metric in sorted(used):
        if ":" in metric:
            rep.expect(metric in record_names, f"{metric} is a recording rule of the rules file")
        elif metric == "up":
            continue
        elif metric in live_samples:
            rep.ok(f"metric {metric} is exported ({live_by_sample(live, metric)})")
        elif metric in LAZY and any(metric.startswith(b) for b in registered):
            rep.note(f"metric {metric} is not in this run's output: {LAZY[metric]} (registered in the code)")
        else:
            rep.fail(f"metric {metric} (used by {sorted(used[metric])}) is exported by neither server")

    # 6. Docs table.
    rows, anchors = parse_docs(args.docs)
    for base, src in sorted(registered.items()):
        key = registered_key(base, rows)
        rep.expect(key is not None, f"registered metric {base} ({src}) has a row in docs/metrics.md"
                   + (f" ({key})" if key else ""))
    registered_keys = {registered_key(b, rows) for b in registered}
    for key in rows:
        rep.expect(key in registered_keys, f"docs row {key} is a metric the code registers")
    for key, (typ, samples, who) in sorted(live.items()):
        row = rows.get(key)
        if not rep.expect(row is not None, f"exported family {key} ({who}) has a docs row"):
            continue
        rep.expect(row["type"] == typ, f"docs type of {key} is {typ}", f"docs say {row['type']}")
        labels = set().union(*samples.values()) - {"le"}
        rep.expect(row["labels"] == labels, f"docs labels of {key} are {sorted(labels)}",
                   f"docs say {sorted(row['labels'])}")
    panel_exprs = {}
    for uid, title, q in dash_queries:
        panel_exprs.setdefault((uid, title), []).append(q)
    for key, row in sorted(rows.items()):
        typ = live[key][0] if key in live else row["type"]
        names = sample_names(key, typ)
        users = sorted({p for p, qs in panel_exprs.items()
                        if any(m in names for q in qs for m, _ in selectors(q))})
        shown = row["shown"]
        if shown.lower().startswith("not shown"):
            rep.ok(f"{key} is deliberately not shown ({shown})")
            continue
        rep.expect(bool(users), f"{key} is shown by {len(users)} panel(s)",
                   "no panel queries it and its docs row does not say 'not shown'")
        for ref in [s.strip() for s in shown.split(";") if s.strip()]:
            m = re.fullmatch(r"(runtime|controller):\s*(.+)", ref)
            if not m:
                rep.fail(f"docs row {key}: cannot read panel reference {ref!r} (runtime: TITLE; controller: TITLE)")
                continue
            p = (DASHBOARD_PREFIX[m.group(1)], m.group(2))
            rep.expect(p in users, f"docs: {key} is in panel {p[0]} / {p[1]}",
                       "no such panel" if p not in panel_exprs else "that panel does not query it")

    # 7. Alert annotations and runbooks.
    for r in loaded:
        if r.get("type") != "alerting":
            continue
        ann = r.get("annotations", {})
        rep.expect(all(ann.get(k) for k in ("summary", "description", "runbook")),
                   f"alert {r['name']} has summary, description and runbook")
        m = re.fullmatch(r"docs/metrics\.md#([\w-]+)", ann.get("runbook", ""))
        rep.expect(bool(m) and m.group(1) in anchors, f"alert {r['name']} runbook {ann.get('runbook')} exists")
    for a in prom.api("alerts")["alerts"]:
        rep.note(f"alert {a['labels'].get('alertname')} is {a['state']} now ({a['labels']})")

    # 8. promtool check metrics, on the text format as served (what promtool reads).
    for who, body in text_expositions.items():
        raw = promtool_check_metrics(body)
        rep.expect(raw[0] == 0 and not raw[1].strip(), f"promtool check metrics: {who} text output as served is clean",
                   f"rc {raw[0]}: {raw[1].strip()}")
    for who, body in expositions.items():
        raw = promtool_check_metrics(body)
        problems = [l for l in raw[1].strip().splitlines() if l.strip()]
        unexplained = [l for l in problems if not openmetrics_only(l, body)]
        if raw[0] == 0 and not problems:
            rep.ok(f"promtool check metrics: {who} output as served is clean")
        elif not unexplained:
            rep.note(f"promtool check metrics on the {who} output as served reports only OpenMetrics-vs-text "
                     f"format differences (rc {raw[0]}): {' | '.join(problems)}")
        else:
            rep.fail(f"promtool check metrics: {who} output as served (rc {raw[0]}): {' | '.join(unexplained)}")
        conv = promtool_check_metrics(to_text_format(body))
        rep.expect(conv[0] == 0 and not conv[1].strip(),
                   f"promtool check metrics: {who} output in text format 0.0.4 has no problems",
                   f"rc {conv[0]}: {conv[1].strip()}")

    c = rep.counts
    print(f"\ncheck_observability: {c['PASS']} passed, {c['FAIL']} failed, {c['NOTE']} notes")
    return 1 if c["FAIL"] else 0


def live_by_sample(live, sample):
    for key, (_, samples, who) in live.items():
        if sample in samples:
            return who
    return "?"


def openmetrics_only(problem, body):
    """Whether a promtool problem only reflects OpenMetrics read as text format 0.0.4: the `info`
    type, or a counter whose HELP/TYPE name (OpenMetrics: without `_total`) differs from its
    samples' name (so the text parser sees samples without help)."""
    if 'unknown metric type "info"' in problem:
        return True
    m = re.fullmatch(r"(\S+)_total no help text", problem.strip())
    return bool(m) and re.search(rf"^# TYPE {re.escape(m.group(1))} counter$", body, re.M) is not None


def promtool_check_metrics(text):
    p = subprocess.run([os.environ.get("PROMTOOL", "promtool"), "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=30)
    return p.returncode, (p.stdout + p.stderr)


# ---------------------------------------------------------------------------- fallback load

def load(args):
    """Posts OIP v2 requests of one random 28x28 UINT8 image at a constant rate."""
    url = f"{args.url.rstrip('/')}/v2/models/{args.model}/infer"
    rng = random.Random(1)
    bodies = [json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "UINT8",
                                      "data": [rng.randrange(256) for _ in range(784)]}]}).encode()
              for _ in range(16)]
    counts, lock = {}, threading.Lock()

    def one(i):
        req = urllib.request.Request(url, data=bodies[i % len(bodies)], headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                code = r.status
        except urllib.error.HTTPError as e:
            code = e.code
        except OSError:
            code = "error"
        with lock:
            counts[code] = counts.get(code, 0) + 1

    start, n = time.time(), int(args.rate * args.duration)
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        for i in range(n):
            delay = start + i / args.rate - time.time()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, i)
    print(json.dumps({"sent": n, "status": {str(k): v for k, v in counts.items()}}))
    return 0 if counts.get(200) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--prometheus", required=True)
    c.add_argument("--runtime", required=True, help="runtime admin URL")
    c.add_argument("--controller", required=True, help="controller URL")
    c.add_argument("--rules", default=os.path.join(ROOT, "charts/dyce/rules/dyce.rules.yaml"))
    c.add_argument("--dashboards", nargs="+",
                   default=[os.path.join(ROOT, "charts/dyce/dashboards", f) for f in sorted(os.listdir(os.path.join(ROOT, "charts/dyce/dashboards")))
                            if f.endswith(".json")])
    c.add_argument("--docs", default=os.path.join(ROOT, "docs/metrics.md"))
    c.add_argument("--rate-interval", default="1m", help="what $__rate_interval becomes")
    c.add_argument("--wait", type=float, default=60, help="seconds to wait for targets and traffic")
    l = sub.add_parser("load")
    l.add_argument("--url", required=True)
    l.add_argument("--model", required=True)
    l.add_argument("--rate", type=float, default=50)
    l.add_argument("--duration", type=float, default=20)
    args = ap.parse_args()
    return check(args) if args.cmd == "check" else load(args)


if __name__ == "__main__":
    sys.exit(main())
