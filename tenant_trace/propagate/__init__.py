"""Context across boundaries: outbound HTTP (trace context, and the tenant where trusted),
threads and executors, Celery tasks."""

from .celery import instrument_celery, uninstrument_celery
from .http import (
    INTERNAL_TENANT_HEADER,
    inject,
    outbound_headers,
    propagate_httpx,
    propagate_requests,
    requests_adapter,
)
from .threads import ContextExecutor, carry_context, instrument_threads, uninstrument_threads

__all__ = [
    "INTERNAL_TENANT_HEADER",
    "ContextExecutor",
    "carry_context",
    "inject",
    "instrument_celery",
    "instrument_threads",
    "outbound_headers",
    "propagate_httpx",
    "propagate_requests",
    "requests_adapter",
    "uninstrument_celery",
    "uninstrument_threads",
]
