"""The framework-neutral request lifecycle shared by the ASGI, WSGI and Django middleware.

``with tracer.request(view, tenant) as request:`` makes the tenant current, continues an
incoming ``traceparent``, opens the root ``agent.run`` span and makes the request the
outermost run of the agent API; leaving the block records an exception that escaped, the
outcome and the metrics, ends the span and resets the context, exactly once. A streamed
body takes the span over (`ActiveRequest.stream`): the block then only resets the context,
and the span ends after the last chunk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import Context, ContextVar, Token
from typing import Any, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from .. import metrics
from ..agent import rollup
from ..agent.rollup import Totals
from ..config import env_flag
from ..context import Tenant, attach, detach
from ..errors import ConfigurationError
from ..identity import Identity, from_request
from ..identity import enter as enter_identity
from ..identity import leave as leave_identity
from ..resolve.policy import TenantPolicy
from ..resolve.view import RequestView
from ..telemetry import record_error, tracer
from .body import AsyncBody, SyncBody
from .root import open_root

__all__ = [
    "ActiveRequest",
    "RequestTracer",
    "current_request",
    "get_current_request",
    "handled_exception",
    "stays_out",
]


logger = logging.getLogger("tenant_trace")

#: The environment variable that sets the default of ``trust_traceparent``.
TRUST_ENV = "TENANT_TRACE_TRUST_TRACEPARENT"
_active: ContextVar[ActiveRequest | None] = ContextVar("tenant_trace.request", default=None)


def handled_exception(exc: BaseException) -> None:
    """Tell the current request, if any, of an exception the framework turned into a
    response itself (Django's and Flask's error handling); see `ActiveRequest.handled_exception`."""
    request = _active.get()
    if request is not None:
        request.handled_exception(exc)


def stays_out(policy: TenantPolicy, path: str) -> bool:
    """Whether a middleware leaves a request alone: its path is excluded, or an outer
    tenant-trace middleware owns it already (installed twice, or Django behind ours)."""
    return _active.get() is not None or policy.is_excluded(path)


def get_current_request() -> ActiveRequest | None:
    """The request being handled in this context, or ``None`` outside a request."""
    return _active.get()


current_request = get_current_request  # the name before 0.2


class RequestTracer:
    """Opens and closes the root span and tenant context of each request.

    Args:
        tracer_provider: the provider to use (default: the global one, looked up lazily).
        tracing: ``False`` keeps only the tenant context (no span at all).
        trust_traceparent: continue every caller's ``traceparent`` (its trace and its
            sampling decision). By default only a caller whose tenant came from the trusted
            internal header is continued; any other starts a new trace with a span link to
            the caller's context, so that a client can neither force sampling nor join
            another tenant's trace. Default: ``TENANT_TRACE_TRUST_TRACEPARENT=true`` in the
            environment, else ``False``.
        identity_headers: request headers whose values are the request's identity (see
            `tenant_trace.identity`): ``{"session_id": "X-Session-ID"}``; keys ``user_id``,
            ``session_id``, ``conversation_id``. A JWT's ``user_claim`` comes first.
    """

    __slots__ = (
        "_provider",
        "_unchecked",
        "identity_headers",
        "tracer",
        "tracing",
        "trust_traceparent",
    )

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        tracing: bool = True,
        trust_traceparent: bool | None = None,
        identity_headers: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(tracing, bool):
            raise ConfigurationError("tracing must be True or False")
        if trust_traceparent is None:
            trust_traceparent = env_flag(TRUST_ENV)
        if not isinstance(trust_traceparent, bool):
            raise ConfigurationError("trust_traceparent must be True or False")
        self.trust_traceparent = trust_traceparent
        unknown = set(identity_headers or {}) - set(Identity._fields)
        if unknown:
            raise ConfigurationError(
                f"identity_headers: unknown {sorted(unknown)}; the keys are {Identity._fields}"
            )
        self.identity_headers = dict(identity_headers or {})
        self._provider = tracer_provider
        self.tracer = tracer("tenant_trace", tracer_provider)
        self._unchecked = tracing
        self.tracing = tracing

    def __repr__(self) -> str:
        return f"RequestTracer(tracing={self.tracing})"

    def request(
        self,
        view: RequestView,
        tenant: Tenant | None,
        *,
        websocket: bool = False,
        route: Callable[[], str | None] | None = None,
    ) -> ActiveRequest:
        """One request, as a with-block: ``with tracer.request(view, tenant) as request:``.

        Args:
            view: the request, for the span's attributes and an incoming ``traceparent``.
            tenant: the resolved tenant (``None``: a request without one).
            websocket: a websocket session rather than an HTTP request.
            route: reads the matched route template when the request ends.
        """
        if self._unchecked:
            self._unchecked = False
            _check_provider(self._provider or trace.get_tracer_provider())
        return ActiveRequest(self, view, tenant, websocket, route)

    def trusts(self, tenant: Tenant | None) -> bool:
        """Whether the caller's ``traceparent`` is continued: `trust_traceparent`, or a
        tenant from the trusted internal header."""
        return self.trust_traceparent or (tenant is not None and tenant.source == "internal")


def _check_provider(provider: trace.TracerProvider) -> None:
    """Warn, at the first request, when no SDK provider records spans (a missing `init()`)."""
    if not isinstance(provider, TracerProvider):
        logger.warning(
            "tenant_trace: the tracer provider is %s, so no span is recorded: call "
            "tenant_trace.init() at start-up, before the first request",
            type(provider).__name__,
        )


_Tokens = tuple[Token[Tenant | None], object, Token["ActiveRequest | None"], object, object]


class ActiveRequest:
    """One request in flight: its tenant, root span (``None`` when tracing is off) and the
    totals of the agent steps it runs."""

    __slots__ = (
        "_context",
        "_handed_over",
        "_handled",
        "_opening",
        "_recorded",
        "_route",
        "_started",
        "_status",
        "_tokens",
        "_who",
        "span",
        "tenant",
        "totals",
    )

    def __init__(
        self,
        tracer: RequestTracer,
        view: RequestView,
        tenant: Tenant | None,
        websocket: bool = False,
        route: Callable[[], str | None] | str | None = None,
    ) -> None:
        self.tenant = tenant
        self.span: trace.Span | None = None
        self.totals: Totals | None = None
        self._opening: tuple[RequestTracer, RequestView, bool] | None = (tracer, view, websocket)
        self._context: otel_context.Context | None = None
        self._recorded: BaseException | None = None
        self._handled: BaseException | None = None
        self._route = route
        self._started: float | None = None
        self._status: int | None = None
        self._tokens: _Tokens | None = None
        self._who = from_request(view, tracer.identity_headers)
        self._handed_over = False

    def __repr__(self) -> str:
        return f"ActiveRequest(tenant={self.tenant and self.tenant.id!r})"

    def __enter__(self) -> ActiveRequest:
        opening, self._opening = self._opening, None
        if opening is None:
            raise RuntimeError("a request is entered once")
        tracer, view, websocket = opening
        self._started = time.monotonic()
        tenant_token = attach(self.tenant)  # first, so that the span processor sees the tenant
        who_token = None if self._who is None else enter_identity(self._who)[1]
        if tracer.tracing:
            try:
                self.span, self._context = open_root(
                    tracer.tracer, view, self.tenant, websocket, tracer.trusts(self.tenant)
                )
            except Exception:
                logger.exception("tenant_trace: could not open the request span")
        self.totals = Totals(self.span, started=self._started)
        self._tokens = self._attach(tenant_token, who_token)
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            if exc is not None:
                self.record_exception(exc)
            if not self._handed_over:
                self.finish()
        finally:
            tokens, self._tokens = self._tokens, None
            if tokens is not None:
                _reset(tokens)

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

    def handled_exception(self, exc: BaseException) -> None:
        """An exception the framework turned into a response itself (Django's and Flask's
        error handling): recorded if that response is a server error, not for a 404."""
        self._handled = exc

    def hand_over(self) -> None:
        """Leave the span open when the request block ends: whatever sends the response
        afterwards ends it with `finish`."""
        self._handed_over = True

    @overload
    def stream(self, chunks: AsyncIterator[bytes], context: None = None) -> AsyncBody: ...

    @overload
    def stream(self, chunks: Iterable[bytes], context: Context | None = None) -> SyncBody: ...

    def stream(
        self, chunks: Iterable[bytes] | AsyncIterator[bytes], context: Context | None = None
    ) -> SyncBody | AsyncBody:
        """Hand the span over to a body the server iterates after the middleware returned
        (an iterable or an async iterator): each chunk is made in this request's context,
        and the span ends after the last one or when the server closes the body.
        `context`: see `SyncBody`."""
        self.hand_over()
        if isinstance(chunks, AsyncIterator):
            return AsyncBody(chunks, self)
        return SyncBody(chunks, self, context)

    def finish(self) -> None:
        """Record the outcome and end the span (once; later calls do nothing)."""
        started, self._started = self._started, None
        if started is None:
            return
        totals = self.totals
        route = self._route
        if callable(route):
            try:
                route = route()
            except Exception:
                logger.debug("tenant_trace: reading the route failed", exc_info=True)
                route = None
        if self._handled is not None and self._status is not None and self._status >= 500:
            self.record_exception(self._handled)
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
            if route:
                attributes["http.route"] = route
            if attributes:
                span.set_attributes(attributes)
            if totals is not None:
                totals.close()
            span.end()
        except Exception:
            logger.debug("tenant_trace: could not end the request span", exc_info=True)

    @contextmanager
    def activated(self) -> Iterator[None]:
        """Make this request's tenant, span and totals current again, for work that runs
        after the middleware returned (a streamed body iterated by the server)."""
        tenant_token = attach(self.tenant)
        tokens = self._attach(
            tenant_token, None if self._who is None else enter_identity(self._who)[1]
        )
        try:
            yield
        finally:
            _reset(tokens)

    def _attach(self, tenant_token: Token[Tenant | None], who_token: object) -> _Tokens:
        otel_token = None if self._context is None else otel_context.attach(self._context)
        totals_token = None if self.totals is None else rollup.enter(self.totals)
        return (tenant_token, otel_token, _active.set(self), totals_token, who_token)


def _reset(tokens: _Tokens) -> None:
    tenant_token, otel_token, active_token, totals_token, who_token = tokens
    if totals_token is not None:
        rollup.leave(totals_token)
    _active.reset(active_token)
    if otel_token is not None:
        otel_context.detach(otel_token)  # type: ignore[arg-type]
    if who_token is not None:
        leave_identity(who_token)  # type: ignore[arg-type]
    detach(tenant_token)
