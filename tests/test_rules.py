"""The shipped alert rules and dashboard: promtool checks and unit tests (tests/rules/), the
thresholds exported as constants, and the printing entry points."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tenant_trace.local import rules

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "tenant_trace" / "local" / "alerts.yml"
RULE_TESTS = sorted((ROOT / "tests" / "rules").glob("*.yml"))


def binary(name: str) -> str:
    """The path of a Prometheus tool; skipped when missing, except in CI (which installs
    the Debian package ``prometheus``), where a missing tool fails the test."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package 'prometheus')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules.ALERTS)} rules found" in done.stdout


def test_promtool_rule_unit_tests() -> None:
    """In each scenario exactly the failing tenant's alert fires (tests/rules/*.yml)."""
    assert RULE_TESTS
    done = promtool("test", "rules", *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_rule_unit_test_catches_a_healthy_tenant_alerting(tmp_path: Path) -> None:
    """The unit tests can fail: with the failure threshold lowered below tenant-a's 2%,
    tenant-a fires too and promtool says so."""
    lowered = tmp_path / "alerts.yml"
    lowered.write_text(ALERTS.read_text().replace(") > 0.05", ") > 0.01"))
    test = tmp_path / "test.yml"
    test.write_text(
        (ROOT / "tests" / "rules" / "alerts_test.yml")
        .read_text()
        .replace("../../tenant_trace/local/alerts.yml", str(lowered))
    )
    done = promtool("test", "rules", str(test))
    assert done.returncode != 0
    assert 'tenant_id="tenant-a"' in done.stdout + done.stderr


def alert_block(name: str) -> str:
    text = rules.alert_rules()
    start = text.index(f"- alert: {name}\n")
    end = text.find("- alert:", start + 1)
    return text[start : end if end > 0 else None]


def test_the_constants_are_the_thresholds_of_the_rules() -> None:
    """Whoever evaluates these rules elsewhere uses the constants: they must match."""
    minutes = f"[{rules.WINDOW_SECONDS // 60}m]"
    assert rules.WINDOW.total_seconds() == rules.WINDOW_SECONDS == 600
    assert rules.FAILURE_RATE == 0.05
    expected = {
        "TenantRunFailureRateHigh": [
            minutes,
            f") > {rules.FAILURE_RATE:g}\n",
            f">= {rules.MIN_RUNS}\n",
        ],
        "TenantTokenUsageAnomaly": [
            minutes,
            f"> {rules.TOKEN_ANOMALY_FACTOR:g} * ",
            f"[{rules.TOKEN_BASELINE.days}d] offset {rules.WINDOW_SECONDS // 60}m",
            f">= {rules.MIN_TOKENS}\n",
        ],
        "TenantToolErrorRateHigh": [
            minutes,
            f") > {rules.TOOL_ERROR_RATE:g}\n",
            f">= {rules.MIN_TOOL_CALLS}\n",
        ],
        "TenantRunLatencyHigh": [
            minutes,
            f"histogram_quantile({rules.LATENCY_QUANTILE:g}, sum by (tenant_id, le)",
            f"> {rules.LATENCY_FACTOR:g} * scalar(histogram_quantile({rules.LATENCY_QUANTILE:g}",
            f">= {rules.MIN_RUNS}\n",
        ],
    }
    assert set(expected) == set(rules.ALERTS)
    assert rules.TOKEN_BASELINE.days * 86400 == rules.TOKEN_BASELINE_SECONDS
    for name, parts in expected.items():
        block = alert_block(name)
        for part in parts:
            assert part in block, (name, part)
        # Every range in the expression is the window (or the token baseline).
        ranges = set(re.findall(r"\[(\w+)\]", block))
        assert ranges <= {"10m", f"{rules.TOKEN_BASELINE.days}d"}, (name, ranges)


def dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(rules.dashboard())
    return result


def targets() -> list[str]:
    return [t["expr"] for panel in dashboard()["panels"] for t in panel["targets"]]


def test_the_dashboard_has_a_tenant_variable_used_by_its_panels() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    tenant = variables["tenant"]
    assert tenant["type"] == "query" and tenant["multi"] and tenant["includeAll"]
    assert "tenant_id" in tenant["definition"]
    titles = " ".join(p["title"] for p in dashboard()["panels"])
    for wanted in ["p50 / p95 / p99", "Tokens per day", "Tool error rate", "failure rate"]:
        assert wanted in titles
    per_tenant = [e for e in targets() if "tenant_id" in e and "sum by (reason)" not in e]
    assert per_tenant and all('tenant_id=~"$tenant"' in e for e in per_tenant)


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool checks each panel query, as a recording rule with Grafana's variables filled."""
    exprs = [e.replace("$tenant", ".*").replace("$__rate_interval", "5m") for e in targets()]
    group = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps(group))  # JSON is YAML
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
