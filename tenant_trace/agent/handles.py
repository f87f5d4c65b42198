"""Handles of open agent steps: the span of one LLM call, tool call, memory access,
retrieval or agent run, with the methods that record what happened in it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import metrics
from ..config import settings
from ..context import Tenant, attach, current, detach
from ..telemetry import record_error
from ..usage import Usage, prices
from ..usage.read import response_usage
from ..usage.track import mark_llm_call
from . import rollup
from .rollup import RunBudget, Totals

__all__ = [
    "LLMCall",
    "Memory",
    "Retrieval",
    "Run",
    "Step",
    "ToolCall",
    "current_step",
    "get_current_step",
]

TENANT_CARRIER_KEY = "x-tenant-id"

_step: ContextVar[Step | None] = ContextVar("tenant_trace.step", default=None)


def get_current_step() -> Step | None:
    """The innermost open step (LLM call, tool call, ...), e.g. inside a decorated function."""
    return _step.get()


current_step = get_current_step  # the name before 0.2


class Step:
    """One open step: its span, and the context that makes it current."""

    __slots__ = ("_tokens", "span", "totals")
    span_kind = SpanKind.INTERNAL

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.totals = rollup.current_totals()
        self._tokens: tuple[object, object] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self.span, 'name', '?')!r})"

    def set_attribute(self, key: str, value: Any) -> None:
        """Add an attribute to the step's span."""
        self.span.set_attribute(key, value)

    def _capture(self, key: str, value: object) -> None:
        text = settings.content(value)
        if text is not None:
            self.span.set_attribute(key, text)

    def _activate(self) -> None:
        context = trace.set_span_in_context(self.span)
        self._tokens = (otel_context.attach(context), _step.set(self))

    def _deactivate(self) -> None:
        tokens, self._tokens = self._tokens, None
        if tokens is not None:
            _step.reset(tokens[1])  # type: ignore[arg-type]
            otel_context.detach(tokens[0])  # type: ignore[arg-type]

    @contextmanager
    def _active(self) -> Iterator[None]:
        self._activate()
        try:
            yield
        finally:
            self._deactivate()

    def _on_error(self, exc: BaseException) -> None:
        record_error(self.span, exc)

    def _close(self, exc: BaseException | None) -> None:
        if exc is not None and not isinstance(exc, GeneratorExit):
            self._on_error(exc)
        self.span.end()

    def _first_chunk(self) -> None:
        """Called when a decorated generator yields its first item."""


class LLMCall(Step):
    """An LLM call (`llm_call`): usage, response model, finish reasons, captured text."""

    __slots__ = ("_call", "_model", "_started", "_usage_recorded")
    span_kind = SpanKind.CLIENT

    def __init__(
        self,
        span: trace.Span,
        model: str | None,
        operation: str = "chat",
        provider: str | None = None,
    ) -> None:
        super().__init__(span)
        self._model = model
        # What the metrics of this call are recorded with (GenAI metric conventions).
        self._call = {"gen_ai.operation.name": operation}
        if provider:
            self._call["gen_ai.provider.name"] = provider
        if model:
            self._call["gen_ai.request.model"] = model
        self._started = time.monotonic()
        self._usage_recorded = False
        mark_llm_call(span)
        if self.totals is not None:
            self.totals.count_llm_call()

    def record_usage(
        self,
        input_tokens: int,
        output_tokens: int,
        *,
        cache_read_tokens: int | None = None,
        cache_creation_tokens: int | None = None,
        reasoning_tokens: int | None = None,
    ) -> None:
        """Record token usage (cached tokens are part of `input_tokens`, reasoning tokens
        of `output_tokens`). It is counted as the span ends, once: not at all when an
        instrumented client call under this step reported the same call."""
        self._usage_recorded = True
        attributes = {
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
            "gen_ai.usage.cache_read.input_tokens": cache_read_tokens,
            "gen_ai.usage.cache_creation.input_tokens": cache_creation_tokens,
            "gen_ai.usage.reasoning.output_tokens": reasoning_tokens,
        }
        self.span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        usage = Usage(
            input_tokens, output_tokens, cache_read_tokens or 0, cache_creation_tokens or 0
        )
        cost = prices.cost(usage, self._model)
        if cost is not None:
            self.span.set_attribute("tenant_trace.cost_usd", round(cost, 6))

    def set_response(
        self,
        *,
        model: str | None = None,
        finish_reasons: list[str] | None = None,
        response_id: str | None = None,
    ) -> None:
        """Record what the provider answered with."""
        if model:
            self.span.set_attribute("gen_ai.response.model", model)
        if finish_reasons:
            self.span.set_attribute("gen_ai.response.finish_reasons", list(finish_reasons))
        if response_id:
            self.span.set_attribute("gen_ai.response.id", response_id)

    def record_prompt(self, prompt: object) -> None:
        """The prompt, when content capture is on (truncated and redacted)."""
        self._capture("gen_ai.input.messages", prompt)

    def record_completion(self, completion: object) -> None:
        """The completion, when content capture is on (truncated and redacted)."""
        self._capture("gen_ai.output.messages", completion)

    def record_response(self, response: object) -> None:
        """Read usage (cached and reasoning tokens too), model and finish reasons from an
        OpenAI- or Anthropic-style response."""
        usage = None if self._usage_recorded else response_usage(getattr(response, "usage", None))
        if usage is not None:
            self.record_usage(
                usage.input_tokens,
                usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens or None,
                cache_creation_tokens=usage.cache_creation_tokens or None,
                reasoning_tokens=usage.reasoning_tokens or None,
            )
        choices = getattr(response, "choices", None) or ()
        reasons = [c.finish_reason for c in choices if getattr(c, "finish_reason", None)]
        stop = getattr(response, "stop_reason", None)
        model = getattr(response, "model", None)
        self.set_response(
            model=model if isinstance(model, str) else None,
            finish_reasons=reasons or ([stop] if isinstance(stop, str) else None),
            response_id=getattr(response, "id", None)
            if isinstance(getattr(response, "id", None), str)
            else None,
        )

    def _first_chunk(self) -> None:
        self.span.set_attribute(
            "gen_ai.response.time_to_first_chunk", time.monotonic() - self._started
        )

    def _close(self, exc: BaseException | None) -> None:
        metrics.record_llm_call(self._call, time.monotonic() - self._started, exc)
        super()._close(exc)


class ToolCall(Step):
    """A tool call (`tool_call`): an exception or `fail` marks it as an error."""

    __slots__ = ("_failed", "_name")

    def __init__(self, span: trace.Span, name: str | None = None) -> None:
        super().__init__(span)
        self._failed = False
        # The tool name for metrics; a span that is not recording has no name to read it from.
        self._name = name or getattr(span, "name", "").removeprefix("execute_tool ") or "_OTHER"

    def fail(self, reason: str | None = None, *, error_type: str = "ToolError") -> None:
        """Mark the tool call failed (a stale, empty or refused result) with a reason."""
        self._failed = True
        self.span.set_attribute("error.type", error_type)
        self.span.set_status(Status(StatusCode.ERROR, reason))

    def record_arguments(self, arguments: object) -> None:
        """The tool's arguments, when content capture is on."""
        self._capture("gen_ai.tool.call.arguments", arguments)

    def record_result(self, result: object) -> None:
        """The tool's result, when content capture is on."""
        self._capture("gen_ai.tool.call.result", result)

    def _close(self, exc: BaseException | None) -> None:
        failed = self._failed or (exc is not None and not isinstance(exc, GeneratorExit))
        if self.totals is not None:
            self.totals.add_tool(failed=failed)
        metrics.record_tool_call(self._name, failed)
        super()._close(exc)


class Memory(Step):
    """A memory read or write (`memory`)."""

    __slots__ = ()
    span_kind = SpanKind.CLIENT

    def record_value(self, value: object) -> None:
        """The value read or written, when content capture is on."""
        self._capture("tenant_trace.memory.value", value)


class Retrieval(Step):
    """A retrieval (RAG) query (`retrieval`)."""

    __slots__ = ()
    span_kind = SpanKind.CLIENT

    def set_results(self, count: int) -> None:
        """How many documents the retrieval returned."""
        self.span.set_attribute("tenant_trace.retrieval.results", count)

    def record_query(self, query: object) -> None:
        """The query text, when content capture is on."""
        self._capture("gen_ai.retrieval.query.text", query)


class Run(Step):
    """An agent run (`start_trace`) or sub-agent (`sub_agent`): its totals roll up here."""

    __slots__ = ("_run_tokens", "_tenant", "own")

    def __init__(
        self,
        span: trace.Span,
        budget: RunBudget | None,
        tenant: Tenant | None,
        agent: str | None = None,
    ) -> None:
        super().__init__(span)
        self.own = Totals(span, budget, parent=self.totals, agent=agent)
        self._tenant = tenant
        self._run_tokens: tuple[object, object] | None = None

    def fail(self, reason: str | None = None, *, error_type: str = "AgentError") -> None:
        """Mark the run failed (it also fails the runs that enclose it)."""
        self.own.fail(error_type)
        self.span.set_status(Status(StatusCode.ERROR, reason))

    def record_input(self, text: object) -> None:
        """The user's input, when content capture is on."""
        self._capture("gen_ai.input.messages", text)

    def record_output(self, text: object) -> None:
        """The agent's answer, when content capture is on."""
        self._capture("gen_ai.output.messages", text)

    def carrier(self) -> dict[str, str]:
        """Headers that hand this run's trace and tenant to an agent that runs elsewhere:
        send them with the call; there, ``start_trace(..., carrier=headers)`` continues."""
        headers: dict[str, str] = {}
        propagate.inject(headers, context=trace.set_span_in_context(self.span))
        tenant = current()
        if tenant is not None:
            headers[TENANT_CARRIER_KEY] = tenant.id
        return headers

    def _activate(self) -> None:
        tenant_token = None if self._tenant is None else attach(self._tenant)
        super()._activate()
        self._run_tokens = (tenant_token, rollup.enter(self.own))

    def _deactivate(self) -> None:
        tokens, self._run_tokens = self._run_tokens, None
        if tokens is not None:
            rollup.leave(tokens[1])
        super()._deactivate()
        if tokens is not None and tokens[0] is not None:
            detach(tokens[0])  # type: ignore[arg-type]

    def _on_error(self, exc: BaseException) -> None:
        super()._on_error(exc)
        self.own.fail(type(exc).__qualname__)

    def _close(self, exc: BaseException | None) -> None:
        if exc is not None and not isinstance(exc, GeneratorExit):
            self._on_error(exc)
        self.own.close()
        self.span.end()
        if self.totals is None:  # a run outside any request or run is measured on its own
            metrics.record_run(self._tenant or current(), self.own.started, self.own.failure)
