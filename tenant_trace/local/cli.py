"""``tenant-trace``: per-tenant views of the local trace store.

    tenant-trace tenants [--since 1h]                  one row per tenant
    tenant-trace usage [--tenant T] [--since 30d] [--by model|day] [--csv]   the usage ledger
    tenant-trace traces --tenant T [--failed] [--user U] [--session S] [--conversation C]
    tenant-trace show TRACE_ID                         one run as a span tree
    tenant-trace alerts                                the shipped alert rules; exit 1 if any fires
    tenant-trace rules | dashboard                     print the Prometheus rules or dashboard
    tenant-trace export --tenant T [--since AGE] [--format jsonl|otlp-json]   one tenant's spans
    tenant-trace purge --tenant T [--before AGE] [--yes]   erase one tenant (counts without --yes)
    tenant-trace audit                                 what purges erased, when and how much
    tenant-trace serve [--host H] [--port P]           a read-only web view (the ui extra)
    tenant-trace token --tenant T [--ttl 1h]           a URL of the web view showing T only

Every view but ``rules`` and ``dashboard`` takes ``--db PATH`` (default ``TENANT_TRACE_DB`` or
``.tenant-trace/traces.sqlite3``) and ``--json`` for scripts. Stored strings are shown
literally, control characters made visible, long values cut (``--json`` keeps them whole).

Exit status: 0 done (for ``alerts``: no alert fires), 1 an alert fires, 2 an error (bad
arguments, no store, a file that is not a readable store, no such trace), each with one line
on standard error.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from rich.text import Text

from ..export.store import store_path
from . import purge, render, rules, takeout, usage
from .args import duration
from .render import MAX_CELL, UNPRICED_NOTE, literal, usd, visible
from .store import SpanStore
from .web import command as web

__all__ = ["main"]

# Attributes worth showing in a span tree; others from well-known namespaces are noise there.
_KEY_ATTRIBUTES = (
    "http.route",
    "http.response.status_code",
    "gen_ai.request.model",
    "gen_ai.tool.name",
    "gen_ai.data_source.id",
    "tenant_trace.memory.key",
    "tenant_trace.retrieval.results",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "llm.token_count.prompt",
    "llm.token_count.completion",
    "tenant_trace.usage.input_tokens",
    "tenant_trace.usage.output_tokens",
    "tenant_trace.usage.cost_usd",
    "tenant_trace.budget.exceeded",
    "error.type",
)
# `tenant-trace traces` filters; user.id is the pseudonym recorded (see tenant_trace.identity).
_WHO = {"user": "user.id", "session": "session.id", "conversation": "gen_ai.conversation.id"}
_NOISE = (
    "tenant.",
    "url.",
    "http.",
    "gen_ai.",
    "tenant_trace.",
    "code.",
    "server.",
    "network.",
    "user_agent.",
)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        help="the trace store file (default: $TENANT_TRACE_DB or .tenant-trace/traces.sqlite3)",
    )
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser = argparse.ArgumentParser(
        prog="tenant-trace",
        description="Per-tenant views of the local trace store; one tenant's export and erasure.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    tenants = commands.add_parser("tenants", parents=[common], help="one row per tenant")
    tenants.add_argument("--since", type=duration, default=3600.0, help="window (default 1h)")
    traces = commands.add_parser("traces", parents=[common], help="recent runs of one tenant")
    traces.add_argument("--tenant", required=True)
    traces.add_argument("--failed", action="store_true", help="failed runs only")
    traces.add_argument("--since", type=duration, default=3600.0, help="window (default 1h)")
    traces.add_argument("--limit", type=int, default=20)
    for flag, key in _WHO.items():
        traces.add_argument(f"--{flag}", help=f"only traces with this {key} (as recorded)")
    show = commands.add_parser("show", parents=[common], help="one run as a span tree")
    show.add_argument("trace_id")
    commands.add_parser(
        "alerts", parents=[common], help="evaluate the alert rules; exit 1 if one fires"
    )
    commands.add_parser("rules", help="print the Prometheus alert rules")
    commands.add_parser("dashboard", help="print the Grafana dashboard JSON")
    usage.register(commands, common)
    takeout.register(commands, common)
    purge.register(commands, common)
    web.register(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 done, 1 an alert fires, 2 an error)."""
    args = _parser().parse_args(argv)
    if args.command in ("rules", "dashboard"):
        sys.stdout.write(rules.alert_rules() if args.command == "rules" else rules.dashboard())
        return 0
    if "run" in args:  # export, purge, audit, serve, token: they open the store themselves
        return int(args.run(args, render.console()))
    path = store_path(args.db)
    try:
        store = SpanStore(path)
    except FileNotFoundError:
        folder = path.parent
        if folder.exists() and not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
            why = f"{visible(folder)} is not a writable folder, so no app could create it"
        else:
            why = (
                "run your app with tenant_trace.init() and no OTLP endpoint (spans then go to"
                " this file), or pass --db / set TENANT_TRACE_DB"
            )
        return _fail(f"no trace store at {visible(path)}: {why}")
    except sqlite3.Error as exc:
        return _fail(f"cannot read the trace store at {visible(path)}: {visible(exc)}")
    if not os.access(path, os.W_OK):
        sys.stderr.write(
            f"tenant-trace: note: {visible(path)} is not writable: an app that uses it drops"
            " its new spans\n"
        )
    try:
        return _COMMANDS[args.command](store, args, render.console())
    except sqlite3.Error as exc:
        return _fail(f"cannot read the trace store at {visible(path)}: {visible(exc)}")
    except Exception as exc:  # a bug must not look like "an alert fires" (exit 1)
        return _fail(f"{type(exc).__name__}: {visible(exc)}")
    finally:
        store.close()


def _fail(message: str) -> int:
    """One line on standard error, and the error status."""
    sys.stderr.write(f"tenant-trace: {message}\n")
    return 2


def _emit(console: Any, data: Any) -> None:
    console.file.write(json.dumps(data, indent=2, default=str) + "\n")


def _when(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%m-%d %H:%M:%S")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _since_ns(seconds: float) -> int:
    return time.time_ns() - int(seconds * 1e9)


def _tenants(store: SpanStore, args: argparse.Namespace, console: Any) -> int:
    from rich import box
    from rich.table import Table

    rows = store.tenants(since_ns=_since_ns(args.since))
    if args.json:
        _emit(console, rows)
        return 0
    if not rows:
        console.print(f"No runs in the last {args.since:g} s in {visible(store.path)}.")
        return 0
    unpriced = any(row["unpriced_calls"] for row in rows)
    table = Table(
        title=f"Tenants, last {args.since / 3600:g} h",
        caption=UNPRICED_NOTE if unpriced else None,
        box=box.SIMPLE_HEAVY,  # no vertical rules: 11 columns fit 132 with a long tenant id
    )
    # p50 is in --json: the table keeps what fits 132 columns beside a long tenant id.
    columns = ("runs", "failed", "p95 ms", "p99 ms", "in tok", "out tok", "USD")
    table.add_column("tenant")
    for column in (*columns, "tool err", "last seen UTC"):
        table.add_column(column, justify="right")
    for row in rows:
        failing = row["failure_rate"] > rules.FAILURE_RATE
        table.add_row(
            literal("(none)" if row["tenant"] is None else row["tenant"], MAX_CELL),
            str(row["runs"]),
            Text(f"{row['failure_rate']:.1%}", style="red" if failing else "green"),
            _ms(row["p95_ms"]),
            _ms(row["p99_ms"]),
            f"{row['input_tokens']:,}",
            f"{row['output_tokens']:,}",
            usd(row["cost_usd"], row["unpriced_calls"]),
            f"{row['tool_error_rate']:.1%}",
            _when(row["last_seen_ns"]),
        )
    console.print(table)
    return 0


def _traces(store: SpanStore, args: argparse.Namespace, console: Any) -> int:
    from rich.table import Table

    who = {key: getattr(args, flag) for flag, key in _WHO.items() if getattr(args, flag)}
    runs = store.runs(since_ns=_since_ns(args.since), tenant=args.tenant, who=who)
    if args.failed:
        runs = [r for r in runs if r["failed"]]
    runs = runs[::-1][: args.limit]
    if args.json:
        _emit(console, runs)
        return 0
    if not runs:
        kind = "failed runs" if args.failed else "runs"
        console.print(f"No {kind} of tenant {visible(args.tenant)!r} in the last {args.since:g} s.")
        return 0
    table = Table(title=f"{'Failed runs' if args.failed else 'Runs'} of {visible(args.tenant)}")
    for column in ("started UTC", "trace id", "run", "ms", "status", "tokens"):
        table.add_column(column)
    for run in runs:
        status = (
            literal(f"ERROR {run['error_type'] or ''}", MAX_CELL, "red")
            if run["failed"]
            else Text("ok", style="green")
        )
        table.add_row(
            _when(run["start_ns"]),
            literal(run["trace_id"], MAX_CELL),
            literal(run["name"], MAX_CELL),
            _ms(run["duration_ms"]),
            status,
            f"{run['tokens']:,}",
        )
    console.print(table)
    return 0


def _label(span: dict[str, Any]) -> Any:
    attributes = span["attributes"]
    shown = {k: attributes[k] for k in _KEY_ATTRIBUTES if k in attributes}
    shown.update({k: v for k, v in attributes.items() if not k.startswith(_NOISE)})
    failed = span["status"] == "ERROR"
    label = Text.assemble(
        ("✗ " if failed else "", "red"),
        literal(span["name"], style="bold red" if failed else "bold"),
        f"  {_ms(span['duration_ms'])} ms",
    )
    if failed and span["status_message"]:
        label.append_text(Text("  ")).append_text(literal(span["status_message"], style="red"))
    for key, value in shown.items():
        label.append_text(Text("  ")).append_text(literal(key, style="dim"))
        label.append_text(Text("=")).append_text(literal(value))
    return label


def _show(store: SpanStore, args: argparse.Namespace, console: Any) -> int:
    from rich.tree import Tree

    spans = store.trace(args.trace_id)
    if args.json:
        _emit(console, spans)
        return 0 if spans else _fail(f"no trace {visible(args.trace_id)} in {visible(store.path)}")
    if not spans:
        return _fail(f"no trace {visible(args.trace_id)} in {visible(store.path)}")
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span["parent_id"] if span["parent_id"] in ids else None
        children.setdefault(parent, []).append(span)
    tenants = sorted({str(s["tenant_id"]) for s in spans if s["tenant_id"]})
    tree = Tree(literal(f"trace {args.trace_id}  tenant {', '.join(tenants) or '(none)'}"))

    def grow(node: Any, parent: str | None) -> None:
        for span in children.get(parent, []):
            grow(node.add(_label(span)), span["span_id"])

    grow(tree, None)
    console.print(tree)
    return 0


def _alerts(store: SpanStore, args: argparse.Namespace, console: Any) -> int:
    from .alerts import evaluate

    firing = evaluate(store)
    if args.json:
        _emit(console, [a.as_dict() for a in firing])
    elif not firing:
        console.print("No alert fires.", style="green")
    else:
        for alert in firing:
            console.print(
                Text("FIRING", style="red"),
                literal(f"{alert.rule}  tenant={alert.tenant}  {alert.summary}"),
            )
    return 1 if firing else 0


_COMMANDS = {
    "tenants": _tenants,
    "traces": _traces,
    "show": _show,
    "alerts": _alerts,
    "usage": usage.show,
}


if __name__ == "__main__":
    raise SystemExit(main())
