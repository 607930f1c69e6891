"""The ops kit in ops/: Prometheus alert rules pass `promtool check rules` and their unit
tests, and every metric the rules and the Grafana dashboard query is one that a running
coordinator's /metrics exposes (a renamed metric must break this test, not a dashboard)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.coordinator.conftest import Server

OPS = Path(__file__).resolve().parents[2] / "ops"
RULES = OPS / "alerts.yml"
DASHBOARD = OPS / "grafana-dashboard.json"
# Prometheus's own series (not the coordinator's)
PROMETHEUS_BUILTIN = frozenset({"up"})
_METRIC = re.compile(r"\b(dgpu_[a-z0-9_]+|up)\b")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    # Debian's prometheus package, installed by scripts/system-deps.sh
    binary = shutil.which("promtool")
    assert binary is not None, "promtool is missing: run scripts/system-deps.sh"
    return subprocess.run(
        [binary, *args], cwd=OPS, capture_output=True, text=True, timeout=120, check=False
    )


def test_alert_rules_pass_promtool() -> None:
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout


def test_alert_rules_fire_when_they_should() -> None:
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _exposed_names(server: Server) -> set[str]:
    """Sample names /metrics offers, from its HELP/TYPE lines (a labelled counter has no
    sample before its first increment but is declared all the same)."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        http.get("/api/v1/offers")
        text = http.get("/metrics").text
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ()))
    return names


def _dashboard_exprs(doc: dict[str, Any]) -> list[str]:
    return [t["expr"] for panel in doc["panels"] for t in panel.get("targets", [])]


def _rule_exprs(rules: str) -> list[str]:
    """Each rule's ``expr`` block (every rule in alerts.yml has a ``for:`` after it)."""
    found = re.findall(r"expr: \|?\s*\n?(.*?)(?:\n\s+for:)", rules, re.S)
    assert len(found) == rules.count("- alert:"), found
    return found


def test_dashboard_and_rules_query_only_exposed_metrics(server: Server) -> None:
    exposed = _exposed_names(server)
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    exprs = _dashboard_exprs(dashboard) + _rule_exprs(RULES.read_text())
    queried = {name for expr in exprs for name in _METRIC.findall(expr)}
    assert len(queried) >= 10, queried
    unknown = queried - exposed - PROMETHEUS_BUILTIN
    assert not unknown, f"not exposed by /metrics: {sorted(unknown)}"
