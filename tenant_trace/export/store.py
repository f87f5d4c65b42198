"""The embedded local trace store: spans in one SQLite file, no backend to install.

`SQLiteSpanExporter` is what `init()` exports to when no OTLP endpoint is configured. It
writes in batches (behind a `BatchSpanProcessor`, off the request path), in WAL mode, and
several worker processes may write to the same file. Old spans are pruned by age (per
tenant: `retention`) and size. `tenant_trace.local.store.SpanStore` reads the file back for
the ``tenant-trace`` command; ``tenant-trace purge`` erases one tenant (`TENANT_TABLES`).
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
from typing import Any, NamedTuple

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ..config import parse_duration, parse_tenant_values
from ..errors import ConfigurationError

__all__ = [
    "DEFAULT_PATH",
    "RETENTION_ENV",
    "TENANT_TABLES",
    "SQLiteSpanExporter",
    "TenantTable",
    "open_store",
    "parse_retention",
    "purge_cutoffs",
    "store_path",
    "transaction",
]

logger = logging.getLogger("tenant_trace")

DEFAULT_PATH = ".tenant-trace/traces.sqlite3"
ENV = "TENANT_TRACE_DB"
RETENTION_ENV = "TENANT_TRACE_RETENTION"
DEFAULT_RETENTION = 7 * 24 * 3600.0


class TenantTable(NamedTuple):
    """A table that holds tenants' data: its tenant column, and its time column (nanoseconds
    since the epoch) by which retention prunes and a purge's cut-off applies."""

    table: str
    tenant: str
    time: str


#: Every table that holds a tenant's data. Retention prunes each, ``tenant-trace purge``
#: erases each, and rows of a purged tenant older than the purge never return (see
#: `purge_cutoffs`): a table added to the store joins this list.
TENANT_TABLES: tuple[TenantTable, ...] = (TenantTable("spans", "tenant_id", "start_ns"),)

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
"""


def store_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The store file: `path`, else ``TENANT_TRACE_DB``, else ``.tenant-trace/traces.sqlite3``."""
    return Path(path or os.environ.get(ENV) or DEFAULT_PATH)


def open_store(path: Path) -> sqlite3.Connection:
    """A read-write connection to the store file, its tables created if need be: WAL mode,
    autocommit (use `transaction`), and ``secure_delete``, so that deleted rows are
    overwritten with zeros rather than left in free pages."""
    connection = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=30000")
    connection.execute("PRAGMA secure_delete=ON")
    connection.executescript(_SCHEMA)
    return connection


def parse_retention(retention: Mapping[str, object] | None = None) -> dict[str, float]:
    """Seconds to keep each tenant's data, ``"default"`` for the others, from
    ``{"default": "7d", "acme": "90d"}`` or, when `retention` is ``None``,
    ``TENANT_TRACE_RETENTION="default=7d,acme=90d"``.

    Raises:
        ConfigurationError: not a mapping, a tenant id that is not a string, or an age that
            is not a duration such as ``90d`` or ``12h`` (the message names the tenant).
    """
    where = "retention"
    if retention is None:
        where = RETENTION_ENV
        retention = parse_tenant_values(os.environ.get(RETENTION_ENV, ""), RETENTION_ENV)
    if not isinstance(retention, Mapping):
        raise ConfigurationError(f"{where} must map tenant ids to ages such as '90d'")
    ages: dict[str, float] = {}
    for tenant, age in retention.items():
        if not isinstance(tenant, str) or not tenant:
            raise ConfigurationError(f"{where}: a tenant id must be a non-empty string")
        ages[tenant] = parse_duration(age, f"{where}[{tenant!r}]")
    return ages


def purge_cutoffs(connection: sqlite3.Connection) -> dict[str, int]:
    """Tenant -> the latest cut-off of its purges: its rows that started before it are
    erased and must never be written again (a batch that was in flight during the purge)."""
    return dict(
        connection.execute(
            "SELECT tenant_id, MAX(before_ns) FROM audit WHERE action = 'purge' GROUP BY tenant_id"
        ).fetchall()
    )


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
        max_age: seconds the spans of tenants without their own retention are kept
            (default 7 days), unless `retention` has a ``"default"``.
        max_bytes: past this file size the oldest spans are deleted (default 256 MB),
            whatever their tenant's retention.
        retention: ages per tenant, ``{"default": "7d", "acme": "90d"}`` (`parse_retention`);
            default: ``TENANT_TRACE_RETENTION``.
        clock: the current time in nanoseconds since the epoch, for pruning.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_age: float = DEFAULT_RETENTION,
        max_bytes: int = 256 * 1024 * 1024,
        retention: Mapping[str, object] | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        ages = parse_retention(retention)
        self.path = store_path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_age = ages.pop("default", max_age)
        self.retention = ages
        self.max_bytes = max_bytes
        self._clock = clock
        self._connection = open_store(self.path)
        self._lock = threading.Lock()
        self._exports = 0

    def __repr__(self) -> str:
        return f"SQLiteSpanExporter({str(self.path)!r})"

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            rows = [_row(span) for span in spans]
            with self._lock, transaction(self._connection):
                # In the transaction that inserts, so that a purge is either before (and its
                # tenant's older rows are dropped here) or after (and deletes them).
                cutoffs = purge_cutoffs(self._connection)
                if cutoffs:
                    rows = [r for r in rows if r[7] >= cutoffs.get(r[5], -1)]
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

    def prune(self) -> None:
        """Delete what is past its tenant's retention, then the oldest spans while the
        file is over `max_bytes` (this runs every 100 exports by itself)."""
        with self._lock, transaction(self._connection):
            self._prune()

    def _prune(self) -> None:
        now = self._clock()
        tenants = list(self.retention)
        others = ",".join("?" * len(tenants))
        for table, tenant, started in TENANT_TABLES:
            for name, age in self.retention.items():
                self._connection.execute(
                    f"DELETE FROM {table} WHERE {tenant} = ? AND {started} < ?",
                    (name, _cutoff(now, age)),
                )
            self._connection.execute(
                f"DELETE FROM {table} WHERE ({tenant} IS NULL OR {tenant} NOT IN ({others})) "
                f"AND {started} < ?",
                (*tenants, _cutoff(now, self.max_age)),
            )
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


def _cutoff(now_ns: int, age: float) -> int:
    return max(0, now_ns - int(age * 1e9))


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
