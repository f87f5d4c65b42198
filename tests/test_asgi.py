"""The pure ASGI middleware on plain Starlette apps: context, root span, streaming,
background tasks, websockets, errors, cancellation and coexistence with other middleware."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket

import tenant_trace
from tenant_trace.server.asgi import TenantTraceASGIMiddleware
from tenant_trace.server.lifecycle import current_request
from tests.conftest import Spans

tracer = trace.get_tracer("tests.app")
seen: dict[str, Any] = {}


class Boom(Exception):
    pass


async def whoami(request: Request) -> JSONResponse:
    with tracer.start_as_current_span("work"):
        return JSONResponse({"tenant": tenant_trace.get_current_tenant()})


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[str]:
        for i in range(3):
            await asyncio.sleep(0)
            with tracer.start_as_current_span(f"chunk-{i}"):
                yield f"{i}:{tenant_trace.get_current_tenant()}\n"

    return StreamingResponse(chunks())


def background_job() -> None:
    seen["background"] = tenant_trace.get_current_tenant()
    with tracer.start_as_current_span("background"):
        pass


async def with_background(request: Request) -> Response:
    return PlainTextResponse("ok", background=BackgroundTask(background_job))


async def boom(request: Request) -> Response:
    raise Boom("kaput")


async def handled(request: Request) -> Response:
    raise KeyError("handled by the app")


async def on_key_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"handler_saw": tenant_trace.get_current_tenant()}, status_code=409)


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        with tracer.start_as_current_span("ws-message"):
            await websocket.send_text(f"{text}:{tenant_trace.get_current_tenant()}")


async def health(request: Request) -> Response:
    return JSONResponse(
        {"tenant": tenant_trace.get_current_tenant(), "request": bool(current_request())}
    )


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    seen["lifespan"] = "started"
    yield {"db": "ready"}


ROUTES = [
    Route("/whoami", whoami),
    Route("/items/{item_id}", whoami),
    Route("/stream", stream),
    Route("/background", with_background),
    Route("/boom", boom),
    Route("/handled", handled),
    Route("/health", health),
    WebSocketRoute("/ws", ws_endpoint),
]


def make_app(*middleware: Middleware, **options: Any) -> Starlette:
    options.setdefault("exclude_paths", ["/health"])
    return Starlette(
        routes=ROUTES,
        middleware=[*middleware, Middleware(TenantTraceASGIMiddleware, **options)],
        exception_handlers={KeyError: on_key_error},
        lifespan=lifespan,
    )


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app(), raise_server_exceptions=False)


def test_lifespan_passes_through_untouched(spans: Spans) -> None:
    """Startup runs, lifespan state reaches requests, and no span is made for it."""
    seen.pop("lifespan", None)
    with TestClient(make_app()) as client:
        assert client.get("/whoami", headers={"X-Tenant-ID": "acme"}).status_code == 200
    assert seen["lifespan"] == "started"
    assert [s.name for s in spans.named("agent.run")] == ["agent.run"]


def test_root_span_attributes(client: TestClient, spans: Spans) -> None:
    """The root span is SERVER with the tenant, method, path, route and status."""
    response = client.get("/items/42", headers={"X-Tenant-ID": "acme"})
    assert response.json() == {"tenant": "acme"}
    root = spans.one("agent.run")
    assert root.kind is SpanKind.SERVER
    assert root.parent is None
    assert dict(root.attributes or {}) == {
        "tenant.id": "acme",
        "tenant.source": "header",
        "http.request.method": "GET",
        "url.path": "/items/42",
        "http.route": "/items/{item_id}",
        "http.response.status_code": 200,
    }
    work = spans.one("work")
    assert work.parent is not None and work.parent.span_id == root.context.span_id
    assert (work.attributes or {})["tenant.id"] == "acme"


def test_traceparent_of_a_client_is_linked_not_continued(client: TestClient, spans: Spans) -> None:
    """A client's W3C traceparent neither joins its trace nor decides sampling: the root
    span starts a new trace, with a span link to the caller's context."""
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {"X-Tenant-ID": "acme", "traceparent": f"00-{trace_id}-{parent_id}-01"}
    client.get("/whoami", headers=headers)
    root = spans.one("agent.run")
    assert format(root.context.trace_id, "032x") != trace_id
    assert root.parent is None and root.kind is SpanKind.SERVER
    (link,) = root.links
    assert (format(link.context.trace_id, "032x"), format(link.context.span_id, "016x")) == (
        trace_id,
        parent_id,
    )


def test_traceparent_is_continued_where_callers_are_trusted(spans: Spans) -> None:
    """An incoming W3C traceparent makes the root span a child of the caller's span."""
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {"X-Tenant-ID": "acme", "traceparent": f"00-{trace_id}-{parent_id}-01"}
    TestClient(make_app(trust_traceparent=True)).get("/whoami", headers=headers)
    root = spans.one("agent.run")
    assert format(root.context.trace_id, "032x") == trace_id
    assert root.parent is not None and format(root.parent.span_id, "016x") == parent_id
    assert root.kind is SpanKind.SERVER and not root.links


def test_incoming_baggage_never_sets_the_tenant(spans: Spans) -> None:
    """A client-sent `baggage: tenant.id=...` is ignored: no tenant, 401 when required."""
    client = TestClient(make_app())
    response = client.get("/whoami", headers={"baggage": "tenant.id=victim"})
    assert response.status_code == 401
    optional = TestClient(make_app(required=False))
    assert optional.get("/whoami", headers={"baggage": "tenant.id=victim"}).json() == {
        "tenant": None
    }


def test_streamed_response_is_attributed_in_full(client: TestClient, spans: Spans) -> None:
    """Every chunk sees the tenant, chunk spans are children of the root, which ends last."""
    response = client.get("/stream", headers={"X-Tenant-ID": "acme"})
    assert response.text == "0:acme\n1:acme\n2:acme\n"
    root = spans.one("agent.run")
    for i in range(3):
        chunk = spans.one(f"chunk-{i}")
        assert chunk.parent is not None and chunk.parent.span_id == root.context.span_id
        assert (chunk.attributes or {})["tenant.id"] == "acme"
        assert root.end_time is not None and chunk.end_time is not None
        assert root.end_time >= chunk.end_time


def test_background_task_runs_with_the_tenant(client: TestClient, spans: Spans) -> None:
    """A background task sees the tenant and its span is a child of the root span."""
    seen.pop("background", None)
    assert client.get("/background", headers={"X-Tenant-ID": "acme"}).text == "ok"
    assert seen["background"] == "acme"
    root = spans.one("agent.run")
    job = spans.one("background")
    assert job.parent is not None and job.parent.span_id == root.context.span_id
    assert (job.attributes or {})["tenant.id"] == "acme"


def test_unhandled_exception_is_recorded(client: TestClient, spans: Spans) -> None:
    """An exception escaping the app: 500, ERROR status and an exception event."""
    response = client.get("/boom", headers={"X-Tenant-ID": "acme"})
    assert response.status_code == 500
    root = spans.one("agent.run")
    assert root.status.status_code is StatusCode.ERROR
    assert (root.attributes or {})["error.type"] == "Boom"
    assert [e.name for e in root.events] == ["exception"]
    assert (root.attributes or {})["tenant.id"] == "acme"


def test_tenant_is_visible_to_exception_handlers(client: TestClient) -> None:
    """An application exception handler runs inside the request's tenant context."""
    response = client.get("/handled", headers={"X-Tenant-ID": "acme"})
    assert response.status_code == 409
    assert response.json() == {"handler_saw": "acme"}


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        pytest.param({}, 401, "missing_tenant", id="missing"),
        pytest.param({"X-Tenant-ID": "a\tb"}, 400, "invalid_tenant", id="control-char"),
        pytest.param({"X-Tenant-ID": "x" * 256}, 400, "invalid_tenant", id="too-long"),
        pytest.param(
            [("X-Tenant-ID", "a"), ("X-Tenant-ID", "b")], 400, "duplicate_header", id="two-values"
        ),
    ],
)
def test_rejections_are_json(
    client: TestClient, spans: Spans, headers: Any, status: int, error: str
) -> None:
    """Bad or missing tenants get the core's status and JSON body, and no span."""
    response = client.get("/whoami", headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == error and body["detail"]
    assert spans.named("agent.run") == []


def test_excluded_path_is_neither_resolved_nor_traced(client: TestClient, spans: Spans) -> None:
    """/health answers without a tenant header, with no tenant and no span."""
    response = client.get("/health")
    assert response.json() == {"tenant": None, "request": False}
    assert spans.all() == []


def test_websocket_connection_has_one_root_span(client: TestClient, spans: Spans) -> None:
    """Messages see the tenant; one root span covers the whole connection."""
    with client.websocket_connect("/ws", headers={"X-Tenant-ID": "acme"}) as ws:
        for word in ("a", "b"):
            ws.send_text(word)
            assert ws.receive_text() == f"{word}:acme"
    root = spans.one("agent.run")
    assert (root.attributes or {})["tenant.id"] == "acme"
    assert "http.request.method" not in (root.attributes or {})
    messages = spans.named("ws-message")
    assert len(messages) == 2
    assert all(m.parent is not None and m.parent.span_id == root.context.span_id for m in messages)


def test_websocket_without_tenant_is_denied_with_json(client: TestClient) -> None:
    """A websocket handshake without a tenant gets the same 401 JSON as HTTP."""
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/ws"):
        pass
    assert denied.value.status_code == 401
    assert denied.value.json()["error"] == "missing_tenant"


def test_installed_twice_makes_one_root_span(spans: Spans) -> None:
    """A second copy of the middleware defers to the first: one agent.run per request."""
    client = TestClient(make_app(Middleware(TenantTraceASGIMiddleware)))
    assert client.get("/whoami", headers={"X-Tenant-ID": "acme"}).json() == {"tenant": "acme"}
    assert len(spans.named("agent.run")) == 1


def test_beside_opentelemetry_asgi_instrumentation(spans: Spans) -> None:
    """Under OpenTelemetry's ASGI middleware: one agent.run, an INTERNAL child of its
    server span, and the server span is stamped with the tenant too."""
    app = make_app()
    client = TestClient(OpenTelemetryMiddleware(app))
    client.get("/whoami", headers={"X-Tenant-ID": "acme"})
    root = spans.one("agent.run")
    server = [s for s in spans.all() if s.kind is SpanKind.SERVER]
    assert len(server) == 1
    assert root.kind is SpanKind.INTERNAL
    assert root.parent is not None and root.parent.span_id == server[0].context.span_id
    assert (server[0].attributes or {})["tenant.id"] == "acme"


class Passthrough(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["x-outer"] = "yes"
        return response


def test_base_http_middleware_outside_does_not_break_it(spans: Spans) -> None:
    """A BaseHTTPMiddleware placed outside ours: tenant still set, streaming still whole."""
    client = TestClient(make_app(Middleware(Passthrough)))
    response = client.get("/whoami", headers={"X-Tenant-ID": "acme"})
    assert response.json() == {"tenant": "acme"} and response.headers["x-outer"] == "yes"
    assert client.get("/stream", headers={"X-Tenant-ID": "beta"}).text == "0:beta\n1:beta\n2:beta\n"
    assert len(spans.named("agent.run")) == 2


def test_rejection_raised_by_the_app_is_answered_like_ours(spans: Spans) -> None:
    """A Rejection raised inside a view becomes the same JSON error, not a 500."""

    async def strict(request: Request) -> Response:
        raise tenant_trace.Rejection(403, "tenant_not_allowed", "no")

    app = Starlette(routes=[Route("/", strict)], middleware=[Middleware(TenantTraceASGIMiddleware)])
    response = TestClient(app).get("/", headers={"X-Tenant-ID": "acme"})
    assert response.status_code == 403
    assert response.json() == {"error": "tenant_not_allowed", "detail": "no"}
    assert (spans.one("agent.run").attributes or {})["http.response.status_code"] == 403


async def test_concurrent_requests_keep_their_own_tenants(spans: Spans) -> None:
    """200 overlapping requests in one event loop: each answer and span has its tenant."""

    async def slow(request: Request) -> JSONResponse:
        await asyncio.sleep(0.001 * (hash(request.headers["x-tenant-id"]) % 5))
        with tracer.start_as_current_span("slow-work"):
            await asyncio.sleep(0)
            return JSONResponse({"tenant": tenant_trace.get_current_tenant()})

    app = Starlette(routes=[Route("/", slow)], middleware=[Middleware(TenantTraceASGIMiddleware)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        tenants = [f"t{i % 20}" for i in range(200)]
        responses = await asyncio.gather(
            *(client.get("/", headers={"X-Tenant-ID": t}) for t in tenants)
        )
    assert [r.json()["tenant"] for r in responses] == tenants
    by_span = {s.context.span_id: s for s in spans.named("agent.run")}
    assert len(by_span) == 200
    for work in spans.named("slow-work"):
        assert work.parent is not None
        root = by_span[work.parent.span_id]
        assert (work.attributes or {})["tenant.id"] == (root.attributes or {})["tenant.id"]
    assert tenant_trace.get_current_tenant() is None


async def _never_returns(scope: Any, receive: Any, send: Any) -> None:
    seen["cancelled_tenant"] = tenant_trace.get_current_tenant()
    await asyncio.Event().wait()


async def test_cancellation_ends_span_and_resets_context_once(spans: Spans) -> None:
    """A request cancelled mid-flight (client gone, server shutting down) still ends its
    span once, records the cancellation and leaves the context clean."""
    middleware = TenantTraceASGIMiddleware(_never_returns)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-tenant-id", b"acme")]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        pass

    task = asyncio.create_task(middleware(scope, receive, send))
    await asyncio.sleep(0.01)
    assert seen["cancelled_tenant"] == "acme"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    root = spans.one("agent.run")
    assert root.status.status_code is StatusCode.ERROR
    assert (root.attributes or {})["error.type"] == "CancelledError"
    assert tenant_trace.get_current_tenant() is None and current_request() is None


async def test_client_disconnect_during_stream_ends_span(spans: Spans) -> None:
    """A client that disconnects mid-stream: the span ends once and the context resets."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        raise OSError("client went away")

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-tenant-id", b"acme")]}
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    with pytest.raises(OSError, match="went away"):
        await TenantTraceASGIMiddleware(app)(scope, receive, send)
    root = spans.one("agent.run")
    assert (root.attributes or {})["http.response.status_code"] == 200
    assert root.status.status_code is StatusCode.ERROR
    assert (
        json.dumps([m["type"] for m in messages]) == '["http.response.start", "http.response.body"]'
    )


@pytest.mark.parametrize("outcome", ["ok", "error", "rejected"])
async def test_context_is_reset_in_the_callers_task(spans: Spans, outcome: str) -> None:
    """Awaited directly (as httpx's ASGITransport does), the middleware leaves the caller's
    own context exactly as it found it, on every path."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert tenant_trace.get_current_tenant() == "acme"
        if outcome == "error":
            raise LookupError("app failed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    headers = [] if outcome == "rejected" else [(b"x-tenant-id", b"acme")]
    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    middleware = TenantTraceASGIMiddleware(app)
    if outcome == "error":
        with pytest.raises(LookupError):
            await middleware(scope, receive, send)
    else:
        await middleware(scope, receive, send)
    assert tenant_trace.get_current_tenant() is None
    assert current_request() is None
    assert not trace.get_current_span().get_span_context().is_valid


def test_tracing_option_must_be_a_boolean() -> None:
    """A truthy string such as "false" from a config file is refused, not read as True."""
    with pytest.raises(tenant_trace.ConfigurationError, match="tracing"):
        TenantTraceASGIMiddleware(whoami, tracing="false")  # type: ignore[arg-type]


def test_client_baggage_tenant_is_dropped_before_the_app_sees_it() -> None:
    """Other baggage entries go on to the app (and downstream); a client's tenant.id does not."""
    from opentelemetry import baggage

    async def show(request: Request) -> JSONResponse:
        return JSONResponse(dict(baggage.get_all()))

    app = Starlette(routes=[Route("/", show)], middleware=[Middleware(TenantTraceASGIMiddleware)])
    headers = {"X-Tenant-ID": "acme", "baggage": "tenant.id=victim,region=eu"}
    assert TestClient(app).get("/", headers=headers).json() == {"region": "eu"}
