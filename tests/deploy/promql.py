"""The metric names dashboards may rely on, and a checker for PromQL expressions.

The catalogue mirrors the metric contract of the gateway (issue 3 and later issues); a
dashboard query that names anything else would silently show "No data".
"""

from __future__ import annotations

import re

# name -> (type, labels)
METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "ttc_requests_total": ("counter", frozenset({"tenant", "model", "status"})),
    "ttc_request_duration_seconds": ("histogram", frozenset({"tenant", "model"})),
    "ttc_tokens_total": ("counter", frozenset({"tenant", "model", "kind"})),
    "ttc_cost_usd_total": ("counter", frozenset({"tenant", "model"})),
    "ttc_upstream_errors_total": ("counter", frozenset({"model", "kind"})),
    "ttc_budget_remaining_usd": ("gauge", frozenset({"tenant", "window"})),
    "ttc_router_decisions_total": ("counter", frozenset({"tenant", "model"})),
    "ttc_strategy_requests_total": ("counter", frozenset({"tenant", "strategy"})),
}

# Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})


def series_names() -> dict[str, frozenset[str]]:
    """Every series name an exporter produces for the catalogue, with its labels."""
    out: dict[str, frozenset[str]] = {}
    for name, (kind, labels) in METRICS.items():
        if kind == "histogram":
            out[f"{name}_bucket"] = labels | {"le"}
            out[f"{name}_sum"] = labels
            out[f"{name}_count"] = labels
        else:
            out[name] = labels
    return out


KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
     "inf", "nan"}
)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}")
_IDENT = re.compile(r"(?<![A-Za-z0-9_:$.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*")


def check_expr(expr: str) -> list[str]:
    """Problems with one PromQL expression: unknown metrics, or labels the metrics lack.

    Not a full PromQL parser: it strips strings, ranges and label lists, then treats every
    remaining identifier that is not a function call or keyword as a metric name.
    """
    problems: list[str] = []
    known = series_names()
    if expr.count("(") != expr.count(")"):
        problems.append(f"unbalanced parentheses in {expr!r}")
    labels_used: set[str] = set()
    text = expr
    # Label matchers inside {...}: remember the label names, then drop the braces.
    for match in _SELECTOR.finditer(_STRING.sub('""', text)):
        for matcher in match.group(2).split(","):
            if matcher.strip():
                found = _MATCHER.match(matcher)
                if not found:
                    problems.append(f"cannot read label matcher {matcher!r}")
                else:
                    labels_used.add(found.group(1))
    text = _STRING.sub('""', text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = _RANGE.sub(" ", text)
    for match in _GROUPING.finditer(text):
        labels_used.update(label.strip() for label in match.group(2).split(",") if label.strip())
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", " ", text)  # Grafana variables
    metrics: set[str] = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        if re.fullmatch(r"\d+(e\d+)?", name):
            continue
        metrics.add(name)
    if not metrics:
        problems.append(f"no metric referenced in {expr!r}")
    allowed: set[str] = set(TARGET_LABELS)
    for name in sorted(metrics):
        if name not in known:
            problems.append(f"unknown metric {name!r} in {expr!r}")
        else:
            allowed |= known[name]
    if not problems:
        extra = labels_used - allowed - {"__name__"}
        if extra:
            problems.append(f"labels {sorted(extra)} are not on {sorted(metrics)} in {expr!r}")
    return problems
