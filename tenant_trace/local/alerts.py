"""The shipped alert rules, evaluated over the local trace store by ``tenant-trace alerts``.

The thresholds are those of the Prometheus rules in `tenant_trace.rules`, so the local
command and a Prometheus server fire for the same tenants.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from . import rules
from .store import SpanStore, summarize

__all__ = ["Alert", "evaluate"]


@dataclass(frozen=True)
class Alert:
    """One rule firing for one tenant."""

    rule: str
    tenant: str | None
    value: float
    threshold: float
    summary: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(store: SpanStore, *, now_ns: int | None = None) -> list[Alert]:
    """Every rule that fires now, per tenant, over the store's runs."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    window_ns = int(rules.WINDOW_SECONDS * 1e9)
    recent = store.runs(since_ns=now_ns - window_ns, until_ns=now_ns + 1)
    by_tenant: dict[str | None, list[dict[str, Any]]] = {}
    for run in recent:
        by_tenant.setdefault(run["tenant_id"], []).append(run)
    # The day before is read only for the tenants that used enough tokens to be an anomaly.
    baseline_tokens = store.tokens(
        (t for t, runs in by_tenant.items() if sum(r["tokens"] for r in runs) >= rules.MIN_TOKENS),
        since_ns=now_ns - int(rules.TOKEN_BASELINE_SECONDS * 1e9),
        until_ns=now_ns - window_ns,
    )
    fleet = summarize(None, recent, rules.LATENCY_QUANTILE)
    windows_in_baseline = (
        rules.TOKEN_BASELINE_SECONDS - rules.WINDOW_SECONDS
    ) / rules.WINDOW_SECONDS

    alerts = []
    for tenant, runs in sorted(by_tenant.items(), key=lambda kv: str(kv[0])):
        s = summarize(tenant, runs, rules.LATENCY_QUANTILE)
        minutes = rules.WINDOW_SECONDS // 60
        if s["runs"] >= rules.MIN_RUNS and s["failure_rate"] > rules.FAILURE_RATE:
            alerts.append(
                Alert(
                    "TenantRunFailureRateHigh",
                    tenant,
                    s["failure_rate"],
                    rules.FAILURE_RATE,
                    f"{s['failures']} of {s['runs']} runs failed in the last {minutes} minutes",
                )
            )
        if s["tool_calls"] >= rules.MIN_TOOL_CALLS and s["tool_error_rate"] > rules.TOOL_ERROR_RATE:
            alerts.append(
                Alert(
                    "TenantToolErrorRateHigh",
                    tenant,
                    s["tool_error_rate"],
                    rules.TOOL_ERROR_RATE,
                    f"{s['tool_errors']} of {s['tool_calls']} tool calls failed"
                    f" in the last {minutes} minutes",
                )
            )
        usual = baseline_tokens.get(tenant, 0) / windows_in_baseline
        # No baseline (a new tenant) is no anomaly, as in PromQL where the series is absent.
        if (
            usual > 0
            and s["tokens"] >= rules.MIN_TOKENS
            and s["tokens"] > rules.TOKEN_ANOMALY_FACTOR * usual
        ):
            alerts.append(
                Alert(
                    "TenantTokenUsageAnomaly",
                    tenant,
                    s["tokens"],
                    rules.TOKEN_ANOMALY_FACTOR * usual,
                    f"{s['tokens']} tokens in {minutes} minutes, usually about {usual:.0f}",
                )
            )
        fleet_q = fleet["quantile_ms"]
        if (
            s["runs"] >= rules.MIN_RUNS
            and fleet_q
            and s["quantile_ms"] is not None
            and s["quantile_ms"] > rules.LATENCY_FACTOR * fleet_q
        ):
            alerts.append(
                Alert(
                    "TenantRunLatencyHigh",
                    tenant,
                    s["quantile_ms"],
                    rules.LATENCY_FACTOR * fleet_q,
                    f"p{rules.LATENCY_QUANTILE * 100:g} {s['quantile_ms']:.0f} ms against the"
                    f" fleet's {fleet_q:.0f} ms",
                )
            )
    return alerts
