"""Django middleware: ``"tenant_trace_django.middleware.TenantTraceMiddleware"`` in MIDDLEWARE.

Sync and async capable. ``__call__`` and ``__acall__`` each resolve the tenant, run the rest
of the chain inside the core's request block and leave it in one frame, so that Django's
sync/async adaptation never sees a context variable reset in another context. A streamed
response takes the span over (the core's `ActiveRequest.stream`): its chunks are made in
the request's context and the span ends after the last one, or when the server closes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from tenant_trace.context import Tenant, get_current_tenant
from tenant_trace.errors import ConfigurationError, Rejection
from tenant_trace.resolve.resolvers import check_sync
from tenant_trace.resolve.view import RequestView
from tenant_trace.server.lifecycle import ActiveRequest, handled_exception, stays_out
from tenant_trace.server.options import configure, options_from
from tenant_trace.server.refusal import refuse

from .conf import conf

__all__ = ["TenantTraceMiddleware"]


class TenantTraceMiddleware:
    """Resolve the tenant of each request, keep it in context and trace the request.

    Configured by the ``TENANT_TRACE`` setting (see `tenant_trace_django.conf`). Sets
    ``request.tenant_id`` (``None`` when the request has no tenant) and answers rejections,
    including a `tenant_trace.Rejection` raised by a view, with the same status and JSON body
    as every other framework.

    Raises:
        ImproperlyConfigured: ``TENANT_TRACE`` is invalid (``manage.py check`` says why).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:  # Django then awaits __call__, which hands over to __acall__
            markcoroutinefunction(self)
        try:
            self.policy, self.tracer = configure(**options_from(conf.TENANT_TRACE, "TENANT_TRACE"))
            if not self.async_mode:
                check_sync(self.policy.resolver)
        except ConfigurationError as exc:
            raise ImproperlyConfigured(str(exc)) from None

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        if self._stays_out(request):
            return cast(HttpResponseBase, self.get_response(request))
        view = _view(request)
        try:
            tenant = self.policy.resolve(view)
        except Rejection as rejection:
            return _refuse(rejection)
        with self._traced(request, view, tenant) as active:
            return _settle(self.get_response(request), active)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if self._stays_out(request):
            return cast(HttpResponseBase, await self.get_response(request))
        view = _view(request)
        try:
            tenant = await self.policy.aresolve(view)
        except Rejection as rejection:
            return _refuse(rejection)
        with self._traced(request, view, tenant) as active:
            return _settle(await self.get_response(request), active)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Answer a `Rejection` raised by a view; keep any other exception for the span."""
        if isinstance(exception, Rejection):
            return _refuse(exception)
        handled_exception(exception)
        return None

    def _stays_out(self, request: HttpRequest) -> bool:
        """An excluded path, or a request already traced (this middleware installed twice,
        or Django run behind the tenant-trace ASGI/WSGI middleware)."""
        request.tenant_id = get_current_tenant()  # type: ignore[attr-defined]
        return stays_out(self.policy, request.path_info)

    def _traced(self, request: HttpRequest, view: RequestView, tenant: Tenant | None) -> Any:
        request.tenant_id = tenant and tenant.id  # type: ignore[attr-defined]
        # The matched pattern, in Django's syntax (``items/<int:pk>``), read at the end.
        return self.tracer.request(
            view, tenant, route=lambda: getattr(request.resolver_match, "route", None)
        )


def _view(request: HttpRequest) -> RequestView:
    """The request as resolvers see it (`RequestView.raw` is the Django request)."""
    query, method = request.META.get("QUERY_STRING", ""), request.method or "GET"
    return RequestView(method, request.path_info, request.headers.items(), query, request)


def _refuse(rejection: Rejection) -> HttpResponse:
    refusal = refuse(rejection)
    return HttpResponse(refusal.body, status=refusal.status, headers=dict(refusal.headers))


def _settle(response: HttpResponseBase, active: ActiveRequest) -> HttpResponseBase:
    """Record the response's status; a streamed body takes the span over."""
    active.set_status_code(response.status_code)
    if not isinstance(response, StreamingHttpResponse):
        return response
    if getattr(response, "file_to_stream", None) is not None:
        # A FileResponse the server may send with wsgi.file_wrapper: leave its body alone
        # (no application code runs while a file is sent) and end the span when it closes.
        active.hand_over()
        response._resource_closers.append(active.finish)  # type: ignore[attr-defined]
    else:
        response.streaming_content = active.stream(response.streaming_content)
    return response
