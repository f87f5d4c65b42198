"""Prometheus alert rules and a Grafana dashboard for tenant-trace's metrics, shipped in the
package, and the thresholds they use::

    tenant-trace rules > tenant-trace-alerts.yml           # Prometheus rule_files
    tenant-trace dashboard > tenant-trace-dashboard.json   # Grafana import

The constants below are the thresholds written in ``alerts.yml``; code that evaluates the
same rules elsewhere (over a local span store) must use them, so that both agree. A tenant's
alert fires when, over `WINDOW`:

- ``TenantRunFailureRateHigh``: more than `FAILURE_RATE` of its agent runs failed, out of at
  least `MIN_RUNS` runs;
- ``TenantTokenUsageAnomaly``: its token rate is over `TOKEN_ANOMALY_FACTOR` times its own
  average over the `TOKEN_BASELINE` before, and it used at least `MIN_TOKENS` tokens;
- ``TenantToolErrorRateHigh``: more than `TOOL_ERROR_RATE` of its tool calls failed, out of
  at least `MIN_TOOL_CALLS`;
- ``TenantRunLatencyHigh``: its `LATENCY_QUANTILE` run duration is over `LATENCY_FACTOR`
  times the fleet's (all tenants together), out of at least `MIN_RUNS` runs.
"""

from __future__ import annotations

from datetime import timedelta
from importlib import resources

__all__ = [
    "ALERTS",
    "FAILURE_RATE",
    "LATENCY_FACTOR",
    "LATENCY_QUANTILE",
    "MIN_RUNS",
    "MIN_TOKENS",
    "MIN_TOOL_CALLS",
    "TOKEN_ANOMALY_FACTOR",
    "TOKEN_BASELINE",
    "TOKEN_BASELINE_SECONDS",
    "TOOL_ERROR_RATE",
    "WINDOW",
    "WINDOW_SECONDS",
    "alert_rules",
    "dashboard",
]

WINDOW = timedelta(minutes=10)
WINDOW_SECONDS = int(WINDOW.total_seconds())
FAILURE_RATE = 0.05
MIN_RUNS = 20
TOKEN_ANOMALY_FACTOR = 5.0
TOKEN_BASELINE = timedelta(days=1)
TOKEN_BASELINE_SECONDS = int(TOKEN_BASELINE.total_seconds())
MIN_TOKENS = 10_000
TOOL_ERROR_RATE = 0.10
MIN_TOOL_CALLS = 20
LATENCY_QUANTILE = 0.95
LATENCY_FACTOR = 2.0

#: The alert names in ``alerts.yml``.
ALERTS = (
    "TenantRunFailureRateHigh",
    "TenantTokenUsageAnomaly",
    "TenantToolErrorRateHigh",
    "TenantRunLatencyHigh",
)


def alert_rules() -> str:
    """The Prometheus alert rules (YAML, a ``groups:`` file for ``rule_files``)."""
    return (
        resources.files(__package__ or "tenant_trace.local")
        .joinpath("alerts.yml")
        .read_text(encoding="utf-8")
    )


def dashboard() -> str:
    """The Grafana dashboard (JSON, with a ``tenant`` template variable)."""
    return (
        resources.files(__package__ or "tenant_trace.local")
        .joinpath("dashboard.json")
        .read_text(encoding="utf-8")
    )
