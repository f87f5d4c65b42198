"""Switch on the OpenTelemetry instrumentations that are installed for LLM and HTTP clients
and agent frameworks: LangChain/LangGraph (OpenInference), and pydantic-ai, which instruments
itself (``Agent.instrument_all()``, wrapped here as an instrumentor like the others)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from ..config import settings

__all__ = ["KNOWN", "PydanticAIInstrumentor", "auto_instrument"]

logger = logging.getLogger("tenant_trace")


class PydanticAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """pydantic-ai's own instrumentation of every agent that does not set its own
    (``Agent.instrument_all()``, on the global providers), with an instrumentor's interface;
    message content is recorded only with ``init(capture_content=True)``. `uninstrument` puts
    the previous default back."""

    _previous: Any = False

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("pydantic-ai-slim >= 1.0",)

    def _instrument(self, **kwargs: Any) -> None:
        from pydantic_ai import Agent
        from pydantic_ai.models.instrumented import InstrumentationSettings

        self._previous = Agent._instrument_default  # no public getter
        # Prompts and answers on its spans only when tenant-trace captures content too.
        Agent.instrument_all(InstrumentationSettings(include_content=settings.capture_content))

    def _uninstrument(self, **kwargs: Any) -> None:
        from pydantic_ai import Agent

        Agent.instrument_all(self._previous)


# (name, module, instrumentor class, package): each is used only when its package is installed.
KNOWN = (
    (
        "openai",
        "opentelemetry.instrumentation.openai_v2",
        "OpenAIInstrumentor",
        "opentelemetry-instrumentation-openai-v2",
    ),
    (
        "anthropic",
        "opentelemetry.instrumentation.anthropic",
        "AnthropicInstrumentor",
        "opentelemetry-instrumentation-anthropic",
    ),
    (  # LangChain and LangGraph, by OpenInference (Phoenix's conventions)
        "langchain",
        "openinference.instrumentation.langchain",
        "LangChainInstrumentor",
        "openinference-instrumentation-langchain",
    ),
    (  # pydantic-ai's own instrumentation, when pydantic-ai is installed
        "pydantic-ai",
        __name__,
        "PydanticAIInstrumentor",
        "pydantic-ai-slim",
    ),
    (
        "httpx",
        "opentelemetry.instrumentation.httpx",
        "HTTPXClientInstrumentor",
        "opentelemetry-instrumentation-httpx",
    ),
    (
        "requests",
        "opentelemetry.instrumentation.requests",
        "RequestsInstrumentor",
        "opentelemetry-instrumentation-requests",
    ),
)


def auto_instrument() -> list[str]:
    """Instrument every known client library whose instrumentation is installed; returns the
    names of those now instrumented (their spans then carry the tenant like any other).

    An instrumentation that is installed but cannot work (it fails to import, or the
    library it instruments is at a version it does not support) is a WARNING that names
    the package and the fix; one whose library is not installed is left alone."""
    enabled = []
    for name, module, cls, package in KNOWN:
        try:
            if importlib.util.find_spec(module) is None:
                continue
            instrumentor = getattr(importlib.import_module(module), cls)()
        except Exception as exc:
            logger.warning(
                "tenant_trace: the %s instrumentation is installed but does not import (%s): "
                "pip install -U %s, or uninstall it",
                name,
                exc,
                package,
            )
            continue
        conflicts = get_dependency_conflicts(instrumentor.instrumentation_dependencies())
        if conflicts is not None:
            if conflicts.found is not None:  # the library is there, at a version not supported
                logger.warning(
                    "tenant_trace: %s is not instrumented: %s; install a version of %s "
                    "that supports it",
                    name,
                    conflicts,
                    package,
                )
            continue
        try:
            if not instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.instrument()
        except Exception as exc:
            logger.warning(
                "tenant_trace: could not instrument %s (%s): pip install -U %s",
                name,
                exc,
                package,
                exc_info=True,
            )
        if instrumentor.is_instrumented_by_opentelemetry:
            enabled.append(name)
    logger.info("tenant_trace: instrumented %s", ", ".join(enabled) or "nothing")
    return enabled
