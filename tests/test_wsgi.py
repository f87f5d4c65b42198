"""The pure WSGI middleware on bare WSGI callables: iteration and close(), reused threads,
errors, and a real single-threaded WSGI server."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.util import setup_testing_defaults

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import tenant_trace
from tenant_trace.server.wsgi import TenantTraceWSGIMiddleware
from tests.conftest import Spans

tracer = trace.get_tracer("tests.wsgi")


def environ(tenant: str | None = None, path: str = "/", **extra: str) -> dict[str, Any]:
    env: dict[str, Any] = {"PATH_INFO": path, **extra}
    if tenant is not None:
        env["HTTP_X_TENANT_ID"] = tenant
    setup_testing_defaults(env)
    return env


class Recorder:
    status: str = ""
    headers: list[tuple[str, str]] = []  # noqa: RUF012  (set per call)

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        self.status, self.headers = status, headers


def streaming_app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(3):
        with tracer.start_as_current_span(f"chunk-{i}"):
            yield f"{i}:{tenant_trace.get_current_tenant()}\n".encode()


def whoami(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(tenant_trace.get_current_tenant()).encode()]


def test_generator_body_is_attributed_until_close(spans: Spans) -> None:
    """Each chunk sees the tenant; the span ends only when the server calls close()."""
    app = TenantTraceWSGIMiddleware(streaming_app)
    body = app(environ("acme"), Recorder())
    chunks = list(body)
    assert chunks == [b"0:acme\n", b"1:acme\n", b"2:acme\n"]
    assert spans.named("agent.run") == []  # not closed yet
    body.close()  # type: ignore[attr-defined]
    root = spans.one("agent.run")
    assert root.kind is SpanKind.SERVER
    assert (root.attributes or {})["tenant.id"] == "acme"
    assert (root.attributes or {})["http.response.status_code"] == 200
    for i in range(3):
        chunk = spans.one(f"chunk-{i}")
        assert chunk.parent is not None and chunk.parent.span_id == root.context.span_id


def test_thread_context_is_never_touched(spans: Spans) -> None:
    """Even before close() (or if a server never calls it), the calling thread's context
    has no tenant: the next request on this thread cannot inherit it."""
    app = TenantTraceWSGIMiddleware(streaming_app)
    body = app(environ("acme"), Recorder())
    next(iter(body))
    assert tenant_trace.get_current_tenant() is None
    assert not trace.get_current_span().get_span_context().is_valid
    body.close()  # type: ignore[attr-defined]


def test_reused_thread_second_request_without_tenant(spans: Spans) -> None:
    """Request 1 with tenant A, request 2 on the same thread without one: it sees none."""
    app = TenantTraceWSGIMiddleware(whoami, required=False)
    first = app(environ("tenant-a"), Recorder())
    assert b"".join(first) == b"tenant-a"
    first.close()  # type: ignore[attr-defined]
    second = app(environ(), Recorder())
    assert b"".join(second) == b"None"
    second.close()  # type: ignore[attr-defined]


def test_exception_before_the_response(spans: Spans) -> None:
    """An app that raises: the exception reaches the server, the span is ERROR and ended."""

    def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        TenantTraceWSGIMiddleware(broken)(environ("acme"), Recorder())
    root = spans.one("agent.run")
    assert root.status.status_code is StatusCode.ERROR
    assert (root.attributes or {})["error.type"] == "ValueError"


def test_exception_midway_through_the_body(spans: Spans) -> None:
    """A generator that fails after a chunk: recorded, and close() still ends the span."""

    def failing(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"first"
        raise RuntimeError("midway")

    body = TenantTraceWSGIMiddleware(failing)(environ("acme"), Recorder())
    iterator = iter(body)
    assert next(iterator) == b"first"
    with pytest.raises(RuntimeError, match="midway"):
        next(iterator)
    body.close()  # type: ignore[attr-defined]
    root = spans.one("agent.run")
    assert root.status.status_code is StatusCode.ERROR


def test_close_of_the_inner_body_is_called(spans: Spans) -> None:
    """The application's own close() runs, inside the request context."""
    closed: list[str | None] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"x"

        def close(self) -> None:
            closed.append(tenant_trace.get_current_tenant())

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body()

    body = TenantTraceWSGIMiddleware(app)(environ("acme"), Recorder())  # type: ignore[arg-type]
    list(body)
    body.close()  # type: ignore[attr-defined]
    assert closed == ["acme"]
    assert len(spans.named("agent.run")) == 1


@pytest.mark.parametrize(
    ("env", "status", "error"),
    [
        pytest.param({}, "401 Unauthorized", "missing_tenant", id="missing"),
        pytest.param({"HTTP_X_TENANT_ID": "a\x00b"}, "400 Bad Request", "invalid_tenant", id="nul"),
        pytest.param(
            {"HTTP_X_TENANT_ID": "a,b"}, "400 Bad Request", "duplicate_header", id="joined-repeat"
        ),
    ],
)
def test_rejections(spans: Spans, env: dict[str, str], status: str, error: str) -> None:
    """Rejections answer with the status line and JSON body, and make no span."""
    recorder = Recorder()
    base = environ()
    base.update(env)
    body = b"".join(TenantTraceWSGIMiddleware(whoami)(base, recorder))
    assert recorder.status == status
    assert ("content-type", "application/json") in recorder.headers
    assert f'"error": "{error}"'.encode() in body
    assert spans.named("agent.run") == []


def test_excluded_path(spans: Spans) -> None:
    """Excluded paths run without tenant resolution or span."""
    app = TenantTraceWSGIMiddleware(whoami, exclude_paths=["/health"])
    assert b"".join(app(environ(path="/health"), Recorder())) == b"None"
    assert spans.all() == []


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def test_single_threaded_real_server_does_not_leak_between_requests(spans: Spans) -> None:
    """On wsgiref's single-threaded server, request 2 without a tenant sees none."""
    app = TenantTraceWSGIMiddleware(whoami, required=False)
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        first = urllib.request.Request(url, headers={"X-Tenant-ID": "tenant-a"})
        with urllib.request.urlopen(first) as response:
            assert response.read() == b"tenant-a"
        with urllib.request.urlopen(url) as response:
            assert response.read() == b"None"
    finally:
        server.shutdown()
        server.server_close()
    assert [(s.attributes or {}).get("tenant.id") for s in spans.named("agent.run")] == [
        "tenant-a",
        None,
    ]
