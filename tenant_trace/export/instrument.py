"""Switch on the OpenTelemetry instrumentations that are installed for LLM and HTTP clients
and agent frameworks (LangChain/LangGraph; pydantic-ai instruments itself: give its agents
``capabilities=[Instrumentation()]``)."""

from __future__ import annotations

import importlib
import importlib.util
import logging

from opentelemetry.instrumentation.dependencies import get_dependency_conflicts

__all__ = ["auto_instrument"]

logger = logging.getLogger("tenant_trace")

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
        except Exception:
            logger.warning("tenant_trace: could not instrument %s", name, exc_info=True)
        if instrumentor.is_instrumented_by_opentelemetry:
            enabled.append(name)
    logger.info("tenant_trace: instrumented %s", ", ".join(enabled) or "nothing")
    return enabled
