"""The Grafana dashboard is built only on the metrics src/notifsvc/metrics.py defines, with
their real label names, and shows every one of them."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from notifsvc import metrics
from unit.deploy.support import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "notifsvc.json"
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
SERIES = re.compile(r"\b(notifsvc_[a-z0-9_]+)\b")
SELECTOR = re.compile(r"\b(notifsvc_[a-z0-9_]+)\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


@functools.cache
def defined() -> dict[str, tuple[MetricWrapperBase, set[str]]]:
    """Every series name a metrics.py metric exposes -> (metric, its label names)."""
    out: dict[str, tuple[MetricWrapperBase, set[str]]] = {}
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        name: str = metric._name
        labels = set(metric._labelnames)
        if isinstance(metric, Counter):
            out[f"{name}_total"] = (metric, labels)
        elif isinstance(metric, Histogram):
            out[f"{name}_bucket"] = (metric, labels | {"le"})
            out[f"{name}_sum"] = (metric, labels)
            out[f"{name}_count"] = (metric, labels)
        elif isinstance(metric, Gauge):
            out[name] = (metric, labels)
        else:  # pragma: no cover - a new metric type needs a line here
            raise AssertionError(f"unhandled metric type {type(metric).__name__}")
    return out


def expressions() -> list[tuple[str, str]]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_every_expression_uses_defined_series_and_labels() -> None:
    known = defined()
    assert expressions()
    for title, expr in expressions():
        used = SERIES.findall(expr)
        assert used, f"{title}: no notifsvc metric in {expr}"
        unknown = [s for s in used if s not in known]
        assert not unknown, f"{title}: {unknown} are not defined in notifsvc/metrics.py"
        available = set().union(*(known[s][1] for s in used)) | TARGET_LABELS
        for series, matchers in SELECTOR.findall(expr):
            for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers):
                assert label in known[series][1] | TARGET_LABELS, f"{title}: {series}{{{label}}}"
        for group in GROUPING.findall(expr):
            labels = {part.strip() for part in group.split(",") if part.strip()}
            assert labels <= available, f"{title}: by ({', '.join(sorted(labels - available))})"


def test_every_metric_is_on_the_dashboard() -> None:
    shown = {defined()[s][0] for _, expr in expressions() for s in SERIES.findall(expr)}
    missing = [m._name for m, _ in defined().values() if m not in shown]
    assert not missing, f"not on the dashboard: {sorted(set(missing))}"


def test_latency_panels_are_quantiles_of_histograms() -> None:
    for title, expr in expressions():
        if "histogram_quantile" in expr:
            assert re.search(r"by \(le\b", expr), f"{title}: quantiles need the le label"
            assert "_bucket" in expr, title


def test_panels_are_laid_out_without_overlap() -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
