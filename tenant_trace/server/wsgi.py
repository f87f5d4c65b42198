"""A pure WSGI middleware.

The application runs, and its response iterable is iterated and closed, inside a copy of
the server thread's context: the tenant and span set for one request can never be seen by
the next request on a reused thread, even when a server forgets to call ``close()``. The
span ends and the context resets only after ``close()``, so generator responses are
attributed in full.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .. import metrics
from ..errors import Rejection
from .lifecycle import ActiveRequest, RequestTracer, current_request
from ..resolve.policy import TenantPolicy, build_policy
from ..resolve.view import RequestView

__all__ = ["TenantTraceWSGIMiddleware"]

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}


class TenantTraceWSGIMiddleware:
    """Resolve the tenant, keep it in context and trace the request.

    Args:
        app: the WSGI application.
        policy: a `TenantPolicy`; or give its options (``resolver=``, ``required=`` ...).
        tracer_provider: the provider for the root span (default: the global one).
        tracing: ``False`` keeps the tenant context only, with no span.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        policy: TenantPolicy | None = None,
        tracer_provider: Any = None,
        tracing: bool = True,
        **policy_options: Any,
    ) -> None:
        self.app = app
        self.policy = build_policy(policy, **policy_options)
        self.tracer = RequestTracer(tracer_provider=tracer_provider, tracing=tracing)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if current_request() is not None or self.policy.is_excluded(environ.get("PATH_INFO", "")):
            return self.app(environ, start_response)
        view = RequestView.from_wsgi(environ)
        try:
            tenant = self.policy.resolve(view)
        except Rejection as rejection:
            metrics.record_rejection(rejection.code)
            reason = _REASONS.get(rejection.status, "Error")
            start_response(f"{rejection.status} {reason}", rejection.response_headers())
            return [rejection.body()]
        environ["tenant_trace.tenant_id"] = tenant and tenant.id
        context = contextvars.copy_context()
        return context.run(self._start, context, view, tenant, environ, start_response)

    def _start(
        self,
        context: contextvars.Context,
        view: RequestView,
        tenant: Any,
        environ: dict[str, Any],
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        request = self.tracer.start(view, tenant)

        def start_with_status(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            request.set_status_code(int(status[:3]))
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start_with_status)
        except BaseException as exc:
            request.record_exception(exc)
            request.end()
            raise
        return _Body(body, context, request)


class _Body:
    """The application's response iterable, run in the request's context until closed."""

    __slots__ = ("_body", "_context", "_iter", "_request")

    def __init__(
        self, body: Iterable[bytes], context: contextvars.Context, request: ActiveRequest
    ) -> None:
        self._body = body
        self._context = context
        self._request = request
        self._iter: Iterator[bytes] | None = None

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        return self._context.run(self._next)

    def _next(self) -> bytes:
        try:
            if self._iter is None:
                self._iter = iter(self._body)
            return next(self._iter)
        except StopIteration:
            raise
        except BaseException as exc:
            self._request.record_exception(exc)
            raise

    def close(self) -> None:
        self._context.run(self._close)

    def _close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self._request.record_exception(exc)
            raise
        finally:
            self._request.end()
