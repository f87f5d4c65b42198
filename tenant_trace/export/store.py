"""The embedded local trace store: spans in one SQLite file, no backend to install.

`SQLiteSpanExporter` is what `init()` exports to when no OTLP endpoint is configured. It
writes in batches (behind a `BatchSpanProcessor`, off the request path), in WAL mode, and
several worker processes may write to the same file. Old spans are pruned by age and size.
`tenant_trace.local.store.SpanStore` reads the file back for the ``tenant-trace`` command.
"""

from __future__ import annotations

import json
import logging
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

__all__ = ["DEFAULT_PATH", "SQLiteSpanExporter", "store_path"]

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
