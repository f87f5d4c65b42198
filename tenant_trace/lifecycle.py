"""The framework-neutral request lifecycle shared by the ASGI, WSGI and Django middleware.

`RequestTracer.start` makes the tenant current, continues an incoming ``traceparent`` and
opens the root ``agent.run`` span; `ActiveRequest.end` records the outcome, ends the span
and resets the context, exactly once. Both run in the same context (the same asyncio task,
or the same `contextvars.Context` for WSGI), so every set is paired with its reset.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import rollup
from .context import Tenant, attach, detach
from .errors import ConfigurationError
from .request import RequestView
from .rollup import Totals

__all__ = ["TRACER_OPTIONS", "ActiveRequest", "RequestTracer", "current_request"]

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
        from . import __version__

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
        span = None
        span_context = None
        token = attach(tenant)  # first, so that the span processor sees the tenant
        try:
            if self.tracing:
                parent = None
                kind = SpanKind.INTERNAL
                server_span = trace.get_current_span()
                if not server_span.get_span_context().is_valid:
                    parent = propagate.extract(view, getter=_GETTER)
                    kind = SpanKind.SERVER
                elif tenant is not None:
                    # The HTTP server span of other instrumentation started before the tenant
                    # was known: stamp it too, so that every span of the request has it.
                    server_span.set_attributes(
                        {"tenant.id": tenant.id, "tenant.source": tenant.source}
                    )
                attributes: dict[str, Any] = {"url.path": view.path}
                if not websocket:
                    attributes["http.request.method"] = view.method
                span = self._tracer.start_span(SPAN_NAME, parent, kind, attributes)
                span_context = trace.set_span_in_context(span, parent)
        except Exception:
            logger.exception("tenant_trace: could not open the request span")
        finally:
            detach(token)
        request = ActiveRequest(tenant, span, span_context)
        request._tokens = request._attach()
        return request


_Tokens = tuple[Token[Tenant | None], object, Token["ActiveRequest | None"], object]


class ActiveRequest:
    """One request in flight: its tenant and root span (``None`` when tracing is off)."""

    __slots__ = ("_context", "_recorded", "_tokens", "span", "tenant", "totals")

    def __init__(
        self, tenant: Tenant | None, span: trace.Span | None, context: otel_context.Context | None
    ) -> None:
        self.tenant = tenant
        self.span = span
        self.totals = Totals(span)
        self._context = context
        self._recorded: BaseException | None = None
        self._tokens: _Tokens | None = None

    def __repr__(self) -> str:
        return f"ActiveRequest(tenant={self.tenant and self.tenant.id!r})"

    def set_route(self, route: str | None) -> None:
        """Record the matched route template (``/items/{id}``)."""
        if route and self.span is not None:
            self.span.set_attribute("http.route", route)

    def set_status_code(self, status: int) -> None:
        """Record the response status; 5xx marks the span as an error."""
        if self.span is None:
            return
        self.span.set_attribute("http.response.status_code", status)
        if status >= 500:
            self.span.set_status(Status(StatusCode.ERROR))

    def record_exception(self, exc: BaseException) -> None:
        """Record an exception that escaped the application, with ERROR status (once, when
        both a framework hook and the middleware see it)."""
        if self.span is None or exc is self._recorded:
            return
        self._recorded = exc
        try:
            self.span.record_exception(exc)
            self.span.set_attribute("error.type", type(exc).__qualname__)
            self.span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
        except Exception:
            logger.debug("tenant_trace: could not record an exception", exc_info=True)

    def end(self) -> None:
        """End the span and reset the context; later calls do nothing."""
        try:
            self.finish()
        finally:
            self.detach()

    def finish(self) -> None:
        """End the span only (once): for a response that streams after the middleware
        returned, the adapter detaches first and finishes after the last chunk."""
        span, self.span = self.span, None
        if span is not None:
            try:
                self.totals.close()
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
        tokens = self._attach()
        try:
            yield
        finally:
            _reset(tokens)

    def _attach(self) -> _Tokens:
        otel_token = None if self._context is None else otel_context.attach(self._context)
        return attach(self.tenant), otel_token, _active.set(self), rollup.enter(self.totals)


def _reset(tokens: _Tokens) -> None:
    tenant_token, otel_token, active_token, totals_token = tokens
    rollup.leave(totals_token)
    _active.reset(active_token)
    if otel_token is not None:
        otel_context.detach(otel_token)  # type: ignore[arg-type]
    detach(tenant_token)
