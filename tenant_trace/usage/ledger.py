"""The usage ledger: tokens and cost per tenant, model and hour, counted from every model call
whether or not its trace was sampled ("you cannot bill from a sample"), kept in the local store.

`UsageSpanProcessor` adds each call as its span ends, in memory; a thread of the ledger writes
what was added every `Ledger.interval` seconds (and at flush and shutdown), off the request
path, one row per tenant, model and hour for each write. Several processes may write to the
same file; readers sum the rows (`ledger_rows`). Retention and ``tenant-trace purge`` treat the
table as they treat spans (`TENANT_TABLES`), and a purged tenant's usage from before the purge
is never written again: a write that counts calls from before the purge is dropped whole,
so the calls of the same tenant in the seconds after it (until the next write) go with it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from ..export.retention import purge_cutoffs
from ..export.store import open_store, transaction
from .read import Usage

__all__ = ["HOUR_NS", "Ledger"]

logger = logging.getLogger("tenant_trace")

HOUR_NS = 3600 * 10**9
_INSERT = "INSERT INTO ledger VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"


class _Bucket:
    """What one tenant used of one model in one hour, since the last write."""

    __slots__ = ("calls", "cost", "first_ns", "unpriced", "usage")

    def __init__(self, first_ns: int) -> None:
        self.first_ns = first_ns
        self.usage = Usage()
        self.calls = self.unpriced = 0
        self.cost: float | None = None


class Ledger:
    """Counts model calls per tenant, model and hour into the store file at `path`.

    Args:
        path: the local store file (`SQLiteSpanExporter.path`).
        interval: seconds between writes (default 10).
        busy_timeout: seconds to wait for another writer's lock (default 30); a write that
            meets a longer lock is kept for the next one.
        start: start the writing thread (a test writes with `flush` itself).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        interval: float = 10.0,
        busy_timeout: float = 30,
        start: bool = True,
    ) -> None:
        self.path = Path(path)
        self.interval = interval
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()  # guards _buckets
        self._write_lock = threading.Lock()
        self._buckets: dict[tuple[str | None, str | None, int], _Bucket] = {}
        self._connection: sqlite3.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if start:
            self._start()
            # A worker forked from a process that made the ledger (gunicorn --preload) gets
            # neither its thread nor a connection it may use: its own of both.
            os.register_at_fork(after_in_child=self._forked)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tenant-trace-ledger", daemon=True)
        self._thread.start()

    def _forked(self) -> None:
        self._lock, self._write_lock = threading.Lock(), threading.Lock()
        self._buckets, self._connection = {}, None  # the parent writes what it counted
        if not self._stop.is_set():
            self._start()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    def add(
        self,
        tenant: str | None,
        model: str | None,
        at_ns: int,
        usage: Usage,
        cost: float | None,
    ) -> None:
        """Count one call of `tenant` to `model` that ended at `at_ns` (ns since the epoch)."""
        key = (tenant, model, at_ns - at_ns % HOUR_NS)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(at_ns)
            bucket.first_ns = min(bucket.first_ns, at_ns)
            bucket.usage += usage
            bucket.calls += 1
            if cost is None:
                bucket.unpriced += 1
            else:
                bucket.cost = (bucket.cost or 0.0) + cost

    def flush(self) -> None:
        """Write what was counted since the last write; a write that fails is kept for the
        next one (and said in the log), never raised."""
        with self._write_lock:
            with self._lock:
                buckets, self._buckets = self._buckets, {}
            if not buckets:
                return
            try:
                self._write(buckets)
            except (OSError, sqlite3.Error) as exc:
                logger.warning(
                    "tenant_trace: could not write the usage ledger to %s: %s", self.path, exc
                )
                with self._lock:  # keep them: merged into what came since
                    for key, bucket in buckets.items():
                        self._merge(key, bucket)

    def _merge(self, key: tuple[str | None, str | None, int], old: _Bucket) -> None:
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = old
            return
        bucket.first_ns = min(bucket.first_ns, old.first_ns)
        bucket.usage += old.usage
        bucket.calls += old.calls
        bucket.unpriced += old.unpriced
        if old.cost is not None:
            bucket.cost = (bucket.cost or 0.0) + old.cost

    def _write(self, buckets: dict[tuple[str | None, str | None, int], _Bucket]) -> None:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = open_store(self.path, self.busy_timeout)
        connection = self._connection
        with transaction(connection):
            cutoffs = purge_cutoffs(connection)
            rows: list[tuple[Any, ...]] = [
                (tenant, model, hour, b.first_ns, b.calls, b.unpriced, *b.usage, b.cost)
                for (tenant, model, hour), b in buckets.items()
                if tenant is None or b.first_ns >= cutoffs.get(tenant, -1)
            ]
            connection.executemany(_INSERT, rows)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        """Stop the thread, write what is left, close the file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.busy_timeout)
        self.flush()
        with self._write_lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
