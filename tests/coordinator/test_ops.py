"""The ops kit in ops/: Prometheus alert rules pass `promtool check rules` and their unit
tests, and every metric the rules and the Grafana dashboard query is one that a running
coordinator's /metrics exposes (a renamed metric must break this test, not a dashboard)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from dgpu.cli.main import cli as dgpu_main
from dgpu.coordinator.db import is_database_url
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
    assert "SUCCESS: 7 rules found" in checked.stdout


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


# -- systemd units and their example settings ------------------------------------------

SYSTEMD = OPS / "systemd"
UNITS = {
    "dgpu-coordinator.service": "coordinator.env",
    "dgpu-bootstrap.service": "bootstrap.env",
    "dgpu-provider.service": "provider.env",
}
HARDENING = {
    "User": "dgpu",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "Restart": "on-failure",
    "CapabilityBoundingSet": "",
}


def _unit(path: Path) -> dict[str, str]:
    keys: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            keys[key.strip()] = value.strip()
    return keys


def _env(path: Path) -> dict[str, str]:
    return _unit(path)


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_systemd_units_run_the_real_command_line(unit: str, tmp_path: Path) -> None:
    """Each unit is hardened, and its ExecStart, with the example settings, parses with the
    real ``dgpu`` command line (options renamed or removed break this test)."""
    keys = _unit(SYSTEMD / unit)
    for key, value in HARDENING.items():
        assert keys.get(key) == value, (unit, key)
    assert keys["EnvironmentFile"] == f"/etc/dgpu/{UNITS[unit]}"
    env = _env(SYSTEMD / UNITS[unit]) | {"STATE_DIRECTORY": str(tmp_path / "state")}
    words = shlex.split(keys["ExecStart"])
    assert words[0] == "/opt/dgpu/bin/dgpu"
    args: list[str] = []
    for word in words[1:]:
        value = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], word)  # KeyError: unset
        if value.startswith("/etc/dgpu/"):  # files the operator provides: stand-ins here
            stand_in = tmp_path / Path(value).name
            stand_in.write_text("{}")
            value = str(stand_in)
        args.append(value)
    (tmp_path / "state").mkdir()
    group: Any = dgpu_main
    while isinstance(group, click.Group):
        ctx = group.make_context(group.name or "dgpu", list(args), resilient_parsing=True)
        name = args.pop(0)
        group = group.get_command(ctx, name)
        assert group is not None, name
    leaf: click.Command = group
    ctx = leaf.make_context(leaf.name or "", args)  # parses and converts every option
    assert not ctx.args, ctx.args


def test_the_example_coordinator_settings_name_a_postgresql_database() -> None:
    env = _env(SYSTEMD / "coordinator.env")
    assert is_database_url(env["DGPU_DB"])
    assert env["DGPU_TRUSTED_PROXY"] and float(env["DGPU_SETTLER_LEASE"]) > 0
