"""The framework-neutral request lifecycle shared by the ASGI, WSGI and Django middleware.

`RequestTracer.start` makes the tenant current, continues an incoming ``traceparent`` and
opens the root ``agent.run`` span; `ActiveRequest.end` records the outcome, ends the span
and resets the context, exactly once. Both run in the same context (the same asyncio task,
or the same `contextvars.Context` for WSGI), so every set is paired with its reset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import metrics
from ..context import Tenant, attach, detach
from ..errors import ConfigurationError
from ..resolve.view import RequestView
from ..agent.rollup import Totals

__all__ = [
    "TRACER_OPTIONS",
    "ActiveRequest",
    "RequestTracer",
    "current_request",
    "record_error",
]

#: The middleware options that are not policy options.
TRACER_OPTIONS = ("tracer_provider", "tracing")

logger = logging.getLogger("tenant_trace")

SPAN_NAME = "agent.run"
_active: ContextVar[ActiveRequest | None] = ContextVar("tenant_trace.request", default=None)


def current_request() -> ActiveRequest | None:
    """The request being handled in this context, or ``None`` outside a request."""
    return _active.get()


class _ViewGetter(Getter[RequestView]):
    def get(self, carrier: RequestView, key: str) -> list[str] | None:
        return carrier.get_all(key) or None

    def keys(self, carrier: RequestView) -> list[str]:
        return []


_GETTER = _ViewGetter()


class RequestTracer:
    """Opens and closes the root span and tenant context of each request.

    Args:
        tracer_provider: the provider to use (default: the global one, looked up lazily).
        tracing: ``False`` keeps only the tenant context (no span at all).
    """

    __slots__ = ("_tracer", "tracing")

    def __init__(
        self, *, tracer_provider: trace.TracerProvider | None = None, tracing: bool = True
    ) -> None:
        from .._version import __version__

        if not isinstance(tracing, bool):
            raise ConfigurationError("tracing must be True or False")
        self._tracer = trace.get_tracer("tenant_trace", __version__, tracer_provider)
        self.tracing = tracing

    def __repr__(self) -> str:
        return f"RequestTracer(tracing={self.tracing})"

    def start(
        self, view: RequestView, tenant: Tenant | None, *, websocket: bool = False
    ) -> ActiveRequest:
        """Make `tenant` current and open the root span; pair with `ActiveRequest.end`."""
        request = ActiveRequest(tenant)
        tenant_token = attach(tenant)  # first, so that the span processor sees the tenant
        if self.tracing:
            try:
                request.span, request._context = self._open(view, tenant, websocket)
            except Exception:
                logger.exception("tenant_trace: could not open the request span")
        otel_token = None if request._context is None else otel_context.attach(request._context)
        request._tokens = (tenant_token, otel_token, _active.set(request))
        return request

    def _open(
        self, view: RequestView, tenant: Tenant | None, websocket: bool
    ) -> tuple[trace.Span, otel_context.Context]:
        parent = None
        server_span = trace.get_current_span()
        if server_span.get_span_context().is_valid:
            kind = SpanKind.INTERNAL
            if tenant is not None:
                # The HTTP server span of other instrumentation started before the tenant
                # was known: stamp it too, so that every span of the request has it.
                server_span.set_attributes({"tenant.id": tenant.id, "tenant.source": tenant.source})
        else:
            kind = SpanKind.SERVER
            if view.get_all("traceparent") or view.get_all("baggage"):
                parent = propagate.extract(view, getter=_GETTER)
                # A client-sent tenant in baggage is never trusted, nor passed on downstream.
                if baggage.get_baggage("tenant.id", parent) is not None:
                    parent = baggage.remove_baggage("tenant.id", parent)
        attributes: dict[str, Any] = {"url.path": view.path}
        if not websocket:
            attributes["http.request.method"] = view.method
        if tenant is not None:  # given here, the span processor has nothing left to add
            attributes["tenant.id"] = tenant.id
            attributes["tenant.source"] = tenant.source
        span = self._tracer.start_span(SPAN_NAME, parent, kind, attributes)
        return span, trace.set_span_in_context(span, parent)


_Tokens = tuple[Token[Tenant | None], object, Token["ActiveRequest | None"]]


class ActiveRequest:
    """One request in flight: its tenant and root span (``None`` when tracing is off)."""

    __slots__ = (
        "_context",
        "_recorded",
        "_route",
        "_started",
        "_status",
        "_tokens",
        "_totals",
        "span",
        "tenant",
    )

    def __init__(self, tenant: Tenant | None) -> None:
        self.tenant = tenant
        self.span: trace.Span | None = None
        self._context: otel_context.Context | None = None
        self._recorded: BaseException | None = None
        self._route: str | None = None
        self._started: float | None = time.monotonic()
        self._status: int | None = None
        self._totals: Totals | None = None
        self._tokens: _Tokens | None = None

    def __repr__(self) -> str:
        return f"ActiveRequest(tenant={self.tenant and self.tenant.id!r})"

    @property
    def totals(self) -> Totals:
        """The request's roll-up of agent steps (made when the first step counts)."""
        if self._totals is None:
            self._totals = Totals(self.span)
        return self._totals

    @property
    def status_code(self) -> int | None:
        """The response status, once the response started."""
        return self._status

    def set_route(self, route: str | None) -> None:
        """Record the matched route template (``/items/{id}``)."""
        if route:
            self._route = route

    def set_status_code(self, status: int) -> None:
        """Record the response status; 5xx marks the span as an error."""
        self._status = status

    def record_exception(self, exc: BaseException) -> None:
        """Record an exception that escaped the application, with ERROR status (once, when
        both a framework hook and the middleware see it)."""
        if exc is self._recorded:
            return
        self._recorded = exc
        if self.span is not None:
            record_error(self.span, exc)

    def end(self) -> None:
        """End the span and reset the context; later calls do nothing."""
        try:
            self.finish()
        finally:
            self.detach()

    def finish(self) -> None:
        """End the span only (once): for a response that streams after the middleware
        returned, the adapter detaches first and finishes after the last chunk."""
        started, self._started = self._started, None
        if started is not None:  # once, with or without a span
            totals = self._totals
            failure = totals.failure if totals is not None else None
            metrics.record_request(self.tenant, started, failure, self._recorded, self._status)
        span, self.span = self.span, None
        if span is None:
            return
        try:
            attributes: dict[str, Any] = {}
            if self._status is not None:
                attributes["http.response.status_code"] = self._status
                if self._status >= 500 and self._recorded is None:
                    span.set_status(Status(StatusCode.ERROR))
            if self._route is not None:
                attributes["http.route"] = self._route
            if attributes:
                span.set_attributes(attributes)
            if self._totals is not None:
                self._totals.close()
            span.end()
        except Exception:
            logger.debug("tenant_trace: could not end the request span", exc_info=True)

    def detach(self) -> None:
        """Reset the context set by `RequestTracer.start` (once, in the same context)."""
        tokens, self._tokens = self._tokens, None
        if tokens is not None:
            _reset(tokens)

    @contextmanager
    def activated(self) -> Iterator[None]:
        """Make this request's tenant and span current again, for work that runs after the
        middleware returned (a streamed body iterated by the server)."""
        otel_token = None if self._context is None else otel_context.attach(self._context)
        tokens = (attach(self.tenant), otel_token, _active.set(self))
        try:
            yield
        finally:
            _reset(tokens)


def record_error(span: trace.Span, exc: BaseException) -> None:
    """Record `exc` on `span`: an exception event, ``error.type`` and ERROR status; a
    failure to record is logged, never raised."""
    try:
        span.record_exception(exc)
        span.set_attribute("error.type", type(exc).__qualname__)
        span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
    except Exception:
        logger.debug("tenant_trace: could not record an exception", exc_info=True)


def _reset(tokens: _Tokens) -> None:
    tenant_token, otel_token, active_token = tokens
    _active.reset(active_token)
    if otel_token is not None:
        otel_context.detach(otel_token)  # type: ignore[arg-type]
    detach(tenant_token)
