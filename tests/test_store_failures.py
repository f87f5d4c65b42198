"""An unusable local store never takes the application down: a corrupt or read-only file, a
read-only folder, a path under a regular file, the default path in a read-only working
directory (a container with a read-only root). The app starts and serves, one ERROR names
the file and the fix, dropped spans are counted, and the CLI says why there is nothing.
A batch that meets another process's lock is kept and written later, not lost."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from tenant_trace.export.store import SQLiteSpanExporter
from tests.servers.process import ROOT

# The app of each case, in a fresh interpreter: it drops root privileges before init() (as
# an app in a container runs unprivileged), so that file permissions apply.
APP = """
import io, json, logging, os, sys
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import tenant_trace, tenant_trace.export.store, tenant_trace.export.pipeline
from tenant_trace_fastapi import TenantTraceMiddleware

if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider([reader]))
provider = tenant_trace.init(service_name="store-failures")
finished = InMemorySpanExporter()
provider.add_span_processor(SimpleSpanProcessor(finished))
app = FastAPI()
app.add_middleware(TenantTraceMiddleware)

@app.get("/")
def hello():
    return {"tenant": tenant_trace.get_current_tenant()}

client = TestClient(app)
statuses = [client.get("/", headers={"X-Tenant-ID": "acme"}).status_code for _ in range(5)]
provider.force_flush()
dropped = sum(
    p.value
    for rm in reader.get_metrics_data().resource_metrics
    for sm in rm.scope_metrics
    for m in sm.metrics
    if m.name == "tenant_trace.store.spans_dropped"
    for p in m.data.data_points
)
names = sorted({s.name for s in finished.get_finished_spans()})
print(json.dumps({"statuses": statuses, "dropped": dropped, "names": names,
                  "finished": len(finished.get_finished_spans())}))
"""


CLI = """
import os, sys
import tenant_trace.local.cli, rich.console, rich.table, sqlite3

if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)
sys.exit(tenant_trace.local.cli.main(sys.argv[1:]))
"""


def world_dir(path: Path, mode: int = 0o755) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    return path


def case(kind: str, base: Path) -> tuple[dict[str, str], Path, Path]:
    """The environment, working directory and store path of one broken case."""
    cwd = world_dir(base / "cwd")
    if kind == "corrupt":
        db = world_dir(base / "store", 0o777) / "traces.sqlite3"
        db.write_bytes(b"this is not a database\n" * 200)
        db.chmod(0o666)
    elif kind == "read-only-file":
        db = world_dir(base / "store") / "traces.sqlite3"
        SQLiteSpanExporter(db).shutdown()
        db.chmod(0o444)
        (base / "store").chmod(0o555)
    elif kind == "read-only-folder":
        db = world_dir(base / "store", 0o555) / "traces.sqlite3"
    elif kind == "under-a-file":
        (base / "store").write_text("a regular file")
        db = base / "store" / "traces.sqlite3"
    else:  # the default path, in a working directory nobody may write
        cwd.chmod(0o555)
        return {}, cwd, cwd / ".tenant-trace" / "traces.sqlite3"
    return {"TENANT_TRACE_DB": str(db)}, cwd, db


@pytest.fixture
def base() -> Path:
    # Not pytest's tmp_path: that is private to root, and the app runs unprivileged.
    return world_dir(Path(tempfile.mkdtemp(prefix="tenant-trace-store-")))


@pytest.mark.parametrize(
    "kind", ["corrupt", "read-only-file", "read-only-folder", "under-a-file", "read-only-cwd"]
)
def test_the_app_starts_and_serves_with_an_unusable_store(base: Path, kind: str) -> None:
    env, cwd, db = case(kind, base)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TENANT_"))}
    environment.update(env, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, "-c", APP], cwd=cwd, env=environment, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["statuses"] == [200] * 5
    assert result["dropped"] == result["finished"] >= 5, result  # every span, counted
    errors = [line for line in done.stderr.splitlines() if "cannot be used" in line]
    assert len(errors) == 1, done.stderr
    assert str(db.name) in errors[0] and "TENANT_TRACE_DB" in errors[0]
    assert "Traceback" not in done.stderr

    # The command, run by the same user, says why there is nothing to show.
    cli = subprocess.run(
        [sys.executable, "-c", CLI, "tenants", "--db", str(db)],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if kind == "read-only-file":
        assert cli.returncode == 0, cli.stderr
        assert "not writable" in cli.stderr
    else:
        assert cli.returncode == 2, cli.stdout + cli.stderr
        assert cli.stderr.startswith("tenant-trace: ") and cli.stderr.count("\n") == 1


def spans(provider: TracerProvider, n: int, name: str) -> None:
    tracer = provider.get_tracer("tests.store")
    for i in range(n):
        tracer.start_span(name, attributes={"i": i}).end()


def test_a_batch_that_meets_a_lock_is_written_later(tmp_path: Path) -> None:
    """Another process holds the write lock past the busy timeout: the batch waits and is
    written with the next one once the lock is gone; nothing is dropped."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    db = tmp_path / "traces.sqlite3"
    exporter = SQLiteSpanExporter(db, busy_timeout=0.05)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer, holding the lock
    spans(provider, 3, "while-locked")
    assert exporter.pending == 3
    holder.execute("COMMIT")
    spans(provider, 1, "after")
    provider.shutdown()
    names = [r[0] for r in sqlite3.connect(db).execute("SELECT name FROM spans")]
    assert sorted(names) == ["after", "while-locked", "while-locked", "while-locked"]


def test_what_waits_for_a_lock_is_bounded_and_counted(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    reader = InMemoryMetricReader()
    db = tmp_path / "traces.sqlite3"
    exporter = SQLiteSpanExporter(
        db, busy_timeout=0.05, max_pending=2, meter_provider=MeterProvider([reader])
    )
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    spans(provider, 5, "while-locked")
    provider.shutdown()  # the lock is still held: the last try fails too
    holder.execute("COMMIT")
    data = reader.get_metrics_data()
    dropped = {
        p.attributes["reason"]: p.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "tenant_trace.store.spans_dropped"
        for p in m.data.data_points
    }
    assert dropped == {"busy": 5}  # 3 past the bound, then the 2 kept at shutdown


def test_a_store_that_becomes_usable_is_used_again(tmp_path: Path) -> None:
    """Opening is tried again after `retry_seconds` (a fake clock here)."""
    now = [0.0]
    folder = tmp_path / "later"
    folder.write_text("a file where the folder should be")
    exporter = SQLiteSpanExporter(folder / "traces.sqlite3", retry_seconds=60, clock=lambda: now[0])
    assert not exporter.usable
    folder.unlink()
    now[0] = 30.0
    provider = TracerProvider()
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans(provider, 1, "too-early")
    assert not exporter.usable
    now[0] = 61.0
    spans(provider, 1, "in-time")
    provider.shutdown()
    names = [
        r[0] for r in sqlite3.connect(folder / "traces.sqlite3").execute("SELECT name FROM spans")
    ]
    assert names == ["in-time"]
