"""What the pages of the web view show, as plain data (each page's JSON is this), read with
the store's queries and scoped to a `Viewer`: a tenant's viewer gets only its own rows, and
``None`` where another tenant's would be, whether or not it exists."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..alerts import evaluate
from ..store import SpanStore, summarize
from .access import Viewer

__all__ = ["RunFilter", "classify", "latest_failure", "overview", "runs_page", "waterfall"]

PER_PAGE = 50
MAX_PER_PAGE = 500
# The share of the time axis a span of no duration still gets, so that it shows.
_MIN_WIDTH = 0.3
_LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})


def overview(store: SpanStore, viewer: Viewer, *, since_ns: int, now_ns: int) -> dict[str, Any]:
    """One summary row per tenant the viewer may see, and the alerts firing for them."""
    rows = store.tenants(since_ns=since_ns, tenant=viewer.tenant)
    if viewer.tenant is not None and not rows:  # its row, even with no runs
        rows = [summarize(viewer.tenant, [])]
    alerts = [a.as_dict() for a in evaluate(store, now_ns=now_ns) if viewer.may_see(a.tenant)]
    most = max((row["runs"] for row in rows), default=0)
    return {"tenants": rows, "alerts": alerts, "most_runs": most}


@dataclass(frozen=True)
class RunFilter:
    """Which runs of one tenant to list, newest first, and which page of them."""

    since_ns: int
    failed: bool = False
    slow_ms: float | None = None
    min_cost: float | None = None
    route: str | None = None
    agent: str | None = None
    page: int = 1
    per_page: int = PER_PAGE

    def keeps(self, run: dict[str, Any]) -> bool:
        return (
            (not self.failed or run["failed"])
            and (self.slow_ms is None or run["duration_ms"] >= self.slow_ms)
            and (self.min_cost is None or (run["cost_usd"] or 0.0) >= self.min_cost)
            and (self.route is None or run["name"] == self.route)
            and (self.agent is None or run["agent"] == self.agent)
        )


def runs_page(store: SpanStore, tenant: str, filters: RunFilter) -> dict[str, Any]:
    """One page of a tenant's runs that pass `filters`, with the routes and agents seen in
    the window (the choices of the filters)."""
    runs = store.runs(since_ns=filters.since_ns, tenant=tenant)
    agents = store.agents(tenant, since_ns=filters.since_ns)
    for run in runs:
        run["agent"] = agents.get(run["trace_id"])
    kept = [run for run in reversed(runs) if filters.keeps(run)]
    per_page = min(max(1, filters.per_page), MAX_PER_PAGE)
    pages = max(1, math.ceil(len(kept) / per_page))
    page = min(max(1, filters.page), pages)
    return {
        "tenant": tenant,
        "filters": {**asdict(filters), "page": page, "per_page": per_page},
        "total": len(kept),
        "page": page,
        "pages": pages,
        "runs": kept[(page - 1) * per_page : page * per_page],
        "routes": sorted({run["name"] for run in runs}),
        "agents": sorted(set(agents.values())),
    }


def latest_failure(store: SpanStore, tenant: str) -> str | None:
    """The trace id of the tenant's latest failed run, if it has one."""
    failed = [run for run in store.runs(since_ns=0, tenant=tenant) if run["failed"]]
    return failed[-1]["trace_id"] if failed else None


def classify(span: dict[str, Any]) -> str:
    """The kind of step a span is: ``run``, ``agent``, ``llm``, ``tool``, ``memory``,
    ``retrieval``, or ``other`` (HTTP, framework and other libraries' spans)."""
    attributes = span["attributes"]
    operation = attributes.get("gen_ai.operation.name")
    if span["name"] == "agent.run":
        return "run"
    if operation in _LLM_OPERATIONS:
        return "llm"
    if operation == "execute_tool":
        return "tool"
    if operation == "retrieval":
        return "retrieval"
    if operation in ("invoke_agent", "create_agent"):
        return "agent"
    if "tenant_trace.memory.operation" in attributes:
        return "memory"
    return "other"


def _message(span: dict[str, Any]) -> str | None:
    """Why a span failed: its status message, else its exception event's message."""
    if span["status_message"]:
        return str(span["status_message"])
    for event in span["events"]:
        if event["name"] == "exception":
            return str(event["attributes"].get("exception.message", "")) or None
    return None


def waterfall(spans: list[dict[str, Any]], viewer: Viewer) -> dict[str, Any] | None:
    """One trace as rows in tree order, each with its depth and its bar's offset and width
    (percent of the trace's time); ``None`` when the viewer may see none of its spans. A
    tenant's viewer sees only that tenant's spans of the trace."""
    shown = [s for s in spans if viewer.may_see(s["tenant_id"])]
    if not shown:
        return None
    ids = {s["span_id"] for s in shown}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in shown:
        children.setdefault(span["parent_id"] if span["parent_id"] in ids else None, []).append(
            span
        )
    start = min(s["start_ns"] for s in shown)
    total = max(max(s["end_ns"] for s in shown) - start, 1)
    rows: list[dict[str, Any]] = []
    stack = [(span, 0) for span in reversed(children.get(None, []))]
    while stack:
        span, depth = stack.pop()
        offset = (span["start_ns"] - start) / total * 100
        width = max((span["end_ns"] - span["start_ns"]) / total * 100, _MIN_WIDTH)
        rows.append(
            {
                **span,
                "depth": depth,
                "kind": classify(span),
                "failed": span["status"] == "ERROR",
                "message": _message(span),
                "offset": round(offset, 3),
                "width": round(width, 3),
            }
        )
        stack.extend((child, depth + 1) for child in reversed(children.get(span["span_id"], [])))
    # The span to show first: the deepest failed one (the root cause), else the root.
    focus = max(rows, key=lambda r: (r["failed"], r["depth"] if r["failed"] else 0))
    return {
        "trace_id": shown[0]["trace_id"],
        "tenants": sorted({str(s["tenant_id"]) for s in shown if s["tenant_id"] is not None}),
        "duration_ms": total / 1e6,
        "focus": focus["span_id"],
        "spans": rows,
    }
