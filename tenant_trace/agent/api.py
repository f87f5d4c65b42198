"""The agent instrumentation API: runs, LLM calls, tools, memory, retrieval, sub-agents.

Each step is a context manager (``with`` / ``async with``) and a decorator for sync and
async functions, generators and async generators; for a generator the span covers the
whole iteration. Attribute names follow the OpenTelemetry semantic conventions for
generative AI, version `GENAI_SEMCONV_VERSION`.

    with tenant_trace.start_trace(agent_name="support-agent") as run:
        with tenant_trace.llm_call(model="gpt-4o", provider="openai") as llm:
            llm.record_usage(input_tokens=812, output_tokens=96)
        with tenant_trace.tool_call("get_account_data") as tool:
            tool.fail("data is 48 hours old", error_type="StaleData")
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind

from .. import identity as who
from ..config import settings
from ..context import Tenant, attach, current, detach, get_current_tenant, validate_tenant_id
from ..telemetry import SEMCONV_VERSION, tracer
from . import rollup
from .handles import TENANT_CARRIER_KEY, LLMCall, Memory, Retrieval, Run, ToolCall
from .rollup import RunBudget
from .spec import StepSpec

__all__ = [
    "GENAI_SEMCONV_VERSION",
    "MEMORY_OPERATIONS",
    "identity",
    "llm_call",
    "memory",
    "retrieval",
    "start_trace",
    "sub_agent",
    "tool_call",
]

logger = logging.getLogger("tenant_trace")

#: The last release of the OpenTelemetry semantic conventions that defines the GenAI ones
#: (1.42.0 moved them to the semantic-conventions-genai repository, which has no release yet);
#: tenant-trace's tracers carry its schema URL, `SCHEMA_URL`.
GENAI_SEMCONV_VERSION = SEMCONV_VERSION


def _start_span(
    name: str,
    kind: SpanKind,
    attributes: Mapping[str, Any],
    *,
    context: otel_context.Context | None = None,
    links: list[Link] | None = None,
) -> trace.Span:
    totals = rollup.current_totals()
    if totals is not None:
        totals.before_step()
    attrs = {k: v for k, v in attributes.items() if v is not None}
    return tracer("tenant_trace.agent").start_span(name, context, kind, attrs, links)


def llm_call(
    model: str | None = None,
    *,
    provider: str | None = None,
    operation: str = "chat",
    **attributes: Any,
) -> StepSpec[LLMCall]:
    """An LLM call: span ``{operation} {model}`` (CLIENT) with ``gen_ai.*`` attributes.

    Args:
        model: the requested model (``gen_ai.request.model``).
        provider: ``gen_ai.provider.name`` (``openai``, ``anthropic``, ...); default:
            ``init(genai_provider=...)``, else ``"unknown"``. Without
            ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` it is also recorded
            as ``gen_ai.system``, its name up to the 1.36.0 conventions.
        operation: ``gen_ai.operation.name``: ``chat`` (default), ``text_completion``,
            ``embeddings``, ...
        **attributes: more span attributes (``gen_ai.request.temperature=...``).
    """

    def open_() -> LLMCall:
        name_of_provider = provider or settings.genai_provider
        attrs = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": name_of_provider,
            "gen_ai.system": None if settings.genai_latest else name_of_provider,
            "gen_ai.request.model": model,
            **attributes,
        }
        name = f"{operation} {model}" if model else operation
        span = _start_span(name, LLMCall.span_kind, attrs)
        return LLMCall(span, model, operation, name_of_provider)

    return StepSpec(open_)


def tool_call(
    name: str, *, call_id: str | None = None, tool_type: str | None = None, **attributes: Any
) -> StepSpec[ToolCall]:
    """A tool call: span ``execute_tool {name}`` with ``gen_ai.tool.name`` and call id."""

    def open_() -> ToolCall:
        attrs = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": tool_type,
            **attributes,
        }
        return ToolCall(_start_span(f"execute_tool {name}", ToolCall.span_kind, attrs), name)

    return StepSpec(open_)


#: tenant-trace's memory operations as the GenAI memory operations of the unreleased
#: semantic-conventions-genai registry name them (emitted with gen_ai_latest_experimental).
MEMORY_OPERATIONS = {
    "read": "search_memory",
    "search": "search_memory",
    "write": "upsert_memory",
    "upsert": "upsert_memory",
    "create": "create_memory",
    "update": "update_memory",
    "delete": "delete_memory",
}


def memory(
    operation: str, *, store: str, key: str | None = None, **attributes: Any
) -> StepSpec[Memory]:
    """A memory read or write: span ``memory.{operation} {store}``.

    Args:
        operation: ``read``, ``write`` (create or update), ``create``, ``update``,
            ``delete``, ``search``, or another name (``tenant_trace.memory.operation``).
        store: ``tenant_trace.memory.store``.
        key: ``tenant_trace.memory.key``.

    With ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``, a known operation
    also gets the development GenAI memory names: ``gen_ai.operation.name``
    (`MEMORY_OPERATIONS`), ``gen_ai.memory.store.id`` and ``gen_ai.memory.record.id``.
    """

    def open_() -> Memory:
        attrs = {
            "tenant_trace.memory.operation": operation,
            "tenant_trace.memory.store": store,
            "tenant_trace.memory.key": key,
            **attributes,
        }
        genai_operation = MEMORY_OPERATIONS.get(operation)
        if settings.genai_latest and genai_operation is not None:
            attrs = {
                "gen_ai.operation.name": genai_operation,
                "gen_ai.memory.store.id": store,
                "gen_ai.memory.record.id": key,
                **attrs,
            }
        return Memory(_start_span(f"memory.{operation} {store}", Memory.span_kind, attrs))

    return StepSpec(open_)


def retrieval(
    data_source: str, *, top_k: int | None = None, **attributes: Any
) -> StepSpec[Retrieval]:
    """A retrieval (RAG) query: span ``retrieval {data_source}``."""

    def open_() -> Retrieval:
        attrs = {
            "gen_ai.operation.name": "retrieval",
            "gen_ai.data_source.id": data_source,
            "gen_ai.request.top_k": top_k,
            **attributes,
        }
        return Retrieval(_start_span(f"retrieval {data_source}", Retrieval.span_kind, attrs))

    return StepSpec(open_)


def start_trace(
    agent_name: str,
    *,
    version: str | None = None,
    agent_id: str | None = None,
    conversation_id: str | None = None,
    tenant: str | None = None,
    budget: RunBudget | None = None,
    carrier: Mapping[str, str] | None = None,
) -> StepSpec[Run]:
    """An agent run: span ``invoke_agent {agent_name}``.

    Inside a request it is a child of the request's root span; outside one (a worker, a
    script) it is a root span and `tenant` sets the tenant for the run. `carrier` (from
    `Run.carrier` of the calling agent) continues that agent's trace and tenant.

    Args:
        agent_name: ``gen_ai.agent.name``.
        version: ``gen_ai.agent.version``.
        agent_id: ``gen_ai.agent.id``.
        conversation_id: ``gen_ai.conversation.id``.
        tenant: the run's tenant when no request set one (validated).
        budget: limits that stop a runaway run (`RunBudget`).
        carrier: headers handed over by a parent agent running elsewhere.
    """
    chosen = Tenant(validate_tenant_id(tenant), "manual") if tenant is not None else None

    def open_() -> Run:
        parent_context = None
        links = None
        run_tenant = chosen
        if carrier is not None:
            lowered = {k.lower(): v for k, v in carrier.items()}
            parent_context = propagate.extract(lowered)
            parent = trace.get_current_span(parent_context).get_span_context()
            links = [Link(parent)] if parent.is_valid else None
            if run_tenant is None and TENANT_CARRIER_KEY in lowered:
                run_tenant = Tenant(validate_tenant_id(lowered[TENANT_CARRIER_KEY]), "carrier")
        if run_tenant is not None and rollup.in_request() and run_tenant != current():
            logger.warning("tenant_trace: start_trace(tenant=...) ignored inside a request")
            run_tenant = None  # a request's tenant is never overridden from inside it
        token = attach(run_tenant) if run_tenant is not None else None
        try:
            attrs = {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": agent_name,
                "gen_ai.agent.version": version,
                "gen_ai.agent.id": agent_id,
                "gen_ai.conversation.id": conversation_id,
            }
            span = _start_span(
                f"invoke_agent {agent_name}",
                SpanKind.INTERNAL,
                attrs,
                context=parent_context,
                links=links,
            )
        finally:
            if token is not None:
                detach(token)
        return Run(span, budget, run_tenant, agent_name)

    return StepSpec(open_)


def sub_agent(
    agent_name: str, *, version: str | None = None, budget: RunBudget | None = None
) -> StepSpec[Run]:
    """A sub-agent run inside the current one: span ``invoke_agent {agent_name}``, a child
    of the current span and linked to it. Its `Run.carrier` hands the trace and tenant to
    a sub-agent that runs in another process or service."""

    def open_() -> Run:
        parent = trace.get_current_span().get_span_context()
        attrs = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent_name,
            "gen_ai.agent.version": version,
        }
        links = [Link(parent)] if parent.is_valid else None
        span = _start_span(f"invoke_agent {agent_name}", SpanKind.INTERNAL, attrs, links=links)
        return Run(span, budget, None, agent_name)

    return StepSpec(open_)


def identity(
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    conversation_id: str | None = None,
) -> _IdentityBlock:
    """A with-block (sync or async) in which these ids are current (`tenant_trace.identity`
    module): every span started inside, the span current at its start and the runs around
    it carry them. An id not given keeps the value of an enclosing block.

    Raises:
        ConfigurationError: an id is not a string of 1 to 255 characters without control
            characters (the message names the argument, never the value).
    """
    return _IdentityBlock(who.checked(user_id, session_id, conversation_id))


class _IdentityBlock:
    __slots__ = ("_given", "_tokens")

    def __init__(self, given: who.Identity) -> None:
        self._given = given
        self._tokens: list[Token[who.Identity | None]] = []

    def __enter__(self) -> who.Identity:
        merged, token = who.enter(self._given)
        self._tokens.append(token)
        attributes = who.identity_attributes(get_current_tenant(), merged)
        spans = [trace.get_current_span()]
        totals = rollup.current_totals()
        spans += [t.span for t in totals.chain() if t.span is not None] if totals else []
        for span in spans:
            if span.is_recording():
                span.set_attributes(attributes)
        return merged

    def __exit__(self, *exc: object) -> None:
        who.leave(self._tokens.pop())

    async def __aenter__(self) -> who.Identity:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()
