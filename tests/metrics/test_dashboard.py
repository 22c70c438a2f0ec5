"""The Grafana dashboard in deploy/ queries only metrics the services define."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

import limiquantix.api.metrics as api_metrics
import limiquantix.common.metrics
import limiquantix.image_library.metrics
import limiquantix.node_agent.metrics  # noqa: F401  (registers its metrics)

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"
_NAME = re.compile(r"\blq_[a-z0-9_]+\b")


def exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


@pytest.fixture
def registered_names() -> Iterator[set[str]]:
    """Every sample name (``_bucket``, ``_total``... included) the services can expose."""
    collector = api_metrics.VmCollector(web.Application())  # lq_vms exists once the app runs
    REGISTRY.register(collector)
    try:
        names: set[str] = set()
        for family in REGISTRY.collect():
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
        # Families with labels have no samples until used: add what their type implies.
        for name, kind in ((f.name, f.type) for f in REGISTRY.collect()):
            if kind == "histogram":
                names.update(f"{name}_{s}" for s in ("bucket", "sum", "count"))
            elif kind == "counter":
                names.add(f"{name}_total")
        yield names
    finally:
        REGISTRY.unregister(collector)


def test_every_dashboard_query_names_an_existing_metric(registered_names: set[str]) -> None:
    used = {name for expr in exprs() for name in _NAME.findall(expr)}
    assert len(used) >= 15, used  # the dashboard covers every area of issue 17
    assert used <= registered_names, sorted(used - registered_names)


def test_dashboard_uses_every_lq_metric_family(registered_names: set[str]) -> None:
    """A metric nobody charts is either missing from the dashboard or not worth keeping."""
    text = " ".join(exprs())
    families = {f.name for f in REGISTRY.collect() if f.name.startswith("lq_")}
    unused = {name for name in families if not re.search(rf"\b{name}(_total|_bucket|_count"
                                                        rf"|_sum)?\b", text)}
    assert unused <= {"lq_nats_disconnects", "lq_events_published",
                      "lq_image_file_requests"}, sorted(unused)
