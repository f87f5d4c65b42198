"""``tenant-trace export``: one tenant's data out of the local store (its spans, then its
usage ledger), for a subject-access request or a move to another backend.

    tenant-trace export --tenant acme > acme.jsonl                  one record a line
    tenant-trace export --tenant acme --format otlp-json -o acme.otlp.jsonl

``otlp-json`` writes OTLP/JSON, one ``ExportTraceServiceRequest`` (of up to 1000 spans) a
line, as the OpenTelemetry Collector's file exporter writes it and its ``otlpjsonfile``
receiver reads it; ids are hex, as the OTLP/JSON encoding requires; the ledger follows as
one ``ExportMetricsServiceRequest`` line: a delta sum ``tenant_trace.ledger.{column}`` per
ledger column, one point per model and hour. ``jsonl`` writes the spans as
``tenant-trace show --json`` prints them, then each ledger row (per model and hour) as
``{"ledger": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from itertools import chain, groupby, islice
from typing import Any, TextIO

from ..context import validate_tenant_id
from ..errors import InvalidTenantError
from ..export.store import store_path
from ..usage.ledger import HOUR_NS
from .args import duration
from .purge import REFUSED
from .render import visible
from .store import SpanStore

__all__ = ["otlp_json", "otlp_json_ledger", "register"]

BATCH = 1000
# OTLP's SpanKind and StatusCode numbers, by the names the store keeps.
_KINDS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}
_DELTA = 1  # OTLP's AggregationTemporality
# The ledger's columns, each an OTLP metric ``tenant_trace.ledger.{column}``, by unit.
_LEDGER_UNITS = {
    "calls": "{call}",
    "unpriced_calls": "{call}",
    "input_tokens": "{token}",
    "output_tokens": "{token}",
    "cache_read_tokens": "{token}",
    "cache_creation_tokens": "{token}",
    "reasoning_tokens": "{token}",
    "cost_usd": "{USD}",
}


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``export`` to the ``tenant-trace`` subcommands."""
    command = commands.add_parser(
        "export",
        parents=[common],
        help="write one tenant's spans and usage ledger (JSON lines or OTLP/JSON)",
        description="Write one tenant's spans, oldest first, then its usage ledger per model "
        "and hour. --json prints the summary line as JSON.",
        epilog="Exit status: 0 written; 2 refused (no --tenant, an invalid tenant id, no store).",
    )
    command.add_argument("--tenant", required=True, help="the tenant whose data to write")
    command.add_argument(
        "--since",
        type=duration,
        metavar="AGE",
        help="only spans of the last AGE (90d, 12h), and the ledger's hours that end in it",
    )
    command.add_argument(
        "--format",
        choices=("jsonl", "otlp-json"),
        default="jsonl",
        help="jsonl: one span or ledger row a line (default); otlp-json: OTLP/JSON requests, "
        "one a line",
    )
    command.add_argument(
        "-o", "--output", help="the file to write, readable by you only (default: stdout)"
    )
    command.set_defaults(run=_export)


def otlp_json(spans: Iterable[dict[str, Any]]) -> Iterator[str]:
    """OTLP/JSON ``ExportTraceServiceRequest`` lines of up to `BATCH` spans, from spans as
    `SpanStore.spans` reads them."""
    spans = iter(spans)
    while batch := list(islice(spans, BATCH)):
        resources = [
            {
                "resource": _resource(service),
                "scopeSpans": [{"spans": [_span(s) for s in group]}],
            }
            for service, group in groupby(batch, key=lambda s: s["service"])
        ]
        yield json.dumps({"resourceSpans": resources}, separators=(",", ":"))


def otlp_json_ledger(rows: list[dict[str, Any]]) -> Iterator[str]:
    """One OTLP/JSON ``ExportMetricsServiceRequest`` line of ledger rows as
    `SpanStore.ledger` reads them (none when there are no rows)."""
    if not rows:
        return
    metrics = []
    for column, unit in _LEDGER_UNITS.items():
        points = [
            {
                "attributes": _attributes(
                    {"tenant.id": row["tenant_id"], "gen_ai.request.model": row["model"]}
                    if row["model"] is not None
                    else {"tenant.id": row["tenant_id"]}
                ),
                "startTimeUnixNano": str(row["hour_ns"]),
                "timeUnixNano": str(row["hour_ns"] + HOUR_NS),
                **_number(row[column]),
            }
            for row in rows
            if row[column] is not None  # an unknown cost is no point, never 0
        ]
        sum_ = {"aggregationTemporality": _DELTA, "isMonotonic": True, "dataPoints": points}
        metrics.append({"name": f"tenant_trace.ledger.{column}", "unit": unit, "sum": sum_})
    scope = {"scope": {"name": "tenant_trace.ledger"}, "metrics": metrics}
    request = {"resourceMetrics": [{"resource": {}, "scopeMetrics": [scope]}]}
    yield json.dumps(request, separators=(",", ":"))


def _number(value: int | float) -> dict[str, Any]:
    """A number data point's value: an integer as a string, as the protobuf JSON mapping has it."""
    return {"asInt": str(value)} if isinstance(value, int) else {"asDouble": value}


def _resource(service: str | None) -> dict[str, Any]:
    return {"attributes": _attributes({"service.name": service} if service else {})}


def _span(span: dict[str, Any]) -> dict[str, Any]:
    otlp: dict[str, Any] = {
        "traceId": span["trace_id"],
        "spanId": span["span_id"],
        "name": span["name"],
        "kind": _KINDS.get(span["kind"], 0),
        "startTimeUnixNano": str(span["start_ns"]),
        "endTimeUnixNano": str(span["end_ns"]),
        "attributes": _attributes(span["attributes"]),
        "status": {"code": _STATUS.get(span["status"], 0)},
    }
    if span["parent_id"]:
        otlp["parentSpanId"] = span["parent_id"]
    if span["status_message"]:
        otlp["status"]["message"] = span["status_message"]
    if span["events"]:
        otlp["events"] = [
            {
                "timeUnixNano": str(event["timestamp"]),
                "name": event["name"],
                "attributes": _attributes(event["attributes"]),
            }
            for event in span["events"]
        ]
    return otlp


def _attributes(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _value(value)} for key, value in attributes.items()]


def _value(value: Any) -> dict[str, Any]:
    """An OTLP ``AnyValue``: 64-bit integers as strings, doubles that JSON cannot hold as
    ``"NaN"``/``"Infinity"``, as the protobuf JSON mapping has them."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if math.isfinite(value):
            return {"doubleValue": value}
        return {"doubleValue": "NaN" if math.isnan(value) else ("-" * (value < 0)) + "Infinity"}
    if isinstance(value, list):
        return {"arrayValue": {"values": [_value(item) for item in value]}}
    if value is None:
        return {}
    return {"stringValue": str(value)}


def _export(args: argparse.Namespace, console: Any) -> int:
    try:
        tenant = validate_tenant_id(args.tenant)
    except InvalidTenantError as exc:
        print(f"tenant-trace export: --tenant: {exc}", file=sys.stderr)
        return REFUSED
    path = store_path(args.db)
    if not path.exists():
        print(f"tenant-trace export: no trace store at {visible(path)}", file=sys.stderr)
        return REFUSED
    since_ns = time.time_ns() - int(args.since * 1e9) if args.since else 0
    store = SpanStore(path)
    try:
        written = 0

        def counted() -> Iterator[dict[str, Any]]:
            nonlocal written
            for span in store.spans(tenant, since_ns=since_ns):
                written += 1
                yield span

        ledger = store.ledger(tenant, since_ns=since_ns)
        lines: Iterable[str]
        if args.format == "otlp-json":
            lines = chain(otlp_json(counted()), otlp_json_ledger(ledger))
        else:
            records = chain(counted(), ({"ledger": row} for row in ledger))
            lines = (json.dumps(record, default=str) for record in records)
        with _output(args.output) as out:
            for line in lines:
                out.write(line + "\n")
    finally:
        store.close()
    summary = {
        "tenant": tenant,
        "spans": written,
        "ledger_rows": len(ledger),
        "format": args.format,
        "output": args.output,
    }
    if args.json:
        print(json.dumps(summary), file=sys.stderr)
    else:
        print(
            f"Exported {written} spans and {len(ledger)} usage ledger rows of tenant "
            f"{visible(tenant)!r} ({args.format}) to {visible(args.output or 'stdout')}.",
            file=sys.stderr,
        )
    return 0


def _output(name: str | None) -> Any:
    if name is None:
        return nullcontext(sys.stdout)
    # A subject's data: readable by the one who asked for it only.
    descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    file: TextIO = os.fdopen(descriptor, "w", encoding="utf-8")
    return file
