"""`UsageSpanProcessor`: when a span ends, count the model call it reports, once.

Every span of the provider is followed from its start to its end, whoever made it (openai-v2,
pydantic-ai, OpenInference's LangChain tracer, tenant-trace's `llm_call`). A span that reports
usage (`read_usage`) is counted unless a span under it was: children end before their parent,
so an `llm_call` around an instrumented client call, or a framework's agent span that repeats
the sum of its calls (pydantic-ai's ``invoke_agent``), counts nothing more. What is counted
goes to the enclosing run's totals (found through the span's ancestors, whatever thread or
context ends it), the per-tenant metrics and, when there is one, the ledger.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Span as APISpan

from .. import metrics
from ..telemetry import plain
from . import prices
from .ledger import Ledger
from .read import Usage, may_report_usage, model_of, provider_of, read_usage

__all__ = ["RunSink", "UsageSpanProcessor", "attach_run", "mark_llm_call"]

logger = logging.getLogger("tenant_trace")


class RunSink(Protocol):
    """What a run's totals take: the usage of one call, its cost (``None``: unpriced), and
    whether it is a call the run has not counted yet (not inside one of its `llm_call`)."""

    def add_usage(self, usage: Usage, cost: float | None, *, new_call: bool) -> None: ...


class _Open:
    """A span between its start and its end."""

    __slots__ = ("covered", "in_llm_call", "llm_call", "parent", "run")

    def __init__(self, parent: int | None, run: RunSink | None, in_llm_call: bool) -> None:
        self.parent = parent
        self.run = run  # the innermost run the span is part of
        self.in_llm_call = in_llm_call  # under an `llm_call`, which counted the call itself
        self.llm_call = False
        self.covered = False  # a span under it counted usage


# Span id -> its entry. A dict's get, set and pop are atomic, and an entry's flags only ever
# go from False to True, so threads that start and end spans need no lock here. Spans that
# are never ended would stay: past MAX_OPEN, new spans are not followed (their usage is still
# counted, without a run or the check for a counted child).
_open: dict[int, _Open] = {}
MAX_OPEN = 100_000


def _entry(span: APISpan) -> _Open | None:
    return _open.get(span.get_span_context().span_id)


def attach_run(span: APISpan, run: RunSink) -> None:
    """Make `run` the totals that the usage under `span` (a run's span) counts toward."""
    entry = _entry(span)
    if entry is not None:
        entry.run = run


def mark_llm_call(span: APISpan) -> None:
    """`span` is an `llm_call`: it counted its call when it started."""
    entry = _entry(span)
    if entry is not None:
        entry.llm_call = True


class UsageSpanProcessor(SpanProcessor):
    """Counts the usage of model calls as their spans end (see the module). Sampled-out
    spans count too when the sampler records them (``RECORD_ONLY``, as `TenantSampler`
    does). It never raises.

    Args:
        ledger: also count each call per tenant, model and hour there (`Ledger`).
    """

    def __init__(self, ledger: Ledger | None = None) -> None:
        self.ledger = ledger

    def __repr__(self) -> str:
        return f"UsageSpanProcessor(ledger={self.ledger!r})"

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if len(_open) >= MAX_OPEN:
            return
        parent_id = span.parent.span_id if span.parent is not None else None
        parent = _open.get(parent_id) if parent_id is not None else None
        if parent is None:
            entry = _Open(parent_id, None, False)
        else:
            entry = _Open(parent_id, parent.run, parent.llm_call or parent.in_llm_call)
        _open[span.context.span_id] = entry

    def on_end(self, span: ReadableSpan) -> None:
        try:
            entry = _open.pop(span.context.span_id, None)
            covered = entry is not None and entry.covered
            if not covered and may_report_usage(span.attributes):
                attributes = plain(span.attributes)  # one copy, for the usage and the call
                usage = read_usage(attributes)
                if usage is not None:
                    self._count(span, entry, usage, attributes)
                    covered = True
            if covered and entry is not None and entry.parent is not None:
                parent = _open.get(entry.parent)
                if parent is not None:
                    parent.covered = True
        except Exception:
            logger.debug("tenant_trace: could not count the usage of a span", exc_info=True)

    def _count(
        self, span: ReadableSpan, entry: _Open | None, usage: Usage, attributes: dict[str, Any]
    ) -> None:
        model = model_of(attributes)
        cost = prices.cost(usage, model, _text(attributes.get("gen_ai.response.model")))
        if entry is not None and entry.run is not None:
            entry.run.add_usage(usage, cost, new_call=not (entry.llm_call or entry.in_llm_call))
        call = {"gen_ai.request.model": model or "_OTHER"}
        provider = provider_of(attributes)
        if provider:
            call["gen_ai.provider.name"] = provider
        tenant = _text(attributes.get("tenant.id"))
        metrics.record_usage(tenant, call, usage.input_tokens, usage.output_tokens, cost)
        if self.ledger is not None:
            self.ledger.add(tenant, model, span.end_time or 0, usage, cost)

    def shutdown(self) -> None:
        if self.ledger is not None:
            self.ledger.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self.ledger is not None:
            self.ledger.flush()
        return True


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
