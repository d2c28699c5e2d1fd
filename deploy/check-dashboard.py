#!/usr/bin/env python3
"""Loader test of deploy/grafana-dashboard.json (run by deploy/check.sh).

Checks what Grafana would need to load the dashboard and what makes its panels show real data:

  * structure: a JSON schema of the fields Grafana reads (dashboard, panels, targets, variables);
    unique panel ids, grid positions inside 24 columns that do not overlap;
  * datasource templating: a `datasource` variable of type prometheus, and every panel, target,
    query variable and annotation uses `${datasource}` (no hard-coded datasource uid);
  * every `$variable` an expression uses is defined (or is one of Grafana's `$__…`);
  * every expression parses as PromQL (promql-parser, after Grafana's variables are substituted);
  * every metric it selects is one the proxy really exports (a string literal naming it in
    proxy/src or common/src; `_bucket`/`_sum`/`_count` only for histograms) and is documented in
    README.md's Metrics table, or is one of the few kube-state-metrics series listed in EXTERNAL;
  * every tidegate selector filters `namespace="$namespace"` and `pod=~"$pod"`, and every label
    an expression matches on or groups by is one the metric has (README's table, plus the target
    labels Prometheus adds);
  * and, so that the test can fail, mutated copies (a misspelt metric, a label the metric lacks,
    a hard-coded datasource, an unparsable expression) must each be rejected.

    check-dashboard.py [DASHBOARD] [--root REPO]
"""

import argparse
import copy
import json
import pathlib
import re
import sys

import jsonschema
import promql_parser

# Labels Prometheus (through the ServiceMonitor) adds to every series of a target.
TARGET_LABELS = {"namespace", "pod", "service", "endpoint", "job", "instance", "container"}
# Series from kube-state-metrics the dashboard may use, with their own labels.
EXTERNAL = {
    "kube_deployment_spec_replicas": {"deployment"},
    "kube_deployment_status_replicas_ready": {"deployment"},
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_VARS = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s"}


def strict(props, required=(), extra=True):
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": extra}


GRID = strict({k: {"type": "integer", "minimum": 0} for k in "xywh"}, "xywh", extra=False)
TARGET = strict({"refId": {"type": "string", "minLength": 1}, "expr": {"type": "string", "minLength": 1},
                 "legendFormat": {"type": "string"}, "datasource": {"type": "object"}},
                ["refId", "expr", "datasource"])
PANEL = {"oneOf": [
    strict({"type": {"const": "row"}, "title": {"type": "string"}, "id": {"type": "integer"},
            "gridPos": GRID, "collapsed": {"const": False}, "panels": {"maxItems": 0}},
           ["type", "title", "id", "gridPos"]),
    strict({"type": {"enum": ["timeseries", "stat", "bargauge", "gauge", "table", "text"]},
            "title": {"type": "string", "minLength": 1}, "description": {"type": "string", "minLength": 1},
            "id": {"type": "integer"}, "gridPos": GRID, "datasource": {"type": "object"},
            "targets": {"type": "array", "minItems": 1, "items": TARGET},
            "fieldConfig": strict({"defaults": {"type": "object"}, "overrides": {"type": "array"}},
                                  ["defaults", "overrides"])},
           ["type", "title", "description", "id", "gridPos", "datasource", "targets", "fieldConfig"]),
]}
DASHBOARD = strict({
    "title": {"type": "string", "minLength": 1}, "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
    "schemaVersion": {"type": "integer", "minimum": 36}, "time": strict({"from": {}, "to": {}}, ["from", "to"]),
    "refresh": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
    "panels": {"type": "array", "minItems": 1, "items": PANEL},
    "templating": strict({"list": {"type": "array", "items": strict(
        {"name": {"type": "string"}, "type": {"enum": ["datasource", "query", "textbox", "custom", "constant"]}},
        ["name", "type"])}}, ["list"]),
    "annotations": strict({"list": {"type": "array"}}, ["list"]),
}, ["title", "uid", "schemaVersion", "time", "panels", "templating"])


def exported_metrics(root):
    """{name: is_histogram} for every `"tidegate_…"` string literal in proxy/src and common/src."""
    found = {}
    for path in sorted([*root.glob("proxy/src/**/*.rs"), *root.glob("common/src/**/*.rs")]):
        text = path.read_text()
        for m in re.finditer(r'"(tidegate_[a-z0-9_]+)"', text):
            # A histogram is made next to its name (`histogram_vec(registry, "…"`,
            # `let name = "…"; HistogramOpts::new(name, …)`): look around the literal.
            near = text[max(0, m.start() - 200):m.end() + 120].lower()
            histogram = "histogram" in near
            found[m.group(1)] = found.get(m.group(1), False) or histogram
    return found


def documented_labels(root):
    """{metric: {labels}} from README.md's Metrics table (rows `| `name` | `l1`, `l2` | … |`)."""
    table = {}
    for line in (root / "README.md").read_text().splitlines():
        m = re.match(r"\|\s*`(tidegate_[a-z0-9_]+)`\s*\|([^|]*)\|", line)
        if m:
            table[m.group(1)] = set(re.findall(r"`([a-z_]+)`", m.group(2)))
    return table


def substitute(expr):
    """The expression as Prometheus would get it from Grafana, for parsing."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{?(\w+)\}?", r"var_\1", expr)


def walk(node, selectors, groupings):
    """Collects (name, matchers) of every selector and (labels, selectors below) of every by/without."""
    kind = type(node).__name__
    if kind == "VectorSelector":
        selectors.append((node.name, {(m.name, m.value) for m in node.matchers.matchers}))
        return
    if kind == "MatrixSelector":
        return walk(node.vector_selector, selectors, groupings)
    if kind == "AggregateExpr":
        inner = []
        walk(node.expr, inner, groupings)
        selectors.extend(inner)
        if node.modifier is not None:
            groupings.append((set(node.modifier.labels), inner))
        return
    children = {"Call": lambda: node.args, "BinaryExpr": lambda: [node.lhs, node.rhs],
                "ParenExpr": lambda: [node.expr], "UnaryExpr": lambda: [node.expr],
                "SubqueryExpr": lambda: [node.expr]}
    for child in children.get(kind, lambda: [])():
        walk(child, selectors, groupings)


def metric_labels(name, exported, documented):
    """The labels a series of metric NAME can carry, or None if the proxy does not export it."""
    if name in EXTERNAL:
        return EXTERNAL[name] | TARGET_LABELS
    base = name
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and exported.get(name[: -len(suffix)]):
            base = name[: -len(suffix)]
    if base not in exported or base not in documented:
        return None
    return documented[base] | TARGET_LABELS | ({"le"} if name.endswith("_bucket") else set())


def check_expr(where, expr, exported, documented, variables, errors, filtered=True):
    for var in re.findall(r"\$\{?(\w+)\}?", expr):
        if var not in variables and var not in GRAFANA_VARS:
            errors.append(f"{where}: ${var} is not a dashboard variable")
    try:
        ast = promql_parser.parse(substitute(expr))
    except Exception as e:  # the parser raises its own exception types
        errors.append(f"{where}: not PromQL: {e}")
        return
    selectors, groupings = [], []
    walk(ast, selectors, groupings)
    for name, matchers in selectors:
        labels = metric_labels(name, exported, documented)
        if labels is None:
            errors.append(f"{where}: {name} is not a metric the proxy exports and README documents")
            continue
        for label, _ in matchers:
            if label not in labels:
                errors.append(f"{where}: {name} has no label `{label}`")
        if filtered and name.startswith("tidegate_") and not {("namespace", "var_namespace"), ("pod", "var_pod")} <= matchers:
            errors.append(f'{where}: {name} must filter namespace="$namespace", pod=~"$pod"')
    for by, inner in groupings:
        have = set().union(*(metric_labels(n, exported, documented) or set() for n, _ in inner))
        for label in sorted(by - have):
            errors.append(f"{where}: groups by `{label}`, which none of its metrics has")


def check_layout(panels, errors):
    ids, cells = set(), {}
    for p in panels:
        if p["id"] in ids:
            errors.append(f"panel id {p['id']} is used twice")
        ids.add(p["id"])
        g = p["gridPos"]
        if g["x"] + g["w"] > 24 or g["w"] == 0 or g["h"] == 0:
            errors.append(f"{p['title']!r}: gridPos {g} is outside the 24 columns")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    errors.append(f"{p['title']!r} overlaps {cells[(x, y)]!r} at {x},{y}")
                    break
                cells[(x, y)] = p["title"]
            else:
                continue
            break


def validate(dash, exported, documented):
    """Every problem found, as text; empty when the dashboard passes."""
    try:
        jsonschema.validate(dash, DASHBOARD)
    except jsonschema.ValidationError as e:
        return [f"schema: {e.message} at {'/'.join(map(str, e.absolute_path))}"]
    errors = []
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errors.append("no `datasource` variable of type datasource, query prometheus")
    for v in variables.values():
        if v["type"] == "query":
            if v.get("datasource") != DATASOURCE:
                errors.append(f"variable {v['name']}: datasource is not ${{datasource}}")
            selector = re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["definition"])
            check_expr(f"variable {v['name']}", selector, exported, documented, variables, errors,
                       filtered=False)
    for a in dash.get("annotations", {}).get("list", []):
        if not a.get("builtIn"):
            if a.get("datasource") != DATASOURCE:
                errors.append(f"annotation {a.get('name')}: datasource is not ${{datasource}}")
            check_expr(f"annotation {a.get('name')}", a.get("expr", ""), exported, documented, variables, errors)
    check_layout(dash["panels"], errors)
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        refs = [t["refId"] for t in p["targets"]]
        if len(set(refs)) != len(refs):
            errors.append(f"{p['title']!r}: refIds repeat: {refs}")
        for t in [p, *p["targets"]]:
            if t["datasource"] != DATASOURCE:
                errors.append(f"{p['title']!r}: datasource {t['datasource']} is not ${{datasource}}")
        for t in p["targets"]:
            check_expr(f"{p['title']!r} {t['refId']}", t["expr"], exported, documented, variables, errors)
    return errors


def mutations(dash):
    """(what, broken copy) pairs that validate() must reject."""
    def first_target(d):
        return next(p for p in d["panels"] if p["type"] != "row")["targets"][0]
    out = []
    for what, change in [
        ("a misspelt metric", lambda t: t.update(expr=t["expr"].replace("tidegate_", "tidegate_x", 1))),
        ("a label the metric lacks", lambda t: t.update(expr=re.sub(r"\bby \(\w+\)", "by (tenant)", t["expr"])
                                                         if " by (" in t["expr"] else "sum by (tenant) (" + t["expr"] + ")")),
        ("a hard-coded datasource", lambda t: t.update(datasource={"type": "prometheus", "uid": "P1809F7CD0C75ACF3"})),
        ("an expression that is not PromQL", lambda t: t.update(expr=t["expr"] + " +")),
    ]:
        broken = copy.deepcopy(dash)
        change(first_target(broken))
        out.append((what, broken))
    return out


def main():
    here = pathlib.Path(__file__).resolve().parent
    ap = argparse.ArgumentParser()
    ap.add_argument("dashboard", nargs="?", default=str(here / "grafana-dashboard.json"))
    ap.add_argument("--root", default=str(here.parent))
    args = ap.parse_args()
    root = pathlib.Path(args.root)
    exported, documented = exported_metrics(root), documented_labels(root)
    if not exported or not documented:
        print(f"check-dashboard: found {len(exported)} exported and {len(documented)} documented metrics")
        return 1
    dash = json.loads(pathlib.Path(args.dashboard).read_text())
    errors = validate(dash, exported, documented)
    for e in errors:
        print(f"check-dashboard: {e}")
    if errors:
        return 1
    for what, broken in mutations(dash):
        if not validate(broken, exported, documented):
            print(f"check-dashboard: a copy with {what} passed; the check is broken")
            return 1
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    used = sorted({n for p in panels for t in p["targets"] for n in re.findall(r"\b(?:tidegate|kube)_\w+", t["expr"])})
    print(f"grafana-dashboard.json: {len(panels)} panels, {sum(len(p['targets']) for p in panels)} queries "
          f"over {len(used)} metrics, all exported and documented; 4 broken copies rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
