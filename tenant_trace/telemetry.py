"""The tracers of tenant-trace's own spans, and how an exception is recorded on a span."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from ._version import __version__

__all__ = ["SCHEMA_URL", "SEMCONV_VERSION", "flush", "plain", "record_error", "tracer"]

#: The semantic conventions tenant-trace's spans follow (GenAI included: see
#: `tenant_trace.GENAI_SEMCONV_VERSION`), named on every tracer as its schema URL.
SEMCONV_VERSION = "1.41.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"

logger = logging.getLogger("tenant_trace")


@functools.cache
def _global_tracer(scope: str) -> trace.Tracer:
    # Before init() this is a proxy that follows the provider installed later.
    return trace.get_tracer(scope, __version__, schema_url=SCHEMA_URL)


def plain(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain dict of a span's or an event's attributes, to read many keys of: the SDK's
    own ``copy()`` runs in C, where ``dict()`` or ``get()`` on its mapping go key by key
    (and raise a KeyError inside for each key that is absent). A dict is returned as it is."""
    if not attributes:
        return {}
    if type(attributes) is dict:
        return attributes
    copy = getattr(attributes, "copy", None)
    result = copy() if callable(copy) else None
    return result if type(result) is dict else dict(attributes)


def tracer(
    scope: str = "tenant_trace", provider: trace.TracerProvider | None = None
) -> trace.Tracer:
    """The tracer of instrumentation scope `scope` (``tenant_trace``, ``tenant_trace.agent``
    ...), on `provider` or, by default, on the global provider."""
    if provider is None:
        return _global_tracer(scope)
    return trace.get_tracer(scope, __version__, provider, schema_url=SCHEMA_URL)


def record_error(span: trace.Span, exc: BaseException) -> None:
    """Record `exc` on `span`: an exception event, ``error.type`` and ERROR status; a
    failure to record is logged, never raised."""
    try:
        span.record_exception(exc)
        span.set_attribute("error.type", type(exc).__qualname__)
        span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
    except Exception:
        logger.debug("tenant_trace: could not record an exception", exc_info=True)


def flush(timeout_millis: int = 5000) -> None:
    """Export what the global tracer, meter and logger providers still hold (when they are
    the SDK's), each within `timeout_millis`; for servers that end the process without
    running exit handlers. A failure is logged, never raised."""
    from opentelemetry import _logs, metrics

    for provider in (
        trace.get_tracer_provider(),
        metrics.get_meter_provider(),
        _logs.get_logger_provider(),
    ):
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is None:
            continue
        try:
            force_flush(timeout_millis=timeout_millis)
        except Exception:
            logger.warning("tenant_trace: could not flush %r", provider, exc_info=True)
