"""Where the root span of a request starts: who may continue a trace.

A client's ``traceparent`` decides nothing: the request starts a new trace with a span link
to the caller's context. It is continued, with its sampling decision, only for a trusted
caller (`RequestTracer.trusts`). Under the HTTP server span of other instrumentation, which
started before the tenant was known, the root is an INTERNAL child sampled anew with the
tenant's ratio (`redeciding`); a server span that joined an untrusted caller, or that the
tenant's sampling dropped, is `superseded` and not exported.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, SpanKind

from ..context import Tenant
from ..export.sampling import redeciding, superseded
from ..resolve.view import RequestView

__all__ = ["SPAN_NAME", "open_root"]

SPAN_NAME = "agent.run"


class _ViewGetter(Getter[RequestView]):
    def get(self, carrier: RequestView, key: str) -> list[str] | None:
        return carrier.get_all(key) or None

    def keys(self, carrier: RequestView) -> list[str]:
        return []


_GETTER = _ViewGetter()


def open_root(
    tracer: trace.Tracer, view: RequestView, tenant: Tenant | None, websocket: bool, trusted: bool
) -> tuple[trace.Span, otel_context.Context]:
    """Start the root span of a request and return it with the context it runs in."""
    attributes: dict[str, Any] = {"url.path": view.path}
    if not websocket:
        attributes["http.request.method"] = view.method
    if tenant is not None:  # given here, the span processor has nothing left to add
        attributes["tenant.id"] = tenant.id
        attributes["tenant.source"] = tenant.source
    parent = None
    links: list[Link] = []
    kind = SpanKind.SERVER
    server_span = trace.get_current_span()
    outer = server_span.get_span_context()
    if outer.is_valid:
        # The HTTP server span of other instrumentation, started before the tenant was
        # known: stamp it too, so that every span of the request has it.
        if tenant is not None:
            server_span.set_attributes({"tenant.id": tenant.id, "tenant.source": tenant.source})
        caller = getattr(server_span, "parent", None)
        if trusted or caller is None or not caller.is_remote:
            kind = SpanKind.INTERNAL
            token = None if trusted else redeciding.set(True)
            try:
                span = tracer.start_span(SPAN_NAME, None, kind, attributes)
            finally:
                if token is not None:
                    redeciding.reset(token)
            if outer.trace_flags.sampled and not span.get_span_context().trace_flags.sampled:
                superseded.add(outer)  # the tenant's sampling dropped the request
            return span, trace.set_span_in_context(span)
        # It joined an untrusted caller's trace: this request starts its own, linked to
        # the caller and to that span; no span that joined the caller is exported.
        superseded.add(outer)
        superseded.add(caller)
        links = [Link(caller), Link(outer)]
        parent = trace.set_span_in_context(trace.INVALID_SPAN)
    elif view.get_all("traceparent") or view.get_all("baggage"):
        parent = propagate.extract(view, getter=_GETTER)
        # A client-sent tenant in baggage is never trusted, nor passed on downstream.
        if baggage.get_baggage("tenant.id", parent) is not None:
            parent = baggage.remove_baggage("tenant.id", parent)
        caller = trace.get_current_span(parent).get_span_context()
        if caller.is_valid and not trusted:
            # An untrusted caller decides neither the trace nor its sampling: a new
            # trace, linked to the caller's.
            links = [Link(caller)]
            parent = trace.set_span_in_context(trace.INVALID_SPAN, parent)
    span = tracer.start_span(SPAN_NAME, parent, kind, attributes, links)
    return span, trace.set_span_in_context(span, parent)
