"""The FastAPI adapter and the FastAPI example app, through FastAPI's TestClient."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.trace import SpanKind, StatusCode

import tenant_trace
from examples.common import JWT_SECRET
from tenant_trace_fastapi import TenantTraceMiddleware, get_tenant, instrument_app, require_tenant
from tests.conftest import FAR_EXP, Spans

tracer = trace.get_tracer("tests.fastapi")
seen: dict[str, Any] = {}


class OutOfCredits(Exception):
    pass


def make_app(**options: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(TenantTraceMiddleware, **options)

    @app.get("/async/{item_id}")
    async def async_view(item_id: int, tenant: str = Depends(require_tenant)) -> dict[str, Any]:
        return {"tenant": tenant, "context": tenant_trace.get_current_tenant()}

    @app.get("/sync")
    def sync_view(tenant: str | None = Depends(get_tenant)) -> dict[str, Any]:
        # FastAPI runs sync views in a worker thread: the tenant must follow.
        with tracer.start_as_current_span("sync-work"):
            return {"tenant": tenant, "context": tenant_trace.get_current_tenant()}

    @app.get("/required")
    async def required(tenant: str = Depends(require_tenant)) -> dict[str, Any]:
        return {"tenant": tenant}

    @app.get("/background")
    async def background(tasks: BackgroundTasks) -> dict[str, str]:
        def job() -> None:
            seen["job"] = tenant_trace.get_current_tenant()
            with tracer.start_as_current_span("job"):
                pass

        tasks.add_task(job)
        return {"status": "queued"}

    @app.get("/credits")
    async def credits() -> None:
        raise OutOfCredits

    @app.exception_handler(OutOfCredits)
    async def out_of_credits(request: Request, exc: OutOfCredits) -> JSONResponse:
        return JSONResponse({"tenant": tenant_trace.get_current_tenant()}, status_code=402)

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("crash")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"tenant": tenant_trace.get_current_tenant()})
        await websocket.close()

    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app(required=False), raise_server_exceptions=False)


def test_async_view_and_route_template(client: TestClient, spans: Spans) -> None:
    """An async view sees the tenant; the root span has FastAPI's route template."""
    response = client.get("/async/7", headers={"X-Tenant-ID": "acme"})
    assert response.json() == {"tenant": "acme", "context": "acme"}
    root = spans.one("agent.run")
    assert (root.attributes or {})["http.route"] == "/async/{item_id}"
    assert (root.attributes or {})["tenant.id"] == "acme"


def test_sync_view_runs_in_a_thread_with_the_tenant(client: TestClient, spans: Spans) -> None:
    """A sync view (threadpool) sees the tenant and its spans are children of the root."""
    assert client.get("/sync", headers={"X-Tenant-ID": "acme"}).json() == {
        "tenant": "acme",
        "context": "acme",
    }
    root = spans.one("agent.run")
    work = spans.one("sync-work")
    assert work.context.trace_id == root.context.trace_id
    assert (work.attributes or {})["tenant.id"] == "acme"


def test_get_tenant_is_none_without_a_tenant(client: TestClient) -> None:
    """With an optional tenant, Depends(get_tenant) gives None."""
    assert client.get("/sync").json() == {"tenant": None, "context": None}


def test_require_tenant_answers_401_json(client: TestClient) -> None:
    """Depends(require_tenant) without a tenant gives the core's 401 JSON body."""
    response = client.get("/required")
    assert response.status_code == 401
    assert response.json() == {
        "error": "missing_tenant",
        "detail": "the request does not name a tenant",
    }


def test_background_tasks_keep_the_tenant(client: TestClient, spans: Spans) -> None:
    """FastAPI BackgroundTasks run with the tenant, as children of the root span."""
    seen.pop("job", None)
    client.get("/background", headers={"X-Tenant-ID": "acme"})
    assert seen["job"] == "acme"
    root, job = spans.one("agent.run"), spans.one("job")
    assert job.context.trace_id == root.context.trace_id
    assert (job.attributes or {})["tenant.id"] == "acme"


def test_exception_handler_sees_the_tenant(client: TestClient, spans: Spans) -> None:
    """An @app.exception_handler runs in the tenant's context."""
    response = client.get("/credits", headers={"X-Tenant-ID": "acme"})
    assert response.status_code == 402
    assert response.json() == {"tenant": "acme"}
    assert (spans.one("agent.run").attributes or {})["http.response.status_code"] == 402


def test_unhandled_exception_marks_the_root_span(client: TestClient, spans: Spans) -> None:
    """An unhandled error: 500 to the client, ERROR and an exception event on agent.run."""
    assert client.get("/crash", headers={"X-Tenant-ID": "acme"}).status_code == 500
    root = spans.one("agent.run")
    assert root.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in root.events)


def test_websocket(client: TestClient, spans: Spans) -> None:
    """A FastAPI websocket handler sees the tenant; one root span for the connection."""
    with client.websocket_connect("/ws", headers={"X-Tenant-ID": "acme"}) as ws:
        assert ws.receive_json() == {"tenant": "acme"}
    assert (spans.one("agent.run").attributes or {})["tenant.id"] == "acme"


def test_every_span_of_the_request_has_the_tenant(client: TestClient, spans: Spans) -> None:
    """Including the HTTP server span FastAPI opens before our middleware runs."""
    client.get("/sync", headers={"X-Tenant-ID": "acme"})
    assert spans.all()
    assert {(s.attributes or {}).get("tenant.id") for s in spans.all()} == {"acme"}


def test_beside_opentelemetry_fastapi_instrumentation(spans: Spans) -> None:
    """With FastAPIInstrumentor: one agent.run, an INTERNAL child of its server span."""
    app = make_app()
    FastAPIInstrumentor.instrument_app(app)
    try:
        TestClient(app).get("/async/1", headers={"X-Tenant-ID": "acme"})
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
    root = spans.one("agent.run")
    assert root.kind is SpanKind.INTERNAL
    parent = next(
        s for s in spans.all() if root.parent and s.context.span_id == root.parent.span_id
    )
    assert parent.kind is SpanKind.SERVER
    assert all((s.attributes or {}).get("tenant.id") == "acme" for s in spans.all())


# The example app: header, JWT and subdomain sources, with conflicts refused.


@pytest.fixture
def example() -> TestClient:
    from examples.fastapi_app import app

    return TestClient(app)


def token(tenant: Any, **claims: Any) -> str:
    return jwt.encode({"tenant_id": tenant, "exp": FAR_EXP, **claims}, JWT_SECRET, "HS256")


@pytest.mark.parametrize(
    ("headers", "status", "tenant_or_error"),
    [
        pytest.param({"X-Tenant-ID": "acme"}, 200, "acme", id="header"),
        pytest.param({"Authorization": f"Bearer {token('beta')}"}, 200, "beta", id="jwt"),
        pytest.param({"Host": "gamma.example.com"}, 200, "gamma", id="subdomain"),
        pytest.param(
            {"X-Tenant-ID": "acme", "Authorization": f"Bearer {token('acme')}"},
            200,
            "acme",
            id="agree",
        ),
        pytest.param(
            {"X-Tenant-ID": "acme", "Authorization": f"Bearer {token('beta')}"},
            403,
            "tenant_conflict",
            id="header-vs-jwt",
        ),
        pytest.param(
            {"Host": "gamma.example.com", "X-Tenant-ID": "acme"},
            403,
            "tenant_conflict",
            id="host-vs-header",
        ),
        pytest.param({}, 401, "missing_tenant", id="none"),
        pytest.param({"Authorization": "Bearer not-a-token"}, 401, "invalid_token", id="bad-jwt"),
        pytest.param(
            {"Authorization": f"Bearer {token('beta', exp=time.time() - 5)}"},
            401,
            "expired_token",
            id="expired",
        ),
        pytest.param({"Host": "a.b.example.com"}, 400, "invalid_host", id="nested-subdomain"),
        pytest.param({"X-Tenant-ID": "bad\r\nid"}, 400, "invalid_tenant", id="crlf"),
    ],
)
def test_example_chat(
    example: TestClient, headers: dict[str, str], status: int, tenant_or_error: str
) -> None:
    """POST /chat resolves the tenant from each source and refuses conflicts and bad input."""
    response = example.post("/chat", json={"message": "hi"}, headers=headers)
    assert response.status_code == status, response.text
    body = response.json()
    if status == 200:
        assert body["tenant"] == tenant_or_error
        assert tenant_or_error in body["response"]
    else:
        assert body["error"] == tenant_or_error


def test_example_stream_and_health(example: TestClient, spans: Spans) -> None:
    """/stream names the tenant in every chunk; /health needs no tenant and makes no span."""
    lines = example.get("/stream", headers={"X-Tenant-ID": "acme"}).text.splitlines()
    assert len(lines) == 5 and all(line.endswith("for acme") for line in lines)
    spans.clear()
    assert example.get("/health").json() == {"status": "ok"}
    assert spans.named("agent.run") == []


def test_instrument_app_lets_the_catch_all_handler_see_the_tenant(spans: Spans) -> None:
    """With add_middleware the catch-all 500 handler runs after the context ended (the tenant
    is on request.state); installed by instrument_app, it runs inside it."""

    def app_with_handler() -> FastAPI:
        app = FastAPI()

        @app.get("/crash")
        async def crash() -> None:
            raise RuntimeError("crash")

        @app.exception_handler(Exception)
        async def catch_all(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse(
                {"context": tenant_trace.get_current_tenant(), "state": request.state.tenant_id},
                status_code=500,
            )

        return app

    added = app_with_handler()
    added.add_middleware(TenantTraceMiddleware)
    response = TestClient(added, raise_server_exceptions=False).get(
        "/crash", headers={"X-Tenant-ID": "acme"}
    )
    assert response.json() == {"context": None, "state": "acme"}

    wrapped = app_with_handler()
    instrument_app(wrapped)
    spans.clear()
    response = TestClient(wrapped, raise_server_exceptions=False).get(
        "/crash", headers={"X-Tenant-ID": "acme"}
    )
    assert response.status_code == 500
    assert response.json() == {"context": "acme", "state": "acme"}
    root = spans.one("agent.run")
    assert root.status.status_code is StatusCode.ERROR
    assert (root.attributes or {})["http.response.status_code"] == 500
    assert (root.attributes or {})["http.route"] == "/crash"
    with pytest.raises(tenant_trace.ConfigurationError, match="already"):
        instrument_app(wrapped)


def test_instrument_app_checks_its_options_at_once() -> None:
    """A bad option fails at install time, not at the first request."""
    with pytest.raises(tenant_trace.ConfigurationError):
        instrument_app(FastAPI(), required="yes")
