"""How long each tenant's data is kept in the local store, and where it is: the tables that
hold tenant data, retention per tenant, and the cut-offs of the purges writers must honour.

    tenant_trace.init(retention={"default": "7d", "acme": "90d"})

or ``TENANT_TRACE_RETENTION="default=7d,acme=90d"``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from typing import NamedTuple

from ..config import parse_duration, parse_tenant_values
from ..errors import ConfigurationError

__all__ = [
    "DEFAULT_RETENTION",
    "RETENTION_ENV",
    "TENANT_TABLES",
    "TenantTable",
    "parse_retention",
    "prune_tenants",
    "purge_cutoffs",
]

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
TENANT_TABLES: tuple[TenantTable, ...] = (
    TenantTable("spans", "tenant_id", "start_ns"),
    TenantTable("ledger", "tenant_id", "start_ns"),
)


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


def prune_tenants(
    connection: sqlite3.Connection, now_ns: int, retention: Mapping[str, float], default: float
) -> None:
    """Delete, from every tenant table, each listed tenant's rows older than its retention
    (seconds) and everyone else's (spans of no tenant too) older than `default`."""
    tenants = list(retention)
    others = ",".join("?" * len(tenants))
    for table, tenant, started in TENANT_TABLES:
        for name, age in retention.items():
            connection.execute(
                f"DELETE FROM {table} WHERE {tenant} = ? AND {started} < ?",
                (name, _cutoff(now_ns, age)),
            )
        connection.execute(
            f"DELETE FROM {table} WHERE ({tenant} IS NULL OR {tenant} NOT IN ({others})) "
            f"AND {started} < ?",
            (*tenants, _cutoff(now_ns, default)),
        )


def _cutoff(now_ns: int, age: float) -> int:
    return max(0, now_ns - int(age * 1e9))
