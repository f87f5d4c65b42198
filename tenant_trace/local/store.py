"""Reading the local store back, for the ``tenant-trace`` command: every query is scoped to
one tenant or groups by tenant, so one tenant's data is never shown in another's view."""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..export.retention import TENANT_TABLES
from ..export.store import store_path

__all__ = ["SpanStore", "summarize"]

HOUR_NS = 3600 * 10**9
DAY_NS = 24 * HOUR_NS


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
        # A URI, so that the file is opened read-only; as_uri() quotes "?" and "#" in the path.
        uri = self.path.resolve().as_uri() + "?mode=ro"
        self._connection = sqlite3.connect(uri, uri=True, timeout=30)
        try:
            self._connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.OperationalError as exc:
            if "readonly" not in str(exc):
                raise
            # A WAL file in a folder this user cannot write: its shared-memory index cannot
            # be made, so read the file as it is (nobody who can write it writes it here).
            self._connection.close()
            self._connection = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=30)
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
        self,
        *,
        since_ns: int,
        until_ns: int | None = None,
        tenant: str | None = None,
        who: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Runs (request roots and root agent runs) that started in the window, oldest first;
        one tenant's when `tenant` is given; with `who` (``{"user.id": ...}``), the runs of
        traces in which a span of that tenant carries these identity attributes."""
        where, params = _window(since_ns, until_ns, tenant)
        for key, value in (who or {}).items():
            where += (
                " AND trace_id IN (SELECT trace_id FROM spans WHERE tenant_id IS ?"
                " AND json_extract(attributes, ?) = ?)"
            )
            params += [tenant, f'$."{key}"', value]
        rows = self._query(f"SELECT * FROM spans WHERE {where} ORDER BY start_ns", params)
        return [_run(row) for row in rows]

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """Every span of one trace, in start order."""
        rows = self._query(
            "SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns", (trace_id.lower(),)
        )
        return [_span(row) for row in rows]

    def agents(self, tenant: str, *, since_ns: int) -> dict[str, str]:
        """The outermost agent (``gen_ai.agent.name``) of each trace of one tenant with an
        agent span that started in the window, by trace id."""
        rows = self._query(
            "SELECT trace_id, json_extract(attributes, '$.\"gen_ai.agent.name\"') FROM spans"
            " WHERE tenant_id = ? AND start_ns >= ? AND name LIKE 'invoke\\_agent %' ESCAPE '\\'"
            " ORDER BY start_ns DESC",
            (tenant, since_ns),
        )
        # Latest first, so that each trace keeps its earliest (outermost) agent.
        return {row[0]: row[1] for row in rows if isinstance(row[1], str)}

    # For `tenant-trace export`, `purge` and `audit` (local/takeout.py, local/purge.py).

    def spans(self, tenant: str, *, since_ns: int = 0) -> Iterator[dict[str, Any]]:
        """Every span of one tenant that started at or after `since_ns`, in start order,
        read as it is consumed."""
        try:
            cursor = self._connection.execute(
                "SELECT * FROM spans WHERE tenant_id = ? AND start_ns >= ? ORDER BY start_ns",
                (tenant, since_ns),
            )
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return
            raise
        yield from (_span(row) for row in cursor)

    def counts(self, tenant: str, *, before_ns: int) -> dict[str, int]:
        """Rows of one tenant that started before `before_ns`, in each table that holds
        tenant data (what ``purge`` would delete)."""
        counts = {}
        for table, column, started in TENANT_TABLES:
            sql = f"SELECT COUNT(*) FROM {table} WHERE {column} = ? AND {started} < ?"
            rows = self._query(sql, (tenant, before_ns))
            counts[table] = rows[0][0] if rows else 0
        return counts

    def audit(self) -> list[dict[str, Any]]:
        """The audit rows (purges), oldest first."""
        rows = self._query("SELECT * FROM audit ORDER BY id")
        return [{**dict(row), "deleted": json.loads(row["deleted"] or "{}")} for row in rows]

    def tenants(
        self,
        *,
        since_ns: int,
        until_ns: int | None = None,
        tenant: str | None = None,
        quantile: float = 0.95,
    ) -> list[dict[str, Any]]:
        """`summarize` of each tenant's runs in the window (one tenant's when `tenant` is
        given), by tenant id. Summed in SQL, so that a big store's window is not read into
        Python but for the durations."""
        where, params = _window(since_ns, until_ns, tenant)
        durations: dict[str | None, list[float]] = {}
        sql = f"SELECT tenant_id, (end_ns - start_ns) / 1e6 FROM spans WHERE {where} ORDER BY 2"
        for row in self._query(sql, params):
            durations.setdefault(row[0], []).append(row[1])
        totals = self._query(
            f"SELECT tenant_id, {_TOTALS} FROM spans WHERE {where} GROUP BY 1", params
        )
        rows = [_summary(row[0], dict(row), durations[row[0]], quantile) for row in totals]
        return sorted(rows, key=lambda row: str(row["tenant"]))

    def tokens(
        self, tenants: Iterable[str | None], *, since_ns: int, until_ns: int
    ) -> dict[str | None, int]:
        """The tokens of some tenants' runs in the window (each read by the tenant index)."""
        sql = f"SELECT {_TOKENS} FROM spans WHERE "
        found = {}
        for tenant in tenants:
            where, params = _window(since_ns, until_ns, tenant)
            if tenant is None:
                where += " AND tenant_id IS NULL"
            found[tenant] = self._query(sql + where, params)[0][0] or 0
        return found

    def usage(
        self, *, since_ns: int, tenant: str | None = None, by: str | None = None
    ) -> list[dict[str, Any]]:
        """The usage ledger summed per tenant (and per ``model`` or ``day`` with `by`) over
        the hours that end after `since_ns`; one tenant's when `tenant` is given. A cost is
        ``None`` when no call of the group had a price."""
        group = {"model": ", model", "day": ", day"}.get(by or "", "")
        sql = (
            f"SELECT tenant_id{group}, {_LEDGER_SUMS}"
            f" FROM (SELECT *, hour_ns - hour_ns % {DAY_NS} AS day FROM ledger)"
            f" WHERE hour_ns > ? - {HOUR_NS}"
        )
        params: list[Any] = [since_ns]
        if tenant is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant)
        sql += f" GROUP BY tenant_id{group} ORDER BY tenant_id{group}"
        return _ledger_rows(self._query(sql, params))

    def ledger(self, tenant: str, *, since_ns: int = 0) -> list[dict[str, Any]]:
        """One tenant's usage ledger per model and hour (the rows of several writes summed),
        over the hours that end after `since_ns`, oldest first; for ``tenant-trace export``."""
        sql = (
            f"SELECT tenant_id, model, hour_ns, MIN(start_ns) AS start_ns, {_LEDGER_SUMS}"
            f" FROM ledger WHERE tenant_id = ? AND hour_ns > ? - {HOUR_NS}"
            " GROUP BY model, hour_ns ORDER BY hour_ns, model"
        )
        return _ledger_rows(self._query(sql, (tenant, since_ns)))


_LEDGER_SUMS = (
    "SUM(calls) AS calls, SUM(unpriced_calls) AS unpriced_calls,"
    " SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens,"
    " SUM(cache_read_tokens) AS cache_read_tokens,"
    " SUM(cache_creation_tokens) AS cache_creation_tokens,"
    " SUM(reasoning_tokens) AS reasoning_tokens, SUM(cost_usd) AS cost_usd"
)


def _ledger_rows(rows: Iterable[sqlite3.Row]) -> list[dict[str, Any]]:
    """Summed ledger rows as dicts, a cost rounded to 6 decimals (``None``: no price)."""
    found = [dict(row) for row in rows]
    for row in found:
        if row["cost_usd"] is not None:
            row["cost_usd"] = round(row["cost_usd"], 6)
    return found


def _window(since_ns: int, until_ns: int | None, tenant: str | None) -> tuple[str, list[Any]]:
    """The WHERE clause and parameters of the runs of a window (a partial index holds them)."""
    where = "is_run = 1 AND start_ns >= ?"
    params: list[Any] = [since_ns]
    if until_ns is not None:
        where += " AND start_ns < ?"
        params.append(until_ns)
    if tenant is not None:
        where += " AND tenant_id = ?"
        params.append(tenant)
    return where, params


def _attribute(key: str) -> str:
    return f"IFNULL(json_extract(attributes, '$.\"{key}\"'), 0)"


# `summarize`'s sums, in SQL, of the attributes `_run` reads.
_INPUT = _attribute("tenant_trace.usage.input_tokens")
_OUTPUT = _attribute("tenant_trace.usage.output_tokens")
_TOKENS = f"SUM({_INPUT} + {_OUTPUT})"
_TOTALS = (
    "COUNT(*) AS runs, SUM(status = 'ERROR') AS failures, "
    f"SUM({_INPUT}) AS input_tokens, SUM({_OUTPUT}) AS output_tokens, {_TOKENS} AS tokens, "
    # NULL (unknown) unless some run had a price: never a made-up 0.
    "SUM(json_extract(attributes, '$.\"tenant_trace.usage.cost_usd\"')) AS cost_usd, "
    f"SUM({_attribute('tenant_trace.usage.unpriced_calls')}) AS unpriced_calls, "
    f"SUM({_attribute('tenant_trace.run.tool_calls')}) AS tool_calls, "
    f"SUM({_attribute('tenant_trace.run.tool_errors')}) AS tool_errors, "
    "MAX(start_ns) AS last_seen_ns"
)


def summarize(
    tenant: str | None, runs: list[dict[str, Any]], quantile: float = 0.95
) -> dict[str, Any]:
    """Runs, failure rate, latency percentiles (and the `quantile` asked for), tokens, cost
    (and calls without a price) and tool error rate of some runs."""
    costs = [r["cost_usd"] for r in runs if r["cost_usd"] is not None]
    totals = {
        "runs": len(runs),
        "failures": sum(r["failed"] for r in runs),
        "input_tokens": sum(r["input_tokens"] for r in runs),
        "output_tokens": sum(r["output_tokens"] for r in runs),
        "tokens": sum(r["tokens"] for r in runs),
        "cost_usd": sum(costs) if costs else None,
        "unpriced_calls": sum(r["unpriced_calls"] for r in runs),
        "tool_calls": sum(r["tool_calls"] for r in runs),
        "tool_errors": sum(r["tool_errors"] for r in runs),
        "last_seen_ns": max((r["start_ns"] for r in runs), default=None),
    }
    return _summary(tenant, totals, sorted(r["duration_ms"] for r in runs), quantile)


def _summary(
    tenant: str | None, totals: dict[str, Any], durations: list[float], quantile: float
) -> dict[str, Any]:
    """`summarize`'s figures from the totals of some runs and their sorted durations."""
    runs, failures = totals["runs"], totals["failures"]
    tool_calls, tool_errors = totals["tool_calls"], totals["tool_errors"]
    cost = totals["cost_usd"]
    return {
        "tenant": tenant,
        "runs": runs,
        "failures": failures,
        "failure_rate": failures / runs if runs else 0.0,
        "p50_ms": _percentile(durations, 0.50),
        "p95_ms": _percentile(durations, 0.95),
        "p99_ms": _percentile(durations, 0.99),
        "quantile_ms": _percentile(durations, quantile),
        "input_tokens": totals["input_tokens"],
        "output_tokens": totals["output_tokens"],
        "tokens": totals["tokens"],
        "cost_usd": None if cost is None else round(cost, 6),
        "unpriced_calls": totals["unpriced_calls"],
        "tool_calls": tool_calls,
        "tool_errors": tool_errors,
        "tool_error_rate": tool_errors / tool_calls if tool_calls else 0.0,
        "last_seen_ns": totals["last_seen_ns"],
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
    input_tokens = int(attributes.get("tenant_trace.usage.input_tokens", 0))
    output_tokens = int(attributes.get("tenant_trace.usage.output_tokens", 0))
    return {
        "trace_id": row["trace_id"],
        "tenant_id": row["tenant_id"],
        "name": attributes.get("http.route") or row["name"],
        "start_ns": row["start_ns"],
        "duration_ms": (row["end_ns"] - row["start_ns"]) / 1e6,
        "failed": row["status"] == "ERROR",
        "error_type": row["error_type"],
        "status_message": row["status_message"],
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "tokens": input_tokens + output_tokens,
        "cost_usd": attributes.get("tenant_trace.usage.cost_usd"),
        "unpriced_calls": int(attributes.get("tenant_trace.usage.unpriced_calls", 0)),
        "tool_calls": int(attributes.get("tenant_trace.run.tool_calls", 0)),
        "tool_errors": int(attributes.get("tenant_trace.run.tool_errors", 0)),
    }
