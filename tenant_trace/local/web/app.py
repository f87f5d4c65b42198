"""The Starlette app of ``tenant-trace serve``: server-rendered pages, each with its JSON under
``/api/``, over the queries of `data`; read-only (GET only), every request checked by `Guard`.

    /                   /api/tenants           tenants overview and firing alerts (?since=1h)
    /runs?tenant=T      /api/runs?tenant=T     one tenant's runs (failed, slow_ms, min_cost,
                                               route, agent, since, page, per_page)
    /traces/ID          /api/traces/ID         one trace as a waterfall
    /failing?tenant=T   /api/failing?tenant=T  the tenant's latest failed trace (a redirect)

A tenant's viewer gets 404 for anything of another tenant, exactly as for what does not
exist; 401 for a missing, tampered or expired token.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...config import parse_duration
from ...errors import ConfigurationError
from ..render import MAX_CELL, MAX_VALUE, visible
from ..store import SpanStore
from . import data
from .access import TokenError, Viewer

__all__ = ["COOKIE", "Guard", "create_app"]

COOKIE = "tenant_trace_ui"
# Set once, on every response: no script or style but the shipped files, no framing, no
# referrer (a URL may carry a token), nothing cached.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
WINDOWS = ("15m", "1h", "6h", "24h", "7d")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_NOT_FOUND = {"error": "not_found"}


class BadRequest(Exception):
    """A query parameter is malformed (400)."""


class Guard:
    """Every HTTP request needs a valid token: ``?token=`` (which is then kept in an
    HttpOnly, SameSite=Strict cookie), else the cookie, else ``Authorization: Bearer``.
    Without one the answer is 401 JSON. Every response gets `SECURITY_HEADERS`.

    Args:
        app: the app behind.
        verifier: turns a token into a `Viewer` or raises `TokenError`.
    """

    def __init__(self, app: ASGIApp, *, verifier: Callable[[str | None], Viewer]) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        from_query = request.query_params.get("token")
        bearer = request.headers.get("authorization", "")
        token = from_query or request.cookies.get(COOKIE) or bearer.removeprefix("Bearer ")
        headers = list(SECURITY_HEADERS)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        try:
            viewer = self.verifier(token)
        except TokenError as exc:
            response = JSONResponse({"error": "unauthorized", "detail": str(exc)}, 401)
            await response(scope, receive, send_with_headers)
            return
        if from_query:  # a valid token, so only base64url characters and dots
            cookie = f"{COOKIE}={from_query}; HttpOnly; SameSite=Strict; Path=/"
            headers.append((b"set-cookie", cookie.encode()))
        scope.setdefault("state", {})["viewer"] = viewer
        await self.app(scope, receive, send_with_headers)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tenant_trace.local.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    # Stored strings are data: hidden characters made visible (as in the terminal), then
    # escaped by autoescape; long values cut.
    env.filters["text"] = lambda value, limit=MAX_VALUE: visible(value, limit)
    env.filters["cell"] = lambda value: visible("(none)" if value is None else value, MAX_CELL)
    env.filters["ms"] = lambda v: "-" if v is None else f"{v:,.1f}" if v >= 1 else f"{v:.2f}"
    env.filters["pct"] = lambda v: f"{v:.1%}"
    env.filters["usd"] = lambda v: "unknown" if v is None else f"${v:,.4f}"
    env.filters["when"] = lambda ns: (
        "-"
        if ns is None
        else datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%m-%d %H:%M:%S")
    )
    return env


def _seconds(request: Request, name: str, default: str) -> float:
    try:
        return parse_duration(request.query_params.get(name) or default, name)
    except ConfigurationError as exc:
        raise BadRequest(str(exc)) from None


def _number(request: Request, name: str) -> float | None:
    text = request.query_params.get(name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{name} must be a number") from None
    if not 0 <= value < math.inf:
        raise BadRequest(f"{name} must be a number of at least 0")
    return value


def create_app(
    path: str | os.PathLike[str],
    *,
    verifier: Callable[[str | None], Viewer],
    clock: Callable[[], float] = time.time,
) -> ASGIApp:
    """The web view over the store file `path`.

    Args:
        verifier: the tokens' check, a `Verifier` (with the same `clock` for tests).
        clock: seconds since the epoch: the end of the windows and of the alerts' window.
    """
    store_file = Path(path)
    templates = Jinja2Templates(env=_environment())

    def answer(request: Request, template: str, body: dict[str, Any]) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse(body)
        viewer = request.state.viewer
        return templates.TemplateResponse(request, template, {**body, "viewer": viewer})

    def visible_tenant(request: Request) -> str | None:
        """The ``tenant`` asked for (a tenant's viewer: its own by default), if the viewer
        may see it."""
        viewer: Viewer = request.state.viewer
        tenant = request.query_params.get("tenant") or viewer.tenant
        return tenant if tenant is not None and viewer.may_see(tenant) else None

    def tenants(request: Request) -> Response:
        since = _seconds(request, "since", "1h")
        now_ns = int(clock() * 1e9)
        with closing(SpanStore(store_file)) as store:
            body = data.overview(
                store, request.state.viewer, since_ns=now_ns - int(since * 1e9), now_ns=now_ns
            )
        since_text = request.query_params.get("since") or "1h"
        return answer(request, "overview.html", {**body, "since": since_text, "windows": WINDOWS})

    def runs(request: Request) -> Response:
        tenant = visible_tenant(request)
        if tenant is None:
            return JSONResponse(_NOT_FOUND, 404)
        query = request.query_params
        filters = data.RunFilter(
            since_ns=int((clock() - _seconds(request, "since", "24h")) * 1e9),
            failed=query.get("failed") in ("1", "on", "true"),
            slow_ms=_number(request, "slow_ms"),
            min_cost=_number(request, "min_cost"),
            route=query.get("route") or None,
            agent=query.get("agent") or None,
            page=int(_number(request, "page") or 1),
            per_page=int(_number(request, "per_page") or data.PER_PAGE),
        )
        with closing(SpanStore(store_file)) as store:
            body = data.runs_page(store, tenant, filters)
        echo = {k: v for k, v in query.items() if k not in ("page", "token") and v}
        return answer(request, "runs.html", {**body, "query": {**echo, "tenant": tenant}})

    def trace(request: Request) -> Response:
        trace_id = request.path_params["trace_id"].lower()
        body = None
        if _TRACE_ID.fullmatch(trace_id):
            with closing(SpanStore(store_file)) as store:
                body = data.waterfall(store.trace(trace_id), request.state.viewer)
        if body is None:
            return JSONResponse(_NOT_FOUND, 404)
        return answer(request, "trace.html", body)

    def failing(request: Request) -> Response:
        tenant = visible_tenant(request)
        trace_id = None
        if tenant is not None:
            with closing(SpanStore(store_file)) as store:
                trace_id = data.latest_failure(store, tenant)
        if trace_id is None:
            return JSONResponse(_NOT_FOUND, 404)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"tenant": tenant, "trace_id": trace_id})
        return RedirectResponse(f"/traces/{trace_id}", status_code=303)

    async def bad_request(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "bad_request", "detail": str(exc)}, 400)

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse(_NOT_FOUND, 404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        # Read-only: GET (and HEAD) is all there is.
        return JSONResponse({"error": "method_not_allowed"}, 405, headers={"allow": "GET, HEAD"})

    routes = [
        Route("/", tenants, methods=["GET"]),
        Route("/api/tenants", tenants, methods=["GET"]),
        Route("/runs", runs, methods=["GET"]),
        Route("/api/runs", runs, methods=["GET"]),
        Route("/traces/{trace_id}", trace, methods=["GET"]),
        Route("/api/traces/{trace_id}", trace, methods=["GET"]),
        Route("/failing", failing, methods=["GET"]),
        Route("/api/failing", failing, methods=["GET"]),
        Mount("/static", StaticFiles(packages=[("tenant_trace.local.web", "static")])),
    ]
    handlers = {BadRequest: bad_request, 404: not_found, 405: not_allowed}
    # Outermost, so that even a 500 gets the security headers.
    return Guard(Starlette(routes=routes, exception_handlers=handlers), verifier=verifier)
