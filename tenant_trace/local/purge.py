"""``tenant-trace purge`` and ``tenant-trace audit``: erasing one tenant from the local store,
on the record.

    tenant-trace purge --tenant acme                 counts what would be deleted
    tenant-trace purge --tenant acme --before 90d --yes
    tenant-trace audit                               what was erased, when and how much

A purge deletes, in one transaction, the tenant's rows that started before the cut-off (now,
or ``--before AGE`` ago) from every table that holds tenant data (`TENANT_TABLES`), and
writes its audit row, which is also a tombstone: a writer drops rows of that tenant older
than the cut-off in the transaction that would insert them, so a batch that was in flight
during the purge cannot bring them back. ``secure_delete`` overwrites the deleted rows with
zeros, and a checkpoint moves the overwritten pages from the write-ahead log into the file.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..context import validate_tenant_id
from ..errors import InvalidTenantError
from ..export.retention import TENANT_TABLES
from ..export.store import open_store, store_path, transaction
from .args import duration
from .render import MAX_CELL, literal, visible
from .store import SpanStore

__all__ = ["Erasure", "purge", "register"]

#: The exit status of a refused command (no --tenant, no store, an invalid id).
REFUSED = 2


@dataclass
class Erasure:
    """What a purge deleted: rows per table, their total, and its audit row's id."""

    tenant: str
    before_ns: int
    deleted: dict[str, int]
    total: int
    audit_id: int | None
    checkpointed: bool


def purge(
    path: str | Path | None, tenant: str, *, before_ns: int, now_ns: int | None = None
) -> Erasure:
    """Delete the rows of `tenant` that started before `before_ns` from every tenant table,
    and record it in the audit table (whose row stops writers from inserting such rows
    again), in one transaction.

    Args:
        path: the store file (default: ``TENANT_TRACE_DB`` or the default path).
        now_ns: the time the audit row records (default: now).
    """
    connection = open_store(store_path(path))
    try:
        with transaction(connection):
            deleted = {
                table: connection.execute(
                    f"DELETE FROM {table} WHERE {column} = ? AND {started} < ?",
                    (tenant, before_ns),
                ).rowcount
                for table, column, started in TENANT_TABLES
            }
            total = sum(deleted.values())
            cursor = connection.execute(
                "INSERT INTO audit (at_ns, action, tenant_id, before_ns, deleted, total, actor) "
                "VALUES (?, 'purge', ?, ?, ?, ?, ?)",
                (
                    time.time_ns() if now_ns is None else now_ns,
                    tenant,
                    before_ns,
                    json.dumps(deleted),
                    total,
                    _actor(),
                ),
            )
        # Moves the zeroed pages into the file and empties the write-ahead log; busy (1)
        # while another connection reads, then the log keeps them until the next checkpoint.
        busy = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    finally:
        connection.close()
    return Erasure(tenant, before_ns, deleted, total, cursor.lastrowid, busy == 0)


def _actor() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (a container without one)
        return None


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``purge`` and ``audit`` to the ``tenant-trace`` subcommands."""
    command = commands.add_parser(
        "purge",
        parents=[common],
        help="erase one tenant's data (without --yes, only count it)",
        description="Erase one tenant's spans and every other row stored for it, overwriting "
        "the bytes (SQLite secure_delete), and record it in the audit table. Without --yes "
        "nothing is deleted: the rows are counted.",
        epilog="Exit status: 0 done or counted; 2 refused (no --tenant, an invalid tenant id, "
        "no store).",
    )
    command.add_argument("--tenant", help="the tenant to erase (required)")
    command.add_argument(
        "--before",
        type=duration,
        metavar="AGE",
        help="only what started more than AGE ago (90d, 12h)",
    )
    command.add_argument("--yes", action="store_true", help="delete; without it, only count")
    command.set_defaults(run=_purge)
    command = commands.add_parser(
        "audit", parents=[common], help="what purges erased, when and how much"
    )
    command.set_defaults(run=_audit)


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _purge(args: argparse.Namespace, console: Any) -> int:
    from rich.text import Text

    if args.tenant is None:
        print("tenant-trace purge: --tenant is required (one tenant at a time)", file=sys.stderr)
        return REFUSED
    try:
        tenant = validate_tenant_id(args.tenant)
    except InvalidTenantError as exc:
        print(f"tenant-trace purge: --tenant: {exc}", file=sys.stderr)
        return REFUSED
    now = time.time_ns()
    before_ns = now - int(args.before * 1e9) if args.before else now
    path = store_path(args.db)
    if not path.exists():
        print(f"tenant-trace purge: no trace store at {visible(path)}", file=sys.stderr)
        return REFUSED
    if args.yes:
        erasure = purge(path, tenant, before_ns=before_ns, now_ns=now)
        counts, verb = erasure.deleted, "Deleted"
    else:
        store = SpanStore(path)
        try:
            counts, verb = store.counts(tenant, before_ns=before_ns), "Would delete"
        finally:
            store.close()
    if args.json:
        report = asdict(erasure) if args.yes else {"tenant": tenant, "before_ns": before_ns}
        console.file.write(json.dumps({**report, "dry_run": not args.yes, "counts": counts}) + "\n")
        return 0
    what = ", ".join(
        f"{n} {table if table == 'spans' else table + ' rows'}" for table, n in counts.items()
    )
    line = Text(f"{verb} {what} of tenant ")
    line.append(visible(tenant), style="bold")
    line.append(f" (started before {_when(before_ns)}).")
    if not args.yes:
        line.append(" Run again with --yes to delete.")
    elif not erasure.checkpointed:
        line.append(
            " A reader kept the write-ahead log busy: the erased pages leave "
            f"{visible(path.name)}-wal at its next checkpoint."
        )
    console.print(line)
    return 0


def _audit(args: argparse.Namespace, console: Any) -> int:
    from rich.table import Table

    path = store_path(args.db)
    if not path.exists():
        print(f"tenant-trace audit: no trace store at {visible(path)}", file=sys.stderr)
        return REFUSED
    store = SpanStore(path)
    try:
        rows = store.audit()
    finally:
        store.close()
    if args.json:
        console.file.write(json.dumps(rows, indent=2) + "\n")
        return 0
    if not rows:
        console.print(f"No purges recorded in {visible(path)}.")
        return 0
    table = Table(title=f"Audit of {visible(path)}")
    for column in ("#", "at", "action", "tenant", "before", "deleted", "by"):
        table.add_column(column)
    for row in rows:
        deleted = ", ".join(f"{n} {name}" for name, n in row["deleted"].items())
        table.add_row(
            str(row["id"]),
            _when(row["at_ns"]),
            row["action"],
            literal(row["tenant_id"], MAX_CELL),
            _when(row["before_ns"]),
            deleted,
            literal(row["actor"] or "-", MAX_CELL),
        )
    console.print(table)
    return 0
