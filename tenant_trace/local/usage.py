"""``tenant-trace usage``: the usage ledger, tokens and cost per tenant (and per model or day),
counted from every model call whether or not its trace was sampled.

    tenant-trace usage [--tenant T] [--since 30d] [--by model|day] [--json|--csv]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from datetime import datetime, timezone
from typing import Any

from .args import duration
from .render import MAX_CELL, UNPRICED_NOTE, literal, usd, visible
from .store import SpanStore

__all__ = ["register", "show"]

_COLUMNS = (
    "tenant_id",
    "model",
    "day",
    "calls",
    "unpriced_calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "cost_usd",
)


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``usage`` to the ``tenant-trace`` subcommands."""
    command = commands.add_parser(
        "usage",
        parents=[common],
        help="tokens and cost per tenant, sampled or not (the usage ledger)",
        description="Tokens and cost per tenant from the usage ledger: every model call, "
        "whether or not its trace was sampled. A cost is unknown (- in the table, null in "
        "JSON, empty in CSV) when no call had a price; calls without one are counted.",
    )
    command.add_argument("--tenant", help="one tenant only")
    command.add_argument(
        "--since", type=duration, default=30 * 86400.0, help="window (default 30d)"
    )
    command.add_argument("--by", choices=("model", "day"), help="also per model, or per day")
    command.add_argument("--csv", action="store_true", help="print CSV for spreadsheets")


def _day(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d")


def show(store: SpanStore, args: argparse.Namespace, console: Any) -> int:
    rows = store.usage(
        since_ns=time.time_ns() - int(args.since * 1e9), tenant=args.tenant, by=args.by
    )
    for row in rows:
        if "day" in row:
            row["day"] = _day(row["day"])
    if args.json:
        console.file.write(json.dumps(rows, indent=2) + "\n")
        return 0
    if args.csv:
        columns = [c for c in _COLUMNS if not rows or c in rows[0]]
        writer = csv.DictWriter(console.file, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return 0
    if not rows:
        console.print(f"No usage in the last {args.since:g} s in {visible(store.path)}.")
        return 0
    from rich.table import Table

    unpriced = any(row["unpriced_calls"] for row in rows)
    table = Table(
        title=f"Usage, last {args.since / 86400:g} days",
        caption=UNPRICED_NOTE if unpriced else None,
    )
    key = [] if args.by is None else [args.by]
    headers = ("tenant", *key, "calls", "input tokens", "output tokens", "cached", "cost USD")
    for header in headers:
        table.add_column(header, justify="left" if header in ("tenant", *key) else "right")
    for row in rows:
        tenant = "(none)" if row["tenant_id"] is None else row["tenant_id"]
        keys = [literal("-" if row[k] is None else row[k], MAX_CELL) for k in key]
        table.add_row(
            literal(tenant, MAX_CELL),
            *keys,
            f"{row['calls']:,}",
            f"{row['input_tokens']:,}",
            f"{row['output_tokens']:,}",
            f"{row['cache_read_tokens']:,}",
            usd(row["cost_usd"], row["unpriced_calls"]),
        )
    console.print(table)
    return 0
