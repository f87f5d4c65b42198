"""The embedded local trace store: spans in one SQLite file, no backend to install.

`SQLiteSpanExporter` is what `init()` exports to when no OTLP endpoint is configured. It
writes in batches (behind a `BatchSpanProcessor`, off the request path), in WAL mode, and
several worker processes may write to the same file. Old spans are pruned by age and size.
`SpanStore` reads the file back for the ``tenant-trace`` command; every query is scoped to
one tenant or groups by tenant, so one tenant's data is never shown in another's view.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["DEFAULT_PATH", "SQLiteSpanExporter", "SpanStore", "store_path"]

logger = logging.getLogger("tenant_trace")

DEFAULT_PATH = ".tenant-trace/traces.sqlite3"
ENV = "TENANT_TRACE_DB"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    tenant_id TEXT,
    service TEXT,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    error_type TEXT,
    is_run INTEGER NOT NULL,
    attributes TEXT NOT NULL,
    events TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_by_tenant ON spans (tenant_id, is_run, start_ns);
CREATE INDEX IF NOT EXISTS spans_by_time ON spans (start_ns);
"""


def store_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The store file: `path`, else ``TENANT_TRACE_DB``, else ``.tenant-trace/traces.sqlite3``."""
    return Path(path or os.environ.get(ENV) or DEFAULT_PATH)


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=30000")
    return connection


def _is_run(span: ReadableSpan) -> bool:
    """A run is a request's root span, or an agent run with no parent (a worker, a script)."""
    if span.name == "agent.run":
        return True
    return span.name.startswith("invoke_agent ") and span.parent is None


# Built once: json.dumps(..., default=str) would build a new encoder for every span.
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


def _row(span: ReadableSpan) -> tuple[Any, ...]:
    attributes = dict(span.attributes or {})
    resource = span.resource.attributes if span.resource else {}
    parent = span.parent
    status = span.status
    events = span.events
    return (
        format(span.context.trace_id, "032x"),
        format(span.context.span_id, "016x"),
        format(parent.span_id, "016x") if parent is not None else None,
        span.name,
        span.kind.name,
        attributes.get("tenant.id"),
        resource.get("service.name"),
        span.start_time or 0,
        span.end_time or span.start_time or 0,
        status.status_code.name,
        status.description,
        attributes.get("error.type"),
        int(_is_run(span)),
        _encode(attributes),
        _encode(
            [
                {"name": e.name, "timestamp": e.timestamp, "attributes": dict(e.attributes or {})}
                for e in events
            ]
        )
        if events
        else "[]",
    )


class SQLiteSpanExporter(SpanExporter):
    """Exports spans to the local store file.

    Args:
        path: the file (default: ``TENANT_TRACE_DB`` or ``.tenant-trace/traces.sqlite3``);
            its folder is created.
        max_age: spans older than this many seconds are deleted (default 7 days).
        max_bytes: past this file size the oldest spans are deleted (default 256 MB).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_age: float = 7 * 24 * 3600,
        max_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self.path = store_path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_age = max_age
        self.max_bytes = max_bytes
        self._connection = _connect(self.path)
        self._connection.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._exports = 0

    def __repr__(self) -> str:
        return f"SQLiteSpanExporter({str(self.path)!r})"

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            rows = [_row(span) for span in spans]
            with self._lock, _transaction(self._connection):
                self._connection.executemany(
                    "INSERT OR REPLACE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
                )
                self._exports += 1
                if self._exports % 100 == 1:
                    self._prune()
        except Exception:
            logger.warning("tenant_trace: could not write spans to %s", self.path, exc_info=True)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _prune(self) -> None:
        cutoff = time.time_ns() - int(self.max_age * 1e9)
        self._connection.execute("DELETE FROM spans WHERE start_ns < ?", (cutoff,))
        pages = self._connection.execute("PRAGMA page_count").fetchone()[0]
        size = self._connection.execute("PRAGMA page_size").fetchone()[0]
        if pages * size > self.max_bytes:
            # Drop the oldest tenth; the freed pages are reused by later writes.
            self._connection.execute(
                "DELETE FROM spans WHERE start_ns <= (SELECT start_ns FROM spans ORDER BY start_ns "
                "LIMIT 1 OFFSET (SELECT COUNT(*) / 10 FROM spans))"
            )

    def shutdown(self) -> None:
        with self._lock:
            self._connection.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of sorted values, nearest-rank; ``None`` when empty."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


class SpanStore:
    """Read-only queries over a store file, for the ``tenant-trace`` command.

    Raises:
        FileNotFoundError: the file does not exist (nothing was exported yet).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = store_path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no trace store at {self.path}")
        self._connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        self._connection.row_factory = sqlite3.Row

    def __repr__(self) -> str:
        return f"SpanStore({str(self.path)!r})"

    def close(self) -> None:
        self._connection.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise

    def runs(
        self, *, since_ns: int, until_ns: int | None = None, tenant: str | None = None
    ) -> list[dict[str, Any]]:
        """Runs (request roots and root agent runs) that started in the window, oldest first;
        one tenant's when `tenant` is given."""
        sql = "SELECT * FROM spans WHERE is_run = 1 AND start_ns >= ?"
        params: list[Any] = [since_ns]
        if until_ns is not None:
            sql += " AND start_ns < ?"
            params.append(until_ns)
        if tenant is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant)
        return [_run(row) for row in self._query(sql + " ORDER BY start_ns", params)]

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """Every span of one trace, in start order."""
        rows = self._query(
            "SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns", (trace_id.lower(),)
        )
        return [_span(row) for row in rows]

    def tenants(self, *, since_ns: int) -> list[dict[str, Any]]:
        """One summary per tenant over the window, by tenant id."""
        by_tenant: dict[str | None, list[dict[str, Any]]] = {}
        for run in self.runs(since_ns=since_ns):
            by_tenant.setdefault(run["tenant_id"], []).append(run)
        return [
            summarize(tenant, runs)
            for tenant, runs in sorted(by_tenant.items(), key=lambda kv: str(kv[0]))
        ]


def summarize(
    tenant: str | None, runs: list[dict[str, Any]], quantile: float = 0.95
) -> dict[str, Any]:
    """Runs, failure rate, latency percentiles (and the `quantile` asked for), tokens and
    tool error rate of some runs."""
    durations = sorted(r["duration_ms"] for r in runs)
    failures = sum(r["failed"] for r in runs)
    tool_calls = sum(r["tool_calls"] for r in runs)
    tool_errors = sum(r["tool_errors"] for r in runs)
    return {
        "tenant": tenant,
        "runs": len(runs),
        "failures": failures,
        "failure_rate": failures / len(runs) if runs else 0.0,
        "p50_ms": _percentile(durations, 0.50),
        "p95_ms": _percentile(durations, 0.95),
        "p99_ms": _percentile(durations, 0.99),
        "quantile_ms": _percentile(durations, quantile),
        "tokens": sum(r["tokens"] for r in runs),
        "tool_calls": tool_calls,
        "tool_errors": tool_errors,
        "tool_error_rate": tool_errors / tool_calls if tool_calls else 0.0,
        "last_seen_ns": max((r["start_ns"] for r in runs), default=None),
    }


def _span(row: sqlite3.Row) -> dict[str, Any]:
    span = dict(row)
    span["attributes"] = json.loads(row["attributes"])
    span["events"] = json.loads(row["events"])
    span["duration_ms"] = (row["end_ns"] - row["start_ns"]) / 1e6
    del span["is_run"]
    return span


def _run(row: sqlite3.Row) -> dict[str, Any]:
    attributes = json.loads(row["attributes"])
    return {
        "trace_id": row["trace_id"],
        "tenant_id": row["tenant_id"],
        "name": attributes.get("http.route") or row["name"],
        "start_ns": row["start_ns"],
        "duration_ms": (row["end_ns"] - row["start_ns"]) / 1e6,
        "failed": row["status"] == "ERROR",
        "error_type": row["error_type"],
        "status_message": row["status_message"],
        "tokens": int(attributes.get("gen_ai.usage.input_tokens", 0))
        + int(attributes.get("gen_ai.usage.output_tokens", 0)),
        "tool_calls": int(attributes.get("tenant_trace.run.tool_calls", 0)),
        "tool_errors": int(attributes.get("tenant_trace.run.tool_errors", 0)),
    }
