"""The usage ledger: every model call counted per tenant, model and hour, whether or not its
trace was sampled; ``tenant-trace usage``; purges and retention cover it."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import textwrap
import time
from pathlib import Path

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tenant_trace.export.store import SQLiteSpanExporter, open_store, transaction
from tenant_trace.local.purge import purge
from tenant_trace.usage import Ledger, Usage
from tenant_trace.usage.ledger import HOUR_NS
from tests.fresh import run_fresh
from tests.test_cli import as_json, run_cli

SAMPLED_OUT = """
    import asyncio, json, os
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient
    from pydantic_ai import Agent
    from pydantic_ai.capabilities.instrumentation import Instrumentation
    from pydantic_ai.models.test import TestModel
    import tenant_trace
    from tenant_trace_fastapi import TenantTraceMiddleware, require_tenant

    provider = tenant_trace.init(
        exporter="local",
        metrics="none",
        sampler=tenant_trace.TenantSampler(1.0, tenants={"muted": 0.0}),
        prices={"test": (1.0, 2.0)},
    )
    agent = Agent(TestModel(), capabilities=[Instrumentation()])
    # FastAPI's own server span opens before the middleware knows the tenant: the run is
    # sampled anew with the tenant's ratio, and the dropped request's server span not stored.
    app = FastAPI()
    app.add_middleware(TenantTraceMiddleware)
    used = {}

    @app.post("/ask")
    async def ask(question: str, tenant: str = Depends(require_tenant)) -> dict:
        result = await agent.run(question)
        mine = used.setdefault(tenant, [0, 0, 0])
        mine[0] += result.usage.input_tokens
        mine[1] += result.usage.output_tokens
        mine[2] += result.usage.requests
        return {"answer": str(result.output)}

    client = TestClient(app)
    for i in range(5):
        for tenant in ("muted", "acme"):
            assert client.post("/ask", params={"question": f"q{i}"},
                               headers={"X-Tenant-ID": tenant}).status_code == 200
    provider.shutdown()
    print(json.dumps({"used": used, "db": os.environ["TENANT_TRACE_DB"]}))
"""


def test_a_sampled_out_tenant_is_counted_exactly() -> None:
    """A tenant at sampling ratio 0 exports no span, yet the ledger counts each of its
    model calls (pydantic-ai, in a real route) to the token; so for a sampled tenant."""
    result, _ = run_fresh(textwrap.dedent(SAMPLED_OUT))
    db, used = result["db"], result["used"]
    stored = {row["tenant"]: row["runs"] for row in as_json("tenants", "--db", db)}
    assert stored == {"acme": 5}  # muted's spans were recorded for counting, never exported
    rows = {row["tenant_id"]: row for row in as_json("usage", "--db", db)}
    assert set(rows) == {"muted", "acme"}
    for tenant, (input_tokens, output_tokens, calls) in used.items():
        row = rows[tenant]
        assert (row["input_tokens"], row["output_tokens"], row["calls"]) == (
            input_tokens,
            output_tokens,
            calls,
        )
        assert row["unpriced_calls"] == 0
        assert row["cost_usd"] == round((input_tokens * 1.0 + output_tokens * 2.0) / 1e6, 6)


def filled_ledger(db: Path, now_ns: int) -> None:
    ledger = Ledger(db, start=False)
    ledger.add("acme", "gpt-4o", now_ns - 30 * HOUR_NS, Usage(100, 10, 40), 0.5)
    ledger.add("acme", "gpt-4o", now_ns - 2 * HOUR_NS, Usage(200, 20), 1.0)
    ledger.flush()
    ledger.add("acme", "gpt-4o", now_ns - 2 * HOUR_NS, Usage(1, 1), 0.25)  # a second write
    ledger.add("acme", "local-llm", now_ns - HOUR_NS, Usage(7, 3), None)
    ledger.add("globex", "gpt-4o", now_ns - HOUR_NS, Usage(5, 5), 0.125)
    ledger.add("globex", "old", now_ns - 40 * 86400 * 10**9, Usage(9, 9), 9.0)
    ledger.close()


def test_usage_by_tenant_model_and_day(tmp_path: Path) -> None:
    """Rows of several writes are summed; an unpriced model's cost is unknown (null, never
    0) and its calls counted; the window leaves out what is older."""
    db = tmp_path / "traces.sqlite3"
    now = time.time_ns()
    filled_ledger(db, now)
    by_tenant = {r["tenant_id"]: r for r in as_json("usage", "--db", str(db))}
    assert set(by_tenant) == {"acme", "globex"}
    acme = by_tenant["acme"]
    assert (acme["calls"], acme["unpriced_calls"]) == (4, 1)
    assert (acme["input_tokens"], acme["output_tokens"], acme["cache_read_tokens"]) == (
        308,
        34,
        40,
    )
    assert acme["cost_usd"] == 1.75
    by_model = as_json("usage", "--db", str(db), "--tenant", "acme", "--by", "model")
    assert [(r["model"], r["calls"], r["cost_usd"]) for r in by_model] == [
        ("gpt-4o", 3, 1.75),
        ("local-llm", 1, None),
    ]
    days = as_json("usage", "--db", str(db), "--tenant", "globex", "--since", "90d", "--by", "day")
    assert [r["calls"] for r in days] == [1, 1]
    code, out = run_cli("usage", "--db", str(db), "--csv", "--by", "model")
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))
    assert [(r["tenant_id"], r["model"], r["cost_usd"]) for r in table] == [
        ("acme", "gpt-4o", "1.75"),
        ("acme", "local-llm", ""),
        ("globex", "gpt-4o", "0.125"),
    ]
    code, out = run_cli("usage", "--db", str(db))
    assert code == 0
    assert "+1?" in out and "no price" in out


def test_a_purge_erases_the_ledger_and_in_flight_usage_never_returns(tmp_path: Path) -> None:
    """Usage of a purged tenant counted before the purge but written after it is dropped;
    its usage after the purge, and another tenant's, are kept."""
    db = tmp_path / "traces.sqlite3"
    now = time.time_ns()
    ledger = Ledger(db, start=False)
    ledger.add("acme", "m", now - HOUR_NS, Usage(1, 1), None)
    ledger.flush()
    ledger.add("acme", "m", now - 10**9, Usage(2, 2), None)  # in flight during the purge
    ledger.add("globex", "m", now - 10**9, Usage(3, 3), None)
    erasure = purge(db, "acme", before_ns=now)
    assert erasure.deleted["ledger"] == 1
    ledger.flush()
    ledger.add("acme", "m", now + 10**9, Usage(4, 4), None)  # after the purge
    ledger.close()
    connection = open_store(db)
    rows = connection.execute(
        "SELECT tenant_id, input_tokens FROM ledger ORDER BY tenant_id, input_tokens"
    ).fetchall()
    connection.close()
    assert rows == [("acme", 4), ("globex", 3)]


def test_a_write_that_fails_is_kept_for_the_next(tmp_path: Path) -> None:
    """A locked store loses nothing: the counts wait and are written with the next write."""
    db = tmp_path / "traces.sqlite3"
    now = time.time_ns()
    ledger = Ledger(db, start=False, busy_timeout=0)
    ledger.add("acme", "m", now, Usage(1, 1), None)
    ledger.flush()
    blocker = open_store(db)
    with transaction(blocker):  # another process holds the write lock
        ledger.add("acme", "m", now, Usage(2, 2), None)
        ledger.flush()
    ledger.close()
    total = blocker.execute("SELECT SUM(input_tokens), SUM(calls) FROM ledger").fetchone()
    blocker.close()
    assert total == (3, 2)


def test_the_ledger_table_is_created_with_the_store(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite3"
    open_store(db).close()
    with sqlite3.connect(db) as connection:
        names = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
    assert {"spans", "ledger", "audit"} <= names
    assert json.loads(run_cli("usage", "--db", str(db), "--json")[1]) == []


def test_a_forked_worker_counts_its_own_calls_once(tmp_path: Path) -> None:
    """A worker forked after the ledger was made (gunicorn --preload) writes its own calls
    with a thread and connection of its own; the parent's pending calls are written once."""
    import os

    db = tmp_path / "traces.sqlite3"
    now = time.time_ns()
    ledger = Ledger(db, interval=3600)
    ledger.add("acme", "m", now, Usage(1, 1), None)
    ledger.flush()  # the parent's connection is open before the fork
    ledger.add("acme", "m", now, Usage(10, 10), None)  # pending in the parent
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            ledger.add("acme", "m", now, Usage(100, 100), None)
            ledger.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    ledger.close()
    connection = open_store(db)
    total = connection.execute("SELECT SUM(input_tokens), SUM(calls) FROM ledger").fetchone()
    connection.close()
    assert total == (111, 3)


def test_export_writes_the_tenants_ledger_rows_and_no_others(tmp_path: Path) -> None:
    """``tenant-trace export --tenant acme``: its spans, then its ledger per model and hour
    (several writes summed, an unknown cost null), none of globex's; the same rows as OTLP/JSON
    metrics that the protobuf classes read; ``--since`` keeps the hours that end in it."""
    db = tmp_path / "traces.sqlite3"
    now = time.time_ns()
    filled_ledger(db, now)
    writer = SQLiteSpanExporter(db)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(writer))
    for tenant in ("acme", "globex"):
        provider.get_tracer("t").start_span("agent.run", attributes={"tenant.id": tenant}).end()
    provider.shutdown()

    code, out = run_cli("export", "--tenant", "acme", "--db", str(db))
    assert code == 0, out
    assert "Exported 1 spans and 3 usage ledger rows of tenant 'acme'" in out
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["name"] for r in records[:1]] == ["agent.run"]  # spans first
    ledger = [r["ledger"] for r in records[1:]]
    assert [
        (r["tenant_id"], r["model"], r["calls"], r["input_tokens"], r["cache_read_tokens"])
        for r in ledger
    ] == [
        ("acme", "gpt-4o", 1, 100, 40),
        ("acme", "gpt-4o", 2, 201, 0),
        ("acme", "local-llm", 1, 7, 0),
    ]
    assert [r["cost_usd"] for r in ledger] == [0.5, 1.25, None]
    assert all(r["hour_ns"] % HOUR_NS == 0 for r in ledger)
    (usage,) = as_json("usage", "--tenant", "acme", "--since", "90d", "--db", str(db))
    for column in ("calls", "unpriced_calls", "input_tokens", "output_tokens", "cost_usd"):
        assert sum(r[column] or 0 for r in ledger) == usage[column]

    code, out = run_cli("export", "--tenant", "acme", "--since", "3h", "--db", str(db))
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["ledger"]["model"] for r in lines if "ledger" in r] == ["gpt-4o", "local-llm"]

    code, out = run_cli("export", "--tenant", "acme", "--format", "otlp-json", "--db", str(db))
    assert code == 0, out
    (line,) = [line for line in out.splitlines() if line.startswith('{"resourceMetrics"')]
    request = json_format.Parse(line, ExportMetricsServiceRequest())
    (scope,) = request.resource_metrics[0].scope_metrics
    metrics = {m.name: m for m in scope.metrics}
    assert metrics["tenant_trace.ledger.input_tokens"].unit == "{token}"
    points = metrics["tenant_trace.ledger.input_tokens"].sum.data_points
    assert [p.as_int for p in points] == [100, 201, 7]
    assert [p.time_unix_nano - p.start_time_unix_nano for p in points] == [HOUR_NS] * 3
    costs = metrics["tenant_trace.ledger.cost_usd"].sum.data_points
    assert [p.as_double for p in costs] == [0.5, 1.25]  # no point for the unknown cost
    tenants = {
        a.value.string_value
        for m in scope.metrics
        for p in m.sum.data_points
        for a in p.attributes
        if a.key == "tenant.id"
    }
    assert tenants == {"acme"}

    code, out = run_cli("export", "--tenant", "globex", "--db", str(db))
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    ledger = [r["ledger"] for r in lines if "ledger" in r]
    # Its 40-day-old row went at the store's first export (7 days' retention).
    assert [(r["tenant_id"], r["model"]) for r in ledger] == [("globex", "gpt-4o")]
