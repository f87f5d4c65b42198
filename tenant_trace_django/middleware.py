"""Django middleware: ``"tenant_trace_django.middleware.TenantTraceMiddleware"`` in MIDDLEWARE.

Sync and async capable. ``__call__`` and ``__acall__`` each set the tenant and open the root
span, call the rest of the chain and reset the context in one frame, so that Django's
sync/async adaptation never sees a context variable reset in another context. A streamed
response takes the span over: the context is reset before the middleware returns, entered
again around each chunk, and the span ends after the last chunk or when the server closes
the response (a client that went away).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from tenant_trace import metrics
from tenant_trace.context import get_current_tenant
from tenant_trace.errors import ConfigurationError, Rejection
from tenant_trace.server.lifecycle import ActiveRequest, current_request
from tenant_trace.resolve.view import RequestView

from .conf import build, conf, parse

__all__ = ["TenantTraceMiddleware", "rejection_response", "request_view"]

GetResponse = Callable[[HttpRequest], HttpResponseBase]
AsyncGetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]

# The exception a view raised, kept until the response shows whether it became a server
# error (Django turns Http404, PermissionDenied ... into 4xx responses, which are no error).
_EXCEPTION = "_tenant_trace_exception"


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

    def __init__(self, get_response: GetResponse | AsyncGetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            # Django then awaits __call__, which hands over to __acall__.
            markcoroutinefunction(self)
        try:
            self.policy, self.tracer = build(parse(conf.TENANT_TRACE))
        except ConfigurationError as exc:
            raise ImproperlyConfigured(str(exc)) from None

    def __repr__(self) -> str:
        return f"TenantTraceMiddleware({self.policy!r}, async_mode={self.async_mode})"

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        get_response = cast(GetResponse, self.get_response)
        if self._stays_out(request):
            request.tenant_id = get_current_tenant()  # type: ignore[attr-defined]
            return get_response(request)
        view = request_view(request)
        try:
            tenant = self.policy.resolve(view)
        except Rejection as rejection:
            return rejection_response(rejection)
        request.tenant_id = tenant and tenant.id  # type: ignore[attr-defined]
        active = self.tracer.start(view, tenant)
        streaming = False
        try:
            response = get_response(request)
            streaming = _settle(request, response, active)
        except BaseException as exc:
            active.set_route(_route(request))
            active.record_exception(exc)
            raise
        finally:
            if streaming:
                active.detach()
            else:
                active.end()
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        get_response = cast(AsyncGetResponse, self.get_response)
        if self._stays_out(request):
            request.tenant_id = get_current_tenant()  # type: ignore[attr-defined]
            return await get_response(request)
        view = request_view(request)
        try:
            tenant = await self.policy.aresolve(view)
        except Rejection as rejection:
            return rejection_response(rejection)
        request.tenant_id = tenant and tenant.id  # type: ignore[attr-defined]
        active = self.tracer.start(view, tenant)
        streaming = False
        try:
            response = await get_response(request)
            streaming = _settle(request, response, active)
        except BaseException as exc:
            active.set_route(_route(request))
            active.record_exception(exc)
            raise
        finally:
            if streaming:
                active.detach()
            else:
                active.end()
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Answer a `Rejection` raised by a view; keep any other exception for the span."""
        if isinstance(exception, Rejection):
            return rejection_response(exception)
        setattr(request, _EXCEPTION, exception)
        return None

    def _stays_out(self, request: HttpRequest) -> bool:
        """An excluded path, or a request already traced (this middleware installed twice,
        or Django run behind the tenant-trace ASGI/WSGI middleware)."""
        return current_request() is not None or self.policy.is_excluded(request.path_info)


def request_view(request: HttpRequest) -> RequestView:
    """The request as resolvers see it (`RequestView.raw` is the Django request)."""
    return RequestView(
        request.method or "GET",
        request.path_info,
        headers=request.headers.items(),
        query=request.META.get("QUERY_STRING", ""),
        raw=request,
    )


def rejection_response(rejection: Rejection) -> HttpResponse:
    """The response to a `Rejection`: its status, headers and JSON body, byte for byte."""
    metrics.record_rejection(rejection.code)
    return HttpResponse(
        rejection.body(), status=rejection.status, headers=dict(rejection.response_headers())
    )


def _route(request: HttpRequest) -> str | None:
    """The pattern Django matched, in Django's syntax (``items/<int:pk>``)."""
    match = request.resolver_match
    return match.route if match is not None else None


def _settle(request: HttpRequest, response: HttpResponseBase, active: ActiveRequest) -> bool:
    """Record the response on the span; ``True`` when a streamed body takes the span over."""
    active.set_route(_route(request))
    active.set_status_code(response.status_code)
    exception = getattr(request, _EXCEPTION, None)
    if exception is not None and response.status_code >= 500:
        active.record_exception(exception)
    if not isinstance(response, StreamingHttpResponse):
        return False
    if getattr(response, "file_to_stream", None) is not None:
        # A FileResponse the server may send with wsgi.file_wrapper: leave its body alone
        # (no application code runs while a file is sent) and end the span when it closes.
        closers = getattr(response, "_resource_closers", None)
        if closers is None:
            return False
        closers.append(active.finish)
        return True
    # The response calls close() of its content when it is closed, so a body left unfinished
    # by a client that disconnected still ends the span.
    if response.is_async:
        response.streaming_content = _AsyncBody(
            cast(AsyncIterator[bytes], response.streaming_content), active
        )
    else:
        response.streaming_content = _SyncBody(
            cast(Iterator[bytes], response.streaming_content), active
        )
    return True


class _SyncBody:
    """A streamed body whose chunks are made in their request's context."""

    __slots__ = ("_chunks", "_request")

    def __init__(self, chunks: Iterator[bytes], request: ActiveRequest) -> None:
        self._chunks = chunks
        self._request = request

    def __iter__(self) -> _SyncBody:
        return self

    def __next__(self) -> bytes:
        with self._request.activated():
            try:
                return next(self._chunks)
            except StopIteration:
                self._request.finish()
                raise
            except BaseException as exc:
                self._request.record_exception(exc)
                self._request.finish()
                raise

    def close(self) -> None:
        self._request.finish()


class _AsyncBody:
    """An async streamed body whose chunks are made in their request's context."""

    __slots__ = ("_chunks", "_request")

    def __init__(self, chunks: AsyncIterator[bytes], request: ActiveRequest) -> None:
        self._chunks = chunks
        self._request = request

    def __aiter__(self) -> _AsyncBody:
        return self

    async def __anext__(self) -> bytes:
        with self._request.activated():
            try:
                return await self._chunks.__anext__()
            except StopAsyncIteration:
                self._request.finish()
                raise
            except BaseException as exc:  # an error, or the server cancelled the request
                self._request.record_exception(exc)
                self._request.finish()
                raise

    def close(self) -> None:
        self._request.finish()
