"""Switch on the OpenTelemetry instrumentations that are installed for LLM and HTTP clients."""

from __future__ import annotations

import importlib
import logging

__all__ = ["auto_instrument"]

logger = logging.getLogger("tenant_trace")

# (name, module, instrumentor class): each is used only when its package is installed.
KNOWN = (
    ("openai", "opentelemetry.instrumentation.openai_v2", "OpenAIInstrumentor"),
    ("anthropic", "opentelemetry.instrumentation.anthropic", "AnthropicInstrumentor"),
    ("httpx", "opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
    ("requests", "opentelemetry.instrumentation.requests", "RequestsInstrumentor"),
)


def auto_instrument() -> list[str]:
    """Instrument every known client library whose instrumentation is installed; returns the
    names of those now instrumented (their spans then carry the tenant like any other)."""
    enabled = []
    for name, module, cls in KNOWN:
        try:
            instrumentor = getattr(importlib.import_module(module), cls)()
        except (ImportError, AttributeError):
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
