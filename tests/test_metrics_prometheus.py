"""End to end: the FastAPI example under uvicorn exposes its metrics for Prometheus, a real
Prometheus server scrapes it and evaluates the shipped alert rules, and its query API shows
each tenant's latency and failure rate, the dashboard's queries, and the failing tenant's
alert (and no other)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from examples.agent import STALE_PERCENT, STALE_TENANT, is_stale
from tenant_trace.local import rules
from tests.servers.process import PATIENCE, free_port, serve
from tests.test_rules import ALERTS, binary

pytestmark = pytest.mark.real_server

T = TypeVar("T")
FAILING = STALE_TENANT  # tenant-b, whose runs get stale account data on a share of messages
TENANTS = sorted({"tenant-a", FAILING, "tenant-c"})


class Prometheus:
    """The HTTP API of a Prometheus server."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=PATIENCE)

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = self.http.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def by_tenant(self, expr: str) -> dict[str, float]:
        return {r["metric"].get("tenant_id", ""): float(r["value"][1]) for r in self.query(expr)}

    def alerts(self, name: str) -> dict[str, str]:
        """Tenant -> state (pending or firing) of the alerts named `name`."""
        found = self.http.get("/api/v1/alerts").json()["data"]["alerts"]
        return {
            a["labels"]["tenant_id"]: a["state"] for a in found if a["labels"]["alertname"] == name
        }


@contextmanager
def prometheus(tmp_path: Path, target: str) -> Iterator[Prometheus]:
    """A Prometheus server on a free port scraping `target` every second, with the shipped
    rules evaluated every second; always stopped."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [{"job_name": "app", "static_configs": [{"targets": [target]}]}],
            }
        )
    )
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = Prometheus(f"http://127.0.0.1:{port}")
    try:
        eventually(lambda: api.http.get("/-/ready").status_code == 200, "Prometheus is ready")
        yield api
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def eventually(check: Callable[[], T], what: str, timeout: float = PATIENCE) -> T:
    """The first truthy result of `check`, retried (connection errors and failed asserts
    included) until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            error: BaseException | None = None
        except (AssertionError, httpx.HTTPError) as exc:
            error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}") from error
        time.sleep(0.25)


def messages(tenant: str, count: int, *, stale: bool, start: int = 0) -> list[str]:
    """`count` messages for which `tenant`'s run gets stale account data (or fresh data)."""
    found: list[str] = []
    i = start
    while len(found) < count and i < start + 100_000:
        message = f"where is my order #{i}?"
        if is_stale(tenant, message) is stale:
            found.append(message)
        i += 1
    assert len(found) == count, f"EXAMPLE_STALE_PERCENT={STALE_PERCENT} leaves too few"
    return found


def send(url: str, tenant: str, texts: list[str], delay: float = 0.0) -> None:
    with httpx.Client(base_url=url, timeout=PATIENCE) as client:
        for text in texts:
            response = client.post(
                "/chat", json={"message": text, "delay": delay}, headers={"X-Tenant-ID": tenant}
            )
            assert response.status_code == 200, response.text


def test_prometheus_sees_each_tenant_and_alerts_on_the_failing_one(tmp_path: Path) -> None:
    binary("prometheus")
    metrics_port = free_port()
    env = {
        # The app decides which runs fail as this process does.
        "EXAMPLE_STALE_TENANT": STALE_TENANT,
        "EXAMPLE_STALE_PERCENT": str(STALE_PERCENT),
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port),
    }
    with (
        serve("uvicorn", "examples.fastapi_app:app", tmp_path, env=env) as server,
        prometheus(tmp_path, f"127.0.0.1:{metrics_port}") as api,
    ):
        eventually(lambda: api.query('up{job="app"} == 1'), "the app is scraped")

        # First traffic makes every series (a counter's first value is no increase to
        # Prometheus); then wait for a scrape that has them all.
        for tenant in TENANTS:
            send(server.url, tenant, messages(tenant, 2, stale=False, start=10_000))
        send(server.url, FAILING, messages(FAILING, 1, stale=True, start=10_000))
        missing = httpx.post(f"{server.url}/chat", json={"message": "hi"}, timeout=PATIENCE)
        assert missing.status_code == 401
        eventually(
            lambda: len(api.query("tenant_trace_run_duration_seconds_count")) == 4,
            "the first runs of every tenant are scraped",
        )

        # The measured traffic: tenant-b fails one run in four; tenant-c is slower.
        send(server.url, "tenant-a", messages("tenant-a", 40, stale=False))
        send(server.url, FAILING, messages(FAILING, 30, stale=False))
        send(server.url, FAILING, messages(FAILING, 10, stale=True))
        send(server.url, "tenant-c", messages("tenant-c", 40, stale=False), delay=0.06)

        # What each tenant ran and failed, as counts: Prometheus's rates and quantiles
        # extrapolate over scrape times, which a busy machine shifts.
        runs = "tenant_trace_run_duration_seconds"
        expected = {"tenant-a": 42.0, FAILING: 43.0, "tenant-c": 42.0}
        eventually(
            lambda: api.by_tenant(f"sum by (tenant_id) ({runs}_count)") == expected,
            "every run is scraped",
        )
        assert api.by_tenant(f'sum by (tenant_id) ({runs}_count{{outcome="error"}})') == {
            FAILING: 11.0
        }
        # tenant-c's measured runs each waited 60 ms: all 40 are above the 50 ms bucket.
        slow = api.by_tenant(
            f'sum by (tenant_id) ({runs}_count) - sum by (tenant_id) ({runs}_bucket{{le="0.05"}})'
        )
        assert slow["tenant-c"] >= 40, slow
        p95 = api.by_tenant(
            f"histogram_quantile(0.95, sum by (tenant_id, le) (rate({runs}_bucket[1m])))"
        )
        assert set(p95) == set(TENANTS)

        # The shipped rule: tenant-b's alert is pending (it fires after `for:`), no other.
        states = eventually(
            lambda: api.alerts("TenantRunFailureRateHigh"), "tenant-b's alert is pending"
        )
        assert set(states) == {FAILING}, states
        assert states[FAILING] in ("pending", "firing")
        assert set(api.alerts("TenantToolErrorRateHigh")) <= {FAILING}  # 10 of 80 failed
        assert api.alerts("TenantTokenUsageAnomaly") == {}  # no day of history yet
        # TenantRunLatencyHigh compares measured latencies, which a busy machine skews: its
        # verdicts are tested on fixed series (tests/rules/alerts_test.yml).

        # The dashboard's queries have data for each tenant.
        for panel in json.loads(rules.dashboard())["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$tenant", ".*").replace("$__rate_interval", "1m")
                result = api.query(expr)
                tenants = {r["metric"].get("tenant_id") for r in result}
                if "sum by (reason)" in expr:
                    assert [r["metric"]["reason"] for r in result] == ["missing_tenant"]
                elif "tenant_overflow" in expr:
                    assert result == []  # no tenant went beyond the cap
                elif "unpriced" in expr:
                    assert tenants <= set(TENANTS)  # the app prices the models it calls
                elif 'outcome="error"}[1m]' in expr:
                    assert tenants == {FAILING}, (panel["title"], result)  # failed tools
                else:
                    assert tenants == set(TENANTS), (panel["title"], expr, result)
