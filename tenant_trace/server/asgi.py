"""A pure ASGI middleware (never BaseHTTPMiddleware, which does not carry context variables).

The tenant context and the root span cover the whole ``await app(...)``: every body chunk
of a streamed response, and background tasks that Starlette runs after the response, are
attributed to the request. ``lifespan`` passes through, and at shutdown the telemetry still
held is exported before the server is told it may end; other scopes pass through untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ..errors import Rejection
from ..resolve.view import RequestView
from ..telemetry import flush
from .lifecycle import stays_out
from .options import MiddlewareOptions, configure
from .refusal import refuse

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["INSTALLED", "TenantTraceASGIMiddleware"]

#: The scope key that tells code inside the app that the middleware saw the request.
INSTALLED = "tenant_trace.installed"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TenantTraceASGIMiddleware:
    """Resolve the tenant, keep it in context and trace the request.

    Args:
        app: the ASGI application.
        policy: a `TenantPolicy`; or give its options (``resolver=``, ``required=``,
            ``default=``, ``allowed=``, ``pattern=``, ``exclude_paths=``) directly.
        tracer_provider: the provider for the root span (default: the global one).
        tracing: ``False`` keeps the tenant context only, with no span.
        route_getter: reads the matched route template from the scope after the app ran;
            by default the ``path`` of ``scope["route"]``, which Starlette's router sets.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        route_getter: Callable[[Scope], str | None] | None = None,
        **options: Unpack[MiddlewareOptions],
    ) -> None:
        self.app = app
        self.policy, self.tracer = configure(**options)
        self.route_getter = route_getter or route_template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, _flushed_at_shutdown(send))
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope[INSTALLED] = True
        if stays_out(self.policy, scope.get("path", "")):
            await _answering_rejections(self.app, scope, receive, send)
            return
        view = RequestView.from_asgi(scope)
        try:
            tenant = await self.policy.aresolve(view)
        except Rejection as rejection:
            await _refuse(scope, send, rejection)
            return
        # Also on request.state, for code that runs outside the middleware (Starlette's
        # catch-all 500 handler runs outermost, after the tenant context has ended).
        scope.setdefault("state", {})["tenant_id"] = tenant and tenant.id
        route = self.route_getter
        with self.tracer.request(
            view, tenant, websocket=kind == "websocket", route=lambda: route(scope)
        ) as request:

            async def send_with_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    request.set_status_code(message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_with_status)
            except Rejection as rejection:
                # Raised by the application itself (`require_tenant`): answered like ours.
                if request.status_code is not None or kind != "http":
                    raise
                request.set_status_code(rejection.status)
                await _refuse(scope, send, rejection)


async def _answering_rejections(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run a request the middleware leaves alone (an excluded path), answering a `Rejection`
    the application raises (`require_tenant`) like the middleware's own."""
    started = False

    async def watched(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await app(scope, receive, watched)
    except Rejection as rejection:
        if started or scope["type"] != "http":
            raise
        await _refuse(scope, send, rejection)


def _flushed_at_shutdown(send: Send) -> Send:
    """`send` of the lifespan protocol that exports the telemetry still held before it says
    that shutdown is complete: uvicorn then ends the process without exit handlers, which
    would lose the last batch of spans."""

    async def send_after_flush(message: Message) -> None:
        if message["type"] == "lifespan.shutdown.complete":
            await asyncio.to_thread(flush)
        await send(message)

    return send_after_flush


def route_template(scope: Scope) -> str | None:
    """The template of the route the router matched (``/items/{item_id}``), if any."""
    return getattr(scope.get("route"), "path", None)


async def _refuse(scope: Scope, send: Send, rejection: Rejection) -> None:
    """Answer with the rejection's status and JSON body (HTTP, or a websocket denial)."""
    refusal = refuse(rejection)
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in refusal.headers]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": refusal.body})
    elif "websocket.http.response" in scope.get("extensions", {}):
        start = {"type": "websocket.http.response.start", "status": refusal.status}
        await send({**start, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": refusal.body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": rejection.code})
