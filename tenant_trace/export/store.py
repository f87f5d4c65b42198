"""The embedded local trace store: spans in one SQLite file, no backend to install.

`SQLiteSpanExporter` is what `init()` exports to when no OTLP endpoint is configured. It
writes in batches (behind a `BatchSpanProcessor`, off the request path), in WAL mode, and
several worker processes may write to the same file. Old spans are pruned by age (per
tenant: `retention`) and size. `tenant_trace.local.store.SpanStore` reads the file back for
the ``tenant-trace`` command; ``tenant-trace purge`` erases one tenant
(`tenant_trace.export.retention`).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import metrics as otel_metrics
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .._version import __version__
from ..telemetry import plain
from .retention import DEFAULT_RETENTION, parse_retention, prune_tenants, purge_cutoffs

__all__ = ["DEFAULT_PATH", "SQLiteSpanExporter", "open_store", "store_path", "transaction"]

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
-- The runs of a window (the views' and alerts' queries) without the other spans, and their
-- tenants and durations without reading the rows.
CREATE INDEX IF NOT EXISTS runs_by_time ON spans (start_ns, tenant_id, end_ns) WHERE is_run = 1;
-- What was erased, when, how much: the rows `tenant-trace audit` lists. A purge's row is
-- also its tombstone: writers drop rows of that tenant older than before_ns.
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at_ns INTEGER NOT NULL,
    action TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    before_ns INTEGER NOT NULL,
    deleted TEXT,
    total INTEGER,
    actor TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit (action, tenant_id);
-- The usage ledger (tenant_trace.usage.ledger): one row per tenant, model and hour for each
-- write of a process, summed by readers; counted whether or not the traces were sampled.
-- start_ns: the first call the row counts; cost_usd NULL: no call of the row had a price.
CREATE TABLE IF NOT EXISTS ledger (
    tenant_id TEXT,
    model TEXT,
    hour_ns INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    unpriced_calls INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_creation_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_usd REAL
);
CREATE INDEX IF NOT EXISTS ledger_by_tenant ON ledger (tenant_id, hour_ns);
"""


_INSERT = "INSERT OR REPLACE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"


def store_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The store file: `path`, else ``TENANT_TRACE_DB``, else ``.tenant-trace/traces.sqlite3``."""
    return Path(path or os.environ.get(ENV) or DEFAULT_PATH)


def open_store(path: Path, busy_timeout: float = 30) -> sqlite3.Connection:
    """A read-write connection to the store file, its tables created if need be: WAL mode,
    autocommit (use `transaction`), and ``secure_delete``, so that deleted rows are
    overwritten with zeros rather than left in free pages (some builds of SQLite have it
    on by default, others not)."""
    connection = sqlite3.connect(
        path, timeout=busy_timeout, check_same_thread=False, isolation_level=None
    )
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA secure_delete=ON")
        connection.executescript(_SCHEMA)
    except BaseException:
        connection.close()
        raise
    return connection


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _is_run(span: ReadableSpan) -> bool:
    """A run is a request's root span, or an agent run with no parent (a worker, a script)."""
    if span.name == "agent.run":
        return True
    return span.name.startswith("invoke_agent ") and span.parent is None


# Built once: json.dumps(..., default=str) would build a new encoder for every span.
_json_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


def _encode(value: object) -> str:
    """Compact JSON: orjson (about three times faster), else the standard library for what
    orjson refuses (an integer past 64 bits) or writes as null (NaN and infinities, which
    the store keeps as the json module writes them)."""
    try:
        encoded = orjson.dumps(value, default=str)
    except orjson.JSONEncodeError:
        return _json_encode(value)
    return _json_encode(value) if b"null" in encoded else encoded.decode()


def _row(span: ReadableSpan) -> tuple[Any, ...]:
    attributes = plain(span.attributes)
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
                {"name": e.name, "timestamp": e.timestamp, "attributes": plain(e.attributes)}
                for e in events
            ]
        )
        if events
        else "[]",
    )


class SQLiteSpanExporter(SpanExporter):
    """Exports spans to the local store file.

    A store that cannot be used (a corrupt or read-only file, a folder that cannot be made)
    never stops the application: one ERROR names the file and the fix, its spans are dropped
    and counted (``tenant_trace.store.spans_dropped``), and opening is tried again at most
    every `retry_seconds`. A batch that meets a lock held longer than `busy_timeout` by
    another process is kept and written with the next batch; past `max_pending` spans the
    oldest waiting ones are dropped and counted.

    Args:
        path: the file (default: ``TENANT_TRACE_DB`` or ``.tenant-trace/traces.sqlite3``);
            its folder is created.
        max_age: seconds the spans of tenants without their own retention are kept
            (default 7 days), unless `retention` has a ``"default"``.
        max_bytes: past this file size the oldest spans are deleted (default 256 MB),
            whatever their tenant's retention.
        busy_timeout: seconds to wait for another writer's lock before keeping a batch for
            later (default 30).
        max_pending: spans kept across locked batches (default 10,000).
        retry_seconds: how often opening an unusable store is tried again (default 60).
        clock: `time.monotonic`, or a fake one in tests.
        meter_provider: where the drop counter goes (default: the global one).
        retention: ages per tenant, ``{"default": "7d", "acme": "90d"}`` (`parse_retention`);
            default: ``TENANT_TRACE_RETENTION``.
        wall_clock: the time in nanoseconds since the epoch, for pruning (`time.time_ns`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_age: float = DEFAULT_RETENTION,
        max_bytes: int = 256 * 1024 * 1024,
        busy_timeout: float = 30,
        max_pending: int = 10_000,
        retry_seconds: float = 60,
        clock: Callable[[], float] = time.monotonic,
        meter_provider: otel_metrics.MeterProvider | None = None,
        retention: Mapping[str, object] | None = None,
        wall_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        ages = parse_retention(retention)
        self.path = store_path(path)
        self.max_age = ages.pop("default", max_age)
        self.retention = ages
        self._wall_clock = wall_clock
        self.max_bytes = max_bytes
        self.busy_timeout = busy_timeout
        self.max_pending = max_pending
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._exports = 0
        self._pending: list[tuple[Any, ...]] = []
        self._connection: sqlite3.Connection | None = None
        self._failed_at: float | None = None
        meter = otel_metrics.get_meter("tenant_trace", __version__, meter_provider)
        self._dropped = meter.create_counter(
            "tenant_trace.store.spans_dropped",
            unit="{span}",
            description="Spans the local store could not keep, by reason.",
        )
        self._open()

    def __repr__(self) -> str:
        return f"SQLiteSpanExporter({str(self.path)!r})"

    @property
    def pending(self) -> int:
        """Spans of batches that met a lock, waiting for the next export."""
        return len(self._pending)

    @property
    def usable(self) -> bool:
        """Whether the store file is open for writing."""
        return self._connection is not None

    def _open(self) -> sqlite3.Connection | None:
        """The connection, opened now if it is not (and a retry is due); ``None`` when the
        store cannot be used, said once per failure in an ERROR that names the fix."""
        if self._connection is not None:
            return self._connection
        now = self._clock()
        if self._failed_at is not None and now - self._failed_at < self.retry_seconds:
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = open_store(self.path, self.busy_timeout)
        except (OSError, sqlite3.Error) as exc:
            if self._failed_at is None:
                logger.error(
                    "tenant_trace: the local trace store %s cannot be used (%s): its spans are"
                    " dropped. Set TENANT_TRACE_DB to a writable file, or send spans elsewhere"
                    " (OTEL_EXPORTER_OTLP_ENDPOINT, or OTEL_TRACES_EXPORTER=none).",
                    self.path,
                    exc,
                )
            self._failed_at = now
            return None
        if self._failed_at is not None:
            logger.warning("tenant_trace: the local trace store %s is usable again", self.path)
        self._connection, self._failed_at = connection, None
        return connection

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            rows = [_row(span) for span in spans]
        except Exception:
            logger.warning("tenant_trace: could not encode spans for %s", self.path, exc_info=True)
            self._dropped.add(len(spans), {"reason": "encoding"})
            return SpanExportResult.FAILURE
        with self._lock:
            connection = self._open()
            if connection is None:
                self._dropped.add(len(rows) + len(self._pending), {"reason": "unusable"})
                self._pending.clear()
                return SpanExportResult.FAILURE
            rows, self._pending = self._pending + rows, []
            try:
                self._write(connection, rows)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    return self._lose(rows, exc)
                # Another process holds the lock: keep the batch for the next export.
                self._pending = rows[-self.max_pending :]
                if len(rows) > self.max_pending:
                    self._dropped.add(len(rows) - self.max_pending, {"reason": "busy"})
                return SpanExportResult.FAILURE
            except sqlite3.Error as exc:
                return self._lose(rows, exc)
        return SpanExportResult.SUCCESS

    def _write(self, connection: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        with transaction(connection):
            # In the transaction that inserts, so that a purge is either before (and its
            # tenant's older rows are dropped here, also from a batch that met its lock)
            # or after (and deletes them).
            cutoffs = purge_cutoffs(connection)
            if cutoffs:
                rows = [r for r in rows if r[7] >= cutoffs.get(r[5], -1)]
            connection.executemany(_INSERT, rows)
            self._exports += 1
            if self._exports % 100 == 1:
                self._prune(connection)

    def _lose(self, rows: list[tuple[Any, ...]], exc: Exception) -> SpanExportResult:
        logger.warning("tenant_trace: could not write spans to %s: %s", self.path, exc)
        self._dropped.add(len(rows), {"reason": "error"})
        return SpanExportResult.FAILURE

    def prune(self) -> None:
        """Delete what is past its tenant's retention, then the oldest spans while the
        file is over `max_bytes` (this runs every 100 exports by itself)."""
        with self._lock:
            connection = self._open()
            if connection is not None:
                with transaction(connection):
                    self._prune(connection)

    def _prune(self, connection: sqlite3.Connection) -> None:
        prune_tenants(connection, self._wall_clock(), self.retention, self.max_age)
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        size = connection.execute("PRAGMA page_size").fetchone()[0]
        if pages * size > self.max_bytes:
            # Drop the oldest tenth; the freed pages are reused by later writes.
            connection.execute(
                "DELETE FROM spans WHERE start_ns <= (SELECT start_ns FROM spans ORDER BY start_ns "
                "LIMIT 1 OFFSET (SELECT COUNT(*) / 10 FROM spans))"
            )

    def shutdown(self) -> None:
        with self._lock:
            if self._pending and self._connection is not None:
                try:  # a last try for a batch that met a lock
                    self._write(self._connection, self._pending)
                except sqlite3.Error:
                    self._dropped.add(len(self._pending), {"reason": "busy"})
                self._pending = []
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception): the write lock is
    taken at once, so concurrent writers and purges are serialized."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
