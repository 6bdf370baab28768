"""The chart's Grafana dashboard and Prometheus alert rules: rendered by Helm's engine, valid
Kubernetes objects, and every query names a metric that flywheel really exports."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from flywheel.runtime.serve.telemetry import EXPORTED_METRICS
from flywheel.settings import Settings

from ..server.helpers import TEAMS, MemoryBackend, running_plane
from .conftest import Validate
from .test_chart import CHART, NAMESPACE, RELEASE, render

#: A metric name in a PromQL expression (flywheel's own and the gateway's, through Ray).
_NAME = re.compile(r"\b(?:ray_)?flywheel_[a-z0-9_]+\b")
_HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
ALERTS = {
    "FlywheelModelDrift",
    "FlywheelModelErrorRate",
    "FlywheelModelLatencyHigh",
    "FlywheelRequestLogLosingRecords",
    "FlywheelQueueStuck",
}


@pytest.fixture(scope="module")
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every family the control plane's /metrics serves (scraped), and the gateway's."""
    settings = Settings(home=tmp_path_factory.mktemp("home"))
    with running_plane(settings, TEAMS, MemoryBackend()) as plane:
        text = plane.http.get("/metrics", headers=plane.admin).text
    stored = {  # the names Prometheus stores (a counter's samples end in _total)
        f"{f.name}_total" if f.type == "counter" else f.name
        for f in text_string_to_metric_families(text)
    }
    return stored | set(EXPORTED_METRICS)


def _by_name(objects: list[dict[str, Any]], suffix: str) -> dict[str, Any] | None:
    found = [o for o in objects if o["metadata"]["name"] == f"{RELEASE}-{suffix}"]
    return found[0] if found else None


def _names_in(expr: str) -> set[str]:
    names = set()
    for name in _NAME.findall(expr):
        for suffix in _HISTOGRAM_SUFFIXES:
            name = name.removesuffix(suffix)
        names.add(name)
    return names


def test_the_dashboard_is_a_labelled_configmap_whose_panels_query_exported_metrics(
    chart: helm.Chart, validate: Validate, exported: set[str]
) -> None:
    objects = render(chart, {})
    dashboard = _by_name(objects, "dashboard")
    assert dashboard is not None and dashboard["kind"] == "ConfigMap"
    validate(dashboard)
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(dashboard["data"]["flywheel.json"])
    assert board == json.loads((CHART / "dashboards" / "flywheel.json").read_text())
    queried = set()
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            names = _names_in(target["expr"])
            assert names and names <= exported, (panel["title"], names - exported)
            queried |= names
    assert queried == exported  # a panel for every metric


def test_the_alert_rules_parse_and_query_exported_metrics(
    chart: helm.Chart, validate: Validate, exported: set[str]
) -> None:
    values = {"monitoring": {"alertRules": {"errorRatio": 0.02, "queueStuckMinutes": 45}}}
    rules_map = _by_name(render(chart, values), "alert-rules")
    assert rules_map is not None
    validate(rules_map)
    rule_file = yaml.safe_load(rules_map["data"]["flywheel.rules.yaml"])
    rules = [rule for group in rule_file["groups"] for rule in group["rules"]]
    assert {r["alert"] for r in rules} == ALERTS
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert re.fullmatch(r"\d+[smh]", rule["for"]) and rule["labels"]["severity"]
        names = _names_in(rule["expr"])
        assert names and names <= exported, (rule["alert"], names - exported)
        assert "{{ $labels" not in rule["expr"] and rule["annotations"]["summary"]
    by_alert = {r["alert"]: r for r in rules}
    assert "> 0.02" in by_alert["FlywheelModelErrorRate"]["expr"]
    assert "[45m]" in by_alert["FlywheelQueueStuck"]["expr"]
    assert by_alert["FlywheelQueueStuck"]["for"] == "45m"
    assert "{{ $labels.model }}" in by_alert["FlywheelModelDrift"]["annotations"]["summary"]


def test_both_can_be_turned_off(chart: helm.Chart) -> None:
    off = {"monitoring": {"dashboard": {"enabled": False}, "alertRules": {"enabled": False}}}
    objects = render(chart, off)
    assert _by_name(objects, "dashboard") is None and _by_name(objects, "alert-rules") is None


def test_the_values_schema_rejects_a_bad_threshold(chart: helm.Chart) -> None:
    bad = {"monitoring": {"alertRules": {"errorRatio": 5}}}
    with pytest.raises(helm.HelmValuesError, match="errorRatio"):
        chart.render(bad, name=RELEASE, namespace=NAMESPACE)
