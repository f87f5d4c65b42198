"""A pure WSGI middleware.

The application runs, and its response iterable is iterated and closed, inside a copy of
the server thread's context: nothing the request sets can be seen by the next request on a
reused thread, even when a server forgets to call ``close()``. The span ends only after the
last chunk or ``close()``, so generator responses are attributed in full.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..context import Tenant
from ..errors import Rejection
from ..resolve.resolvers import check_sync
from ..resolve.view import RequestView
from .lifecycle import stays_out
from .options import MiddlewareOptions, configure
from .refusal import refuse

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["TenantTraceWSGIMiddleware"]

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class TenantTraceWSGIMiddleware:
    """Resolve the tenant, keep it in context and trace the request.

    A `Rejection` the application raises before it starts its response (``require_tenant``)
    is answered like the middleware's own.

    Args:
        app: the WSGI application.
        policy: a `TenantPolicy`; or give its options (``resolver=``, ``required=`` ...).
        tracer_provider: the provider for the root span (default: the global one).
        tracing: ``False`` keeps the tenant context only, with no span.

    Raises:
        ConfigurationError: an option is invalid, or the resolver is ``async def``.
    """

    def __init__(
        self,
        app: WSGIApp,
        **options: Unpack[MiddlewareOptions],
    ) -> None:
        self.app = app
        self.policy, self.tracer = configure(**options)
        check_sync(self.policy.resolver)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if stays_out(self.policy, environ.get("PATH_INFO", "")):
            return self._answering_rejections(environ, start_response)
        view = RequestView.from_wsgi(environ)
        try:
            tenant = self.policy.resolve(view)
        except Rejection as rejection:
            return _refuse(start_response, rejection)
        environ["tenant_trace.tenant_id"] = tenant and tenant.id
        context = contextvars.copy_context()
        return context.run(self._call, context, view, tenant, environ, start_response)

    def _answering_rejections(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """Run a request the middleware leaves alone (an excluded path), answering a
        `Rejection` the application raises (`require_tenant`) like the middleware's own."""
        started: list[str] = []

        def watched(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started.append(status)
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, watched)
        except Rejection as rejection:
            if started:
                raise
            return _refuse(start_response, rejection)

    def _call(
        self,
        context: contextvars.Context,
        view: RequestView,
        tenant: Tenant | None,
        environ: dict[str, Any],
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        with self.tracer.request(view, tenant) as request:

            def start_with_status(
                status: str, headers: list[tuple[str, str]], exc_info: Any = None
            ) -> Any:
                request.set_status_code(int(status[:3]))
                return start_response(status, headers, exc_info)

            try:
                body = self.app(environ, start_with_status)
            except Rejection as rejection:
                if request.status_code is not None:
                    raise
                request.set_status_code(rejection.status)
                return _refuse(start_response, rejection)
            return request.stream(body, context)


def _refuse(start_response: StartResponse, rejection: Rejection) -> list[bytes]:
    refusal = refuse(rejection)
    start_response(refusal.status_line, refusal.headers)
    return [refusal.body]
