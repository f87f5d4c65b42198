"""The local store per tenant: retention per tenant (over an injected clock), strict ages,
erasure (no resurrection by a batch in flight, bytes overwritten, audited) and export (OTLP
JSON loaded back by the OpenTelemetry protobuf classes and sent to a real receiver)."""

from __future__ import annotations

import base64
import json
import math
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tenant_trace import ConfigurationError
from tenant_trace.config import parse_duration
from tenant_trace.export.retention import parse_retention
from tenant_trace.export.store import SQLiteSpanExporter
from tenant_trace.local.purge import purge
from tenant_trace.local.store import SpanStore
from tests.servers.otlp import Receiver
from tests.servers.process import ROOT

DAY = 86400 * 10**9
NOW = 1_900_000_000 * 10**9  # a fixed "now" for the injected clock
CAPTURE = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(CAPTURE))


def made(tenant: str | None, start_ns: int, name: str = "s", **attributes: Any) -> ReadableSpan:
    """A finished span of `tenant` that started at `start_ns`."""
    CAPTURE.clear()
    if tenant is not None:
        attributes["tenant.id"] = tenant
    span = PROVIDER.get_tracer("t").start_span(name, start_time=start_ns, attributes=attributes)
    span.end(end_time=start_ns + 1000)
    return CAPTURE.get_finished_spans()[0]


def names(db: Path) -> set[str]:
    with sqlite3.connect(db) as connection:
        return {row[0] for row in connection.execute("SELECT name FROM spans")}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenant_trace.local.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


# -- retention ---------------------------------------------------------------------------


def test_each_tenant_is_kept_for_its_own_retention(tmp_path: Path) -> None:
    """acme 90 days, everyone else (and spans of no tenant) 7: at "now" and 61 days later."""
    clock = [NOW]
    db = tmp_path / "store.sqlite3"
    store = SQLiteSpanExporter(
        db, retention={"default": "7d", "acme": "90d"}, wall_clock=lambda: clock[0]
    )
    for tenant in ("acme", "globex", None):
        for age in (1, 8, 30, 91):
            store.export([made(tenant, NOW - age * DAY, f"{tenant} {age}d")])
    store.prune()
    assert names(db) == {"acme 1d", "acme 8d", "acme 30d", "globex 1d", "None 1d"}
    clock[0] += 61 * DAY
    store.prune()
    assert names(db) == {"acme 1d", "acme 8d"}
    store.shutdown()


def test_retention_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``TENANT_TRACE_RETENTION="default=1d,acme=30d"`` when init() names none."""
    monkeypatch.setenv("TENANT_TRACE_RETENTION", "default=1d, acme = 30d")
    db = tmp_path / "store.sqlite3"
    store = SQLiteSpanExporter(db, wall_clock=lambda: NOW)
    assert (store.max_age, store.retention) == (86400, {"acme": 30 * 86400})
    store.export([made("acme", NOW - 2 * DAY, "acme"), made("globex", NOW - 2 * DAY, "globex")])
    store.prune()
    assert names(db) == {"acme"}
    store.shutdown()
    monkeypatch.setenv("TENANT_TRACE_RETENTION", "acme=30d,acme=40d")
    with pytest.raises(
        ConfigurationError, match="TENANT_TRACE_RETENTION: the entry for 'acme' is given twice"
    ):
        SQLiteSpanExporter(db)
    monkeypatch.setenv("TENANT_TRACE_RETENTION", "acme")
    with pytest.raises(ConfigurationError, match="is not tenant=value"):
        SQLiteSpanExporter(db)


def test_the_size_cap_holds_whatever_the_retention(tmp_path: Path) -> None:
    """A tenant kept for 90 days still loses its oldest spans when the file is too big."""
    db = tmp_path / "store.sqlite3"
    store = SQLiteSpanExporter(
        db, max_bytes=64 * 1024, retention={"acme": "90d"}, wall_clock=lambda: NOW
    )
    for i in range(600):
        store.export([made("acme", NOW - DAY + i, f"{i:03}", payload="x" * 200)])
    store.prune()
    kept = sorted(names(db))
    assert len(kept) < 600
    assert kept[-1] == "599"  # the newest survive
    store.shutdown()


@pytest.mark.parametrize("text", ["90d", "12h", "10m", "90s", "1.5h"])
def test_ages_that_parse(text: str) -> None:
    seconds = {"90d": 90 * 86400, "12h": 12 * 3600, "10m": 600, "90s": 90, "1.5h": 5400}
    assert parse_duration(text) == seconds[text]


@pytest.mark.parametrize(
    "text",
    ["90", "d", "90 d", " 90d", "90D", "-1d", "0d", "1e3d", "90days", "36501d", "", 90, None],
)
def test_ages_are_parsed_strictly(text: Any) -> None:
    """Anything but a number and s, m, h or d (more than zero, at most a century) is an error."""
    with pytest.raises(ConfigurationError, match="is not a duration"):
        parse_duration(text)
    with pytest.raises(ConfigurationError, match=r"retention\['acme'\]"):
        parse_retention({"acme": text})


def test_the_cli_refuses_a_bad_age(tmp_path: Path) -> None:
    done = run_cli("purge", "--tenant", "acme", "--before", "90days", "--db", str(tmp_path / "x"))
    assert done.returncode == 2
    assert "argument --before: AGE '90days' is not a duration" in done.stderr


# -- purge -------------------------------------------------------------------------------


def test_a_batch_in_flight_during_a_purge_does_not_bring_it_back(tmp_path: Path) -> None:
    """Spans of acme that ended before the purge but reach the store after it (the batch was
    queued, or its writer waited for the lock) are not written; globex's in the same batch
    are, and so is an acme span that started after the purge."""
    db = tmp_path / "store.sqlite3"
    writer = SQLiteSpanExporter(db)
    writer.export([made("acme", NOW - 10, "acme stored")])
    in_flight = [
        made("acme", NOW - 5, "acme in flight"),
        made("globex", NOW - 5, "globex in flight"),
    ]
    erased = purge(db, "acme", before_ns=NOW)
    assert erased.deleted == {"spans": 1, "ledger": 0}
    writer.export([*in_flight, made("acme", NOW + 5, "acme after the purge")])
    assert names(db) == {"globex in flight", "acme after the purge"}
    writer.shutdown()


def raw(db: Path) -> bytes:
    """Every byte of the store on disk: the file, its write-ahead log and shared memory."""
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def test_purge_overwrites_the_bytes_and_is_audited(tmp_path: Path) -> None:
    """Without --yes, purge counts; with it, acme's rows are gone from the file's bytes (not
    just unlinked: a plain delete leaves them there), globex's stay, and ``audit`` lists
    what was deleted, when and how much."""
    db = tmp_path / "store.sqlite3"
    writer = SQLiteSpanExporter(db)  # stays open, as a running app's would
    start = time.time_ns() - DAY  # the command cuts at the real "now"
    for i in range(50):
        writer.export(
            [
                made("acme", start + i, "a", note=f"acme-secret-{i:04}"),
                made("globex", start + i, "g", note="globex-kept"),
            ]
        )
    assert b"acme-secret-0042" in raw(db)
    plain = tmp_path / "plain" / "store.sqlite3"  # the control: a delete without secure_delete
    plain.parent.mkdir()
    with sqlite3.connect(db) as source, sqlite3.connect(plain) as copy:
        source.backup(copy)
        copy.execute("PRAGMA secure_delete=OFF")
        copy.execute("DELETE FROM spans WHERE tenant_id = 'acme'")
    assert b"acme-secret-0042" in raw(plain)

    dry = run_cli("purge", "--tenant", "acme", "--db", str(db), "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["counts"] == {"spans": 50, "ledger": 0}
    assert json.loads(dry.stdout)["dry_run"] is True
    assert b"acme-secret-0042" in raw(db)

    done = run_cli("purge", "--tenant", "acme", "--yes", "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert "Deleted 50 spans, 0 ledger rows of tenant acme" in done.stdout
    assert b"acme-secret" not in raw(db)
    assert b"globex-kept" in raw(db)
    writer.export([made("acme", start + 100, "a", note="acme-secret-late")])  # in flight
    assert b"acme-secret-late" not in raw(db)
    audit = json.loads(run_cli("audit", "--db", str(db), "--json").stdout)
    assert len(audit) == 1
    assert audit[0]["tenant_id"] == "acme"
    assert audit[0]["action"] == "purge"
    assert audit[0]["deleted"] == {"spans": 50, "ledger": 0}
    assert audit[0]["total"] == 50
    assert audit[0]["at_ns"] >= audit[0]["before_ns"] > start
    table = run_cli("audit", "--db", str(db)).stdout
    assert "acme" in table and "50 spans" in table
    writer.shutdown()


def test_purge_with_before_keeps_the_newer_rows(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite3"
    writer = SQLiteSpanExporter(db)
    now = time.time_ns()
    writer.export([made("acme", now - 100 * DAY, "old"), made("acme", now - DAY, "new")])
    done = run_cli("purge", "--tenant", "acme", "--before", "90d", "--yes", "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert names(db) == {"new"}
    writer.shutdown()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "tenant-trace purge: --tenant is required (one tenant at a time)\n"),
        (("--tenant", "a\x01b"), "tenant-trace purge: --tenant: "),
        (("--tenant", "acme"), "tenant-trace purge: no trace store at "),
    ],
)
def test_purge_refuses_with_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """No --tenant (a purge of everyone is never meant), an invalid id, no store."""
    done = run_cli("purge", *args, "--yes", "--db", str(tmp_path / "missing.sqlite3"))
    assert done.returncode == 2
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1
    assert done.stdout == ""


# -- export ------------------------------------------------------------------------------


def as_protobuf_json(line: str) -> str:
    """OTLP/JSON has hex ids where protobuf's JSON mapping has base64: what an OTLP receiver
    that reads OTLP/JSON does before decoding it with the protobuf classes."""
    request = json.loads(line)
    for resource in request["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return json.dumps(request)


def test_otlp_json_export_loads_into_the_opentelemetry_classes(tmp_path: Path) -> None:
    """Every line of ``export --format otlp-json`` parses strictly as an
    ``ExportTraceServiceRequest``; its spans are acme's, with ids, parents, kinds, status,
    events and typed attributes intact; and a real OTLP receiver takes the request."""
    db = tmp_path / "store.sqlite3"
    writer = SQLiteSpanExporter(db)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(writer))
    tracer = provider.get_tracer("t")
    with (
        tracer.start_as_current_span(
            "agent.run", kind=SpanKind.SERVER, attributes={"tenant.id": "acme"}
        ) as root,
        tracer.start_as_current_span("execute_tool x", attributes={"tenant.id": "acme"}) as tool,
    ):
        tool.set_attributes(
            {"n": 3, "ratio": 0.5, "ok": False, "tags": ["a", "b"], "nan": math.nan}
        )
        tool.add_event("retry", {"attempt": 2})
        tool.set_status(Status(StatusCode.ERROR, "stale data"))
    for i in range(1500):  # more than one request line
        tracer.start_span(f"s{i}", attributes={"tenant.id": "acme"}).end()
    tracer.start_span("globex's", attributes={"tenant.id": "globex"}).end()
    provider.shutdown()
    out = tmp_path / "acme.otlp.jsonl"
    done = run_cli(
        "export", "--tenant", "acme", "--format", "otlp-json", "-o", str(out), "--db", str(db)
    )
    assert done.returncode == 0, done.stderr
    assert "Exported 1502 spans and 0 usage ledger rows of tenant 'acme' (otlp-json)" in done.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    requests = [
        json_format.Parse(as_protobuf_json(line), ExportTraceServiceRequest())
        for line in out.read_text().splitlines()
    ]
    assert len(requests) == 2
    spans = {
        span.name: span
        for request in requests
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    }
    assert len(spans) == 1502 and "globex's" not in spans
    run, tool_span = spans["agent.run"], spans["execute_tool x"]
    assert run.trace_id.hex() == format(root.get_span_context().trace_id, "032x")
    assert tool_span.parent_span_id == run.span_id
    assert run.kind == 2  # SPAN_KIND_SERVER
    assert (tool_span.status.code, tool_span.status.message) == (2, "stale data")
    assert tool_span.events[0].name == "retry"
    attributes = {a.key: a.value for a in tool_span.attributes}
    assert attributes["tenant.id"].string_value == "acme"
    assert attributes["n"].int_value == 3
    assert attributes["ratio"].double_value == 0.5
    assert attributes["ok"].HasField("bool_value") and not attributes["ok"].bool_value
    assert [v.string_value for v in attributes["tags"].array_value.values] == ["a", "b"]
    assert math.isnan(attributes["nan"].double_value)
    with Receiver().running() as receiver:
        import httpx

        for request in requests:
            response = httpx.post(
                f"{receiver.url}/v1/traces",
                content=request.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
            )
            assert response.status_code == 200
        assert len(receiver.spans) == 1502
        assert {s["attributes"]["tenant.id"] for s in receiver.spans} == {"acme"}


def test_jsonl_export_since(tmp_path: Path) -> None:
    """``--format jsonl`` (the default) writes one span a line; ``--since`` keeps the recent."""
    db = tmp_path / "store.sqlite3"
    writer = SQLiteSpanExporter(db)
    now = time.time_ns()
    writer.export(
        [
            made("acme", now - 3 * DAY, "old"),
            made("acme", now - 3600 * 10**9, "recent"),
            made("globex", now, "g"),
        ]
    )
    writer.shutdown()
    done = run_cli("export", "--tenant", "acme", "--db", str(db))
    assert [json.loads(line)["name"] for line in done.stdout.splitlines()] == ["old", "recent"]
    done = run_cli("export", "--tenant", "acme", "--since", "2d", "--db", str(db))
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(s["name"], s["tenant_id"]) for s in lines] == [("recent", "acme")]
    missing = run_cli("export", "--tenant", "acme", "--db", str(tmp_path / "none.sqlite3"))
    assert missing.returncode == 2
    assert "no trace store" in missing.stderr


def test_purge_survives_being_copied(tmp_path: Path) -> None:
    """A store copied with its write-ahead log (a backup) holds no purged bytes either."""
    db = tmp_path / "store.sqlite3"
    writer = SQLiteSpanExporter(db)
    writer.export([made("acme", NOW, "a", note="acme-secret-copy")])
    purge(db, "acme", before_ns=NOW + 1)
    backup = tmp_path / "backup"
    backup.mkdir()
    for path in db.parent.glob(db.name + "*"):
        shutil.copy(path, backup / path.name)
    assert b"acme-secret-copy" not in raw(backup / db.name)
    writer.shutdown()


def test_the_new_commands_are_in_the_help_and_the_readme() -> None:
    """``tenant-trace --help`` and the README show export, purge and audit."""
    done = run_cli("--help")
    assert done.returncode == 0
    readme = (ROOT / "README.md").read_text()
    for command in ("export", "purge", "audit"):
        assert f"    {command} " in done.stdout
        assert f"tenant-trace {command}" in readme
    purge_help = run_cli("purge", "--help").stdout
    assert (
        "--tenant TENANT" in purge_help and "--before AGE" in purge_help and "--yes" in purge_help
    )
    assert "Exit status: 0 done or counted; 2 refused" in purge_help
    assert "--format {jsonl,otlp-json}" in run_cli("export", "--help").stdout
    assert "## Isolating tenants" in readme
    assert "X-Scope-OrgID" in readme and "x-project-name" in readme


@pytest.mark.parametrize(
    ("value", "check"),
    [
        pytest.param("plain text", lambda v: v == "plain text", id="text"),
        pytest.param("nullable null", lambda v: v == "nullable null", id="text-with-null"),
        pytest.param(2**70, lambda v: v == 2**70, id="int-past-64-bits"),
        pytest.param(math.inf, lambda v: v == math.inf, id="infinity"),
        pytest.param(("a", "b"), lambda v: v == ["a", "b"], id="sequence"),
        pytest.param("é東\u2028", lambda v: v == "é東\u2028", id="unicode"),
    ],
)
def test_the_store_keeps_every_attribute_value_as_it_was(
    tmp_path: Path, value: Any, check: Any
) -> None:
    """Rows are JSON written by orjson, or by the json module for what orjson refuses or
    would turn into null: a value reads back the same either way."""
    exporter = SQLiteSpanExporter(tmp_path / "store.sqlite3")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("t").start_span("s", attributes={"tenant.id": "acme", "v": value})
    span.add_event("e", {"v": value})
    span.end()
    provider.shutdown()
    store = SpanStore(tmp_path / "store.sqlite3")
    try:
        (row,) = store.spans("acme")
    finally:
        store.close()
    assert check(row["attributes"]["v"])
    assert check(row["events"][0]["attributes"]["v"])
