"""The local store and the ``tenant-trace`` command, over a store filled by real requests to
the FastAPI app under uvicorn and the Flask app under two gunicorn worker processes, all
writing to the same file at once."""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from examples.agent import is_stale
from tenant_trace.export.store import SQLiteSpanExporter
from tenant_trace.local.store import SpanStore
from tests.servers import spanfile
from tests.servers.process import PATIENCE, ROOT, serve

pytestmark = pytest.mark.real_server

TENANTS = ("tenant-a", "tenant-b", "tenant-c")


def send(client: httpx.Client, url: str, tenant: str, message: str) -> str:
    """One /chat request with a known trace id; returns the trace id."""
    trace_id = secrets.token_hex(16)
    response = client.post(
        f"{url}/chat",
        json={"message": message},
        headers={"X-Tenant-ID": tenant, "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["tenant"] == tenant
    return trace_id


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A store written by three processes at once; yields it and {trace_id: tenant}."""
    tmp = tmp_path_factory.mktemp("store")
    db = tmp / "traces.sqlite3"
    env = {
        "TENANT_TRACE_DB": str(db),
        "OTEL_TRACES_EXPORTER": "local",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        spanfile.ENV: "",
    }
    sent: dict[str, str] = {}
    with (
        serve("uvicorn", "examples.fastapi_app:app", tmp, env=env) as fastapi,
        serve("gunicorn", "examples.flask_app:app", tmp, env=env) as flask,
        ThreadPoolExecutor(8) as pool,
        httpx.Client(timeout=PATIENCE) as client,  # one for all: each new one costs 0.1 s
    ):
        jobs = [
            (url, tenant, f"question {i} from {tenant}")
            for i in range(15)
            for tenant in TENANTS
            for url in (fastapi.url, flask.url)
        ]
        for trace_id, (_, tenant, _) in zip(
            pool.map(lambda job: send(client, *job), jobs), jobs, strict=True
        ):
            sent[trace_id] = tenant
    # Both servers stopped gracefully: their last batches are flushed.
    return db, sent


def run_cli(*args: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "tenant_trace.local.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=PATIENCE,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def as_json(*args: str) -> Any:
    code, out = run_cli(*args, "--json")
    assert code in (0, 1), out
    return json.loads(out)


def test_every_request_from_three_writers_is_stored(filled: tuple[Path, dict[str, str]]) -> None:
    """Two server processes of gunicorn and one of uvicorn wrote at once; no run is lost."""
    db, sent = filled
    store = SpanStore(db)
    try:
        runs = store.runs(since_ns=0)
    finally:
        store.close()
    assert {r["trace_id"] for r in runs} == set(sent)
    assert len(runs) == len(sent) == 90


def test_tenants_table(filled: tuple[Path, dict[str, str]]) -> None:
    """One row per tenant with its runs, failures (the stale runs of tenant-b), tokens."""
    db, _ = filled
    rows = {row["tenant"]: row for row in as_json("tenants", "--db", str(db))}
    assert set(rows) == set(TENANTS)
    for tenant in TENANTS:
        expected_failures = (
            sum(is_stale(tenant, f"question {i} from {tenant}") for i in range(15)) * 2
        )  # each question went to both apps
        assert rows[tenant]["runs"] == 30
        assert rows[tenant]["failures"] == expected_failures
        assert rows[tenant]["tokens"] > 0
        assert rows[tenant]["p50_ms"] <= rows[tenant]["p95_ms"] <= rows[tenant]["p99_ms"]
    assert rows["tenant-b"]["failures"] > 0
    assert rows["tenant-a"]["failures"] == rows["tenant-c"]["failures"] == 0
    assert rows["tenant-b"]["tool_errors"] == rows["tenant-b"]["failures"]


@pytest.mark.parametrize("tenant", TENANTS)
def test_traces_never_mix_tenants(filled: tuple[Path, dict[str, str]], tenant: str) -> None:
    """`traces --tenant T` lists exactly T's requests, and every span of each is T's."""
    db, sent = filled
    runs = as_json("traces", "--tenant", tenant, "--limit", "1000", "--db", str(db))
    assert {r["trace_id"] for r in runs} == {t for t, owner in sent.items() if owner == tenant}
    store = SpanStore(db)
    try:
        for run in runs[:5]:
            spans = store.trace(run["trace_id"])
            assert len(spans) > 5
            assert {s["tenant_id"] for s in spans} == {tenant}
    finally:
        store.close()


def test_failed_traces_and_show(filled: tuple[Path, dict[str, str]]) -> None:
    """tenant-b's failed runs, and one of them as a tree with the stale tool in error."""
    db, _ = filled
    failed = as_json("traces", "--tenant", "tenant-b", "--failed", "--db", str(db))
    assert failed
    assert all(r["failed"] and r["error_type"] == "StaleData" for r in failed)
    spans = as_json("show", failed[0]["trace_id"], "--db", str(db))
    tool = next(s for s in spans if s["name"] == "execute_tool get_account_data")
    assert tool["status"] == "ERROR"
    assert "48 hours old" in tool["status_message"]
    code, text = run_cli("show", failed[0]["trace_id"], "--db", str(db))
    assert code == 0
    assert "execute_tool get_account_data" in text
    assert "48 hours old" in text
    assert "tenant tenant-b" in text


def test_alerts_fire_for_the_failing_tenant_only(filled: tuple[Path, dict[str, str]]) -> None:
    """`alerts` exits 1 and its failure and tool-error rules name tenant-b alone. (Latency
    depends on the machine's load while the store was filled: it is tested apart, on a
    store whose timings are fixed.)"""
    db, _ = filled
    code, out = run_cli("alerts", "--db", str(db), "--json")
    assert code == 1, out
    firing = [a for a in json.loads(out) if a["rule"] != "TenantRunLatencyHigh"]
    assert {a["tenant"] for a in firing} == {"tenant-b"}
    assert "TenantRunFailureRateHigh" in {a["rule"] for a in firing}
    code, text = run_cli("alerts", "--db", str(db))
    assert code == 1
    assert "FIRING" in text
    assert "tenant-b" in text


def test_a_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    """No file: exit 2 and a sentence that says what to do."""
    code, out = run_cli("tenants", "--db", str(tmp_path / "nope.sqlite3"))
    assert code == 2
    assert "no trace store at" in out


def test_an_empty_store_says_so(tmp_path: Path) -> None:
    """A store with no runs: a message, exit 0, and empty JSON lists."""
    db = tmp_path / "empty.sqlite3"
    SQLiteSpanExporter(db).shutdown()
    code, out = run_cli("tenants", "--db", str(db))
    assert code == 0
    assert "No runs" in out
    assert as_json("tenants", "--db", str(db)) == []
    code, out = run_cli("alerts", "--db", str(db))
    assert code == 0
    assert "No alert fires" in out
    code, out = run_cli("show", "0" * 32, "--db", str(db))
    assert code == 2  # an error, never the status of a firing alert
    assert "no trace" in out


def test_bad_arguments(tmp_path: Path) -> None:
    """An unreadable --since is refused by the parser (exit 2)."""
    code, out = run_cli("tenants", "--since", "yesterday", "--db", str(tmp_path / "x"))
    assert code == 2
    assert "not a duration" in out


def exported(db: Path, **kwargs: Any) -> tuple[SQLiteSpanExporter, TracerProvider]:
    exporter = SQLiteSpanExporter(db, **kwargs)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, provider


def test_retention_by_age(tmp_path: Path) -> None:
    """Spans older than max_age are pruned (pruning runs at the first export, then every
    hundredth)."""
    db = tmp_path / "age.sqlite3"
    _, provider = exported(db, max_age=3600)
    tracer = provider.get_tracer("t")

    def names() -> list[str]:
        with closing(sqlite3.connect(db)) as reader:
            return [row[0] for row in reader.execute("SELECT name FROM spans ORDER BY start_ns")]

    tracer.start_span("first").end()
    two_hours_ago = time.time_ns() - 2 * 3600 * 10**9
    tracer.start_span("old", start_time=two_hours_ago).end(end_time=two_hours_ago + 10**9)
    for _ in range(98):
        tracer.start_span("new").end()
    assert names() == ["old", "first", *["new"] * 98]  # 100 exports: not pruned yet
    tracer.start_span("new").end()  # the 101st export prunes
    provider.shutdown()
    assert names() == ["first", *["new"] * 99]


def test_retention_by_size(tmp_path: Path) -> None:
    """Past max_bytes, the oldest spans go."""
    db = tmp_path / "size.sqlite3"
    _, provider = exported(db, max_bytes=64 * 1024)
    tracer = provider.get_tracer("t")
    for i in range(1000):
        span = tracer.start_span("agent.run", attributes={"payload": "x" * 200, "i": i})
        span.end()
    provider.shutdown()
    rows = sqlite3.connect(db).execute("SELECT attributes FROM spans").fetchall()
    assert len(rows) < 1000
    kept = sorted(json.loads(r[0])["i"] for r in rows)
    assert kept[-1] == 999  # the newest survive


def test_rules_and_dashboard_are_printed() -> None:
    """`rules` prints the shipped Prometheus rules, `dashboard` the Grafana JSON."""
    code, text = run_cli("rules")
    assert code == 0
    assert "alert: TenantRunFailureRateHigh" in text
    code, text = run_cli("dashboard")
    assert code == 0
    dashboard = json.loads(text)
    assert "tenant" in {v["name"] for v in dashboard["templating"]["list"]}


def synthetic_store(db: Path, runs: list[tuple[str, float, float, int, bool]]) -> None:
    """Runs as (tenant, seconds ago, duration s, tokens, failed), exported as agent.run spans."""
    from opentelemetry.trace import Status, StatusCode

    _, provider = exported(db)
    tracer = provider.get_tracer("t")
    now = time.time_ns()
    for tenant, ago, duration, tokens, failed in runs:
        start = now - int(ago * 1e9)
        attributes = {
            "tenant.id": tenant,
            "tenant_trace.usage.input_tokens": tokens,
            "tenant_trace.usage.output_tokens": 0,
        }
        span = tracer.start_span("agent.run", attributes=attributes, start_time=start)
        if failed:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=start + int(duration * 1e9))
    provider.shutdown()


def test_token_anomaly_fires_against_the_tenants_own_baseline(tmp_path: Path) -> None:
    """A tenant using far more tokens than over the day before fires; one steady tenant and
    one with no baseline (a new tenant) do not."""
    db = tmp_path / "tokens.sqlite3"
    # Over the day before: steady used about 25,000 tokens per 10 minutes, spiking 5,000.
    runs = [("steady", 3600 * h + 700, 0.1, 150_000, False) for h in range(1, 24)]
    runs += [("spiking", 3600 * h + 700, 0.1, 30_000, False) for h in range(1, 24)]
    runs += [("steady", 60, 0.1, 1_000, False)] * 25
    runs += [("spiking", 60, 0.1, 5_000, False)] * 25
    runs += [("newcomer", 60, 0.1, 5_000, False)] * 25
    synthetic_store(db, runs)
    firing = as_json("alerts", "--db", str(db))
    assert [(a["rule"], a["tenant"]) for a in firing] == [("TenantTokenUsageAnomaly", "spiking")]


def test_latency_fires_for_the_tenant_slower_than_the_fleet(tmp_path: Path) -> None:
    """One tenant whose p95 is far above the fleet's fires; the others do not."""
    db = tmp_path / "latency.sqlite3"
    runs = [(t, 30, 0.1, 10, False) for t in ("a", "b", "c", "d", "e") for _ in range(100)]
    runs += [("slow", 30, 2.0, 10, False)] * 25  # under 5% of the fleet's runs
    synthetic_store(db, runs)
    firing = as_json("alerts", "--db", str(db))
    assert [(a["rule"], a["tenant"]) for a in firing] == [("TenantRunLatencyHigh", "slow")]


def test_failure_rate_needs_enough_runs(tmp_path: Path) -> None:
    """Two failures out of five runs is under MIN_RUNS: no alert; out of twenty, it fires."""
    db = tmp_path / "few.sqlite3"
    runs = [("few", 30, 0.1, 10, i < 2) for i in range(5)] + [
        ("many", 30, 0.1, 10, i < 2) for i in range(20)
    ]
    synthetic_store(db, runs)
    firing = as_json("alerts", "--db", str(db))
    assert [(a["rule"], a["tenant"]) for a in firing] == [("TenantRunFailureRateHigh", "many")]
