"""Django through its own test clients (sync ``Client`` and async ``AsyncClient``): the tenant
in views, error handling and every streamed chunk, the root span, rejections, system checks,
a sync-only middleware before ours under ASGI, and a reused single-threaded WSGI server."""

from __future__ import annotations

import asyncio
import io
import threading
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from typing import Any, Literal, cast
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.util import FileWrapper, setup_testing_defaults

import django
import jwt
import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    JsonResponse,
    StreamingHttpResponse,
)
from django.test import AsyncClient, AsyncRequestFactory, Client, RequestFactory, override_settings
from django.urls import path
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import tenant_trace
from examples.common import JWT_SECRET, TENANT_OPTIONS
from tenant_trace import Rejection, RequestView
from tenant_trace.resolve.policy import build_policy
from tenant_trace_django import require_tenant
from tests.conftest import FAR_EXP, Spans

OURS = "tenant_trace_django.middleware.TenantTraceMiddleware"
SYNC_ONLY = "tests.django_settings.sync_only_middleware"
OPTIONAL = {**TENANT_OPTIONS, "required": False}

if not settings.configured:
    settings.configure(
        SECRET_KEY="tests-only",
        ALLOWED_HOSTS=["testserver", "127.0.0.1", ".example.com"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["tenant_trace_django"],
        MIDDLEWARE=[OURS],
        TENANT_TRACE=TENANT_OPTIONS,
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,  # leave the logging of the other test modules alone
    )
    django.setup()

tracer = trace.get_tracer("tests.django")
Mode = Literal["sync", "async"]
MODES = ["sync", "async"]


# --- the test site ------------------------------------------------------------------------


def seen(request: HttpRequest) -> dict[str, Any]:
    return {
        "tenant": tenant_trace.get_current_tenant(),
        "source": tenant_trace.get_tenant_source(),
        "request": request.tenant_id,  # type: ignore[attr-defined]
    }


def whoami(request: HttpRequest) -> JsonResponse:
    return JsonResponse(seen(request))


async def awhoami(request: HttpRequest) -> JsonResponse:
    return JsonResponse(seen(request))


def item(request: HttpRequest, item_id: int) -> JsonResponse:
    return JsonResponse({"item": item_id})


def boom(request: HttpRequest) -> JsonResponse:
    raise RuntimeError("boom")


async def aboom(request: HttpRequest) -> JsonResponse:
    raise RuntimeError("boom")


def missing(request: HttpRequest) -> JsonResponse:
    raise Http404("no such thing")


def required(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"tenant": require_tenant()})


def chunks(fail: bool = False) -> Iterator[bytes]:
    for i in range(3):
        with tracer.start_as_current_span(f"chunk-{i}"):
            chunk = f"{i}:{tenant_trace.get_current_tenant()}\n".encode()
        yield chunk
        if fail:
            raise RuntimeError("the body failed")


async def achunks() -> AsyncIterator[bytes]:
    for i in range(3):
        await asyncio.sleep(0)
        with tracer.start_as_current_span(f"chunk-{i}"):
            chunk = f"{i}:{tenant_trace.get_current_tenant()}\n".encode()
        yield chunk


def stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(chunks(), content_type="text/plain")


async def astream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(achunks(), content_type="text/plain")


def failing_stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(chunks(fail=True), content_type="text/plain")


async def slow_chunks() -> AsyncIterator[bytes]:
    yield f"0:{tenant_trace.get_current_tenant()}\n".encode()
    await asyncio.sleep(30)  # the client leaves before this ends
    yield b"never sent\n"


async def slow_stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(slow_chunks(), content_type="text/plain")


def download(request: HttpRequest) -> FileResponse:
    return FileResponse(io.BytesIO(b"file body"), content_type="text/plain")


def server_error(request: HttpRequest) -> JsonResponse:
    """handler500: the error page is built while the request's tenant is still current."""
    return JsonResponse(
        {"error": "server", "tenant": tenant_trace.get_current_tenant()}, status=500
    )


handler500 = server_error
urlpatterns = [
    path("whoami", whoami),
    path("awhoami", awhoami),
    path("items/<int:item_id>", item),
    path("boom", boom),
    path("aboom", aboom),
    path("missing", missing),
    path("required", required),
    path("stream", stream),
    path("astream", astream),
    path("failing-stream", failing_stream),
    path("slow-stream", slow_stream),
    path("download", download),
    path("health", whoami),
]


# --- helpers ------------------------------------------------------------------------------


def get(mode: Mode, url: str, **headers: str) -> Any:
    """A GET through Django's own test client of that mode (errors become 500 responses)."""
    if mode == "sync":
        return Client(raise_request_exception=False).get(url, headers=headers)
    return asyncio.run(AsyncClient(raise_request_exception=False).get(url, headers=headers))


def read_stream(
    mode: Mode, url: str, spans: Spans, **headers: str
) -> tuple[list[bytes], list[int]]:
    """The chunks of a streamed body and, after each, how many root spans had ended."""
    if mode == "sync":
        response = Client().get(url, headers=headers)
        received, ended = [], []
        for chunk in cast(StreamingHttpResponse, response):
            received.append(chunk)
            ended.append(len(spans.named("agent.run")))
        return received, ended

    async def read() -> tuple[list[bytes], list[int]]:
        response = await AsyncClient().get(url, headers=headers)
        received, ended = [], []
        async for chunk in cast(StreamingHttpResponse, response):
            received.append(chunk)
            ended.append(len(spans.named("agent.run")))
        return received, ended

    return asyncio.run(read())


def no_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    """A WSGI start_response that ignores what it is given."""


def token(tenant: str) -> str:
    claims = {"tenant_id": tenant, "exp": FAR_EXP}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def in_modes(*cases: tuple[Any, ...]) -> list[Any]:
    """Each case (an id, then its values) through both test clients. Django's AsyncClient
    sends its own ``Host: testserver`` beside one given in headers=, so cases that set Host
    run through the sync Client only (the real-server tests cover them under ASGI)."""
    return [
        pytest.param(mode, *values, id=f"{name}-{mode}")
        for name, *values in cases
        for mode in MODES
        if mode == "sync" or "Host" not in values[0]
    ]


def core_rejection(headers: dict[str, str]) -> Rejection:
    """What the core policy answers for these headers: every framework must send it as is."""
    view = RequestView("GET", "/whoami", headers=list(headers.items()))
    with pytest.raises(Rejection) as raised:
        build_policy(**TENANT_OPTIONS).resolve(view)
    return raised.value


def children(spans: Spans, root: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans.all() if s.parent and s.parent.span_id == root.context.span_id]


# --- the tenant where application code runs ----------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("url", ["/whoami", "/awhoami"])
def test_tenant_is_visible_in_sync_and_async_views(mode: Mode, url: str) -> None:
    """Sync and async views see the tenant under both handlers, and as request.tenant_id."""
    response = get(mode, url, **{"X-Tenant-ID": "acme"})
    assert response.status_code == 200
    assert response.json() == {"tenant": "acme", "source": "header", "request": "acme"}


@pytest.mark.parametrize(
    ("mode", "headers", "source"),
    in_modes(
        ("jwt", {"Authorization": f"Bearer {token('acme')}"}, "jwt"),
        ("subdomain", {"Host": "acme.example.com"}, "subdomain"),
        ("agreeing-sources", {"X-Tenant-ID": "acme", "Host": "acme.example.com"}, "header"),
    ),
)
def test_every_source_of_the_example_resolves(
    mode: Mode, headers: dict[str, str], source: str
) -> None:
    """The JWT claim and the subdomain resolve like the header; agreeing sources are fine."""
    response = get(mode, "/whoami", **headers)
    assert response.json() == {"tenant": "acme", "source": source, "request": "acme"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("url", ["/boom", "/aboom"])
def test_raising_view_is_an_error_span_and_handler500_sees_the_tenant(
    mode: Mode, url: str, spans: Spans
) -> None:
    """A view that raises: handler500 builds its page with the tenant current, and the root
    span gets ERROR status, the 500 and an exception event."""
    response = get(mode, url, **{"X-Tenant-ID": "acme"})
    assert response.status_code == 500
    assert response.json() == {"error": "server", "tenant": "acme"}
    root = spans.one("agent.run")
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes is not None
    assert root.attributes["http.response.status_code"] == 500
    assert root.attributes["error.type"] == "RuntimeError"
    events = [e for e in root.events if e.name == "exception"]
    assert len(events) == 1
    assert events[0].attributes is not None
    assert events[0].attributes["exception.type"] == "RuntimeError"


@pytest.mark.parametrize("mode", MODES)
def test_http404_from_a_view_is_not_a_server_error(mode: Mode, spans: Spans) -> None:
    """Http404 becomes a 404 response: recorded as such, with no ERROR and no exception."""
    response = get(mode, "/missing", **{"X-Tenant-ID": "acme"})
    assert response.status_code == 404
    root = spans.one("agent.run")
    assert root.status.status_code is StatusCode.UNSET
    assert root.events == ()
    assert root.attributes is not None
    assert root.attributes["http.response.status_code"] == 404


# --- the root span ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_one_root_span_with_the_request_attributes(mode: Mode, spans: Spans) -> None:
    """Exactly one agent.run SERVER span, with tenant, method, path, Django route and status."""
    response = get(mode, "/items/7?q=1", **{"X-Tenant-ID": "acme"})
    assert response.json() == {"item": 7}
    root = spans.one("agent.run")
    assert root.kind is SpanKind.SERVER
    assert root.parent is None
    assert dict(root.attributes or {}) == {
        "tenant.id": "acme",
        "tenant.source": "header",
        "http.request.method": "GET",
        "url.path": "/items/7",
        "http.route": "items/<int:item_id>",
        "http.response.status_code": 200,
    }


@pytest.mark.parametrize("mode", MODES)
def test_incoming_traceparent_continues_the_callers_trace(mode: Mode, spans: Spans) -> None:
    """The root span is a child of the caller's span in the caller's trace."""
    trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    get(mode, "/whoami", **{"X-Tenant-ID": "acme", "traceparent": f"00-{trace_id}-{parent_id}-01"})
    root = spans.one("agent.run")
    assert format(root.context.trace_id, "032x") == trace_id
    assert root.parent is not None
    assert format(root.parent.span_id, "016x") == parent_id


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("middleware", "outside"),
    [
        pytest.param([OURS, OURS], None, id="installed-twice"),
        pytest.param([SYNC_ONLY, OURS], "None,None", id="sync-only-before"),
        pytest.param([OURS, SYNC_ONLY], "acme,acme", id="sync-only-after"),
    ],
)
def test_one_root_span_whatever_the_middleware_around_it(
    mode: Mode, middleware: list[str], outside: str | None, spans: Spans
) -> None:
    """Installed twice or beside a sync-only middleware (which Django adapts under ASGI): one
    root span, the tenant in the view and inside ours, none outside ours."""
    with override_settings(MIDDLEWARE=middleware):
        response = get(mode, "/awhoami", **{"X-Tenant-ID": "acme"})
    assert response.json()["tenant"] == "acme"
    assert response.headers.get("X-Tenant-Outside") == outside
    assert spans.one("agent.run").attributes["tenant.id"] == "acme"  # type: ignore[index]


@pytest.mark.parametrize("mode", MODES)
def test_excluded_path_has_no_tenant_and_no_span(mode: Mode, spans: Spans) -> None:
    """/health is excluded: not resolved even when a tenant is named, not traced."""
    response = get(mode, "/health", **{"X-Tenant-ID": "acme"})
    assert response.json() == {"tenant": None, "source": None, "request": None}
    assert spans.named("agent.run") == []


@pytest.mark.parametrize("mode", MODES)
def test_tracing_off_keeps_the_tenant_only(mode: Mode, spans: Spans) -> None:
    """``"tracing": False``: the view still sees the tenant, and there is no span."""
    with override_settings(TENANT_TRACE={**TENANT_OPTIONS, "tracing": False}):
        response = get(mode, "/awhoami", **{"X-Tenant-ID": "acme"})
    assert response.json()["tenant"] == "acme"
    assert spans.all() == []


# --- streamed responses -------------------------------------------------------------------

STREAMS = [
    pytest.param("sync", "/stream", id="sync-iterator-wsgi-handler"),
    pytest.param("async", "/astream", id="async-iterator-asgi-handler"),
    pytest.param(
        "async",
        "/stream",
        id="sync-iterator-asgi-handler",
        marks=pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume"),
    ),
    pytest.param(
        "sync",
        "/astream",
        id="async-iterator-wsgi-handler",
        marks=pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume"),
    ),
]


@pytest.mark.parametrize(("mode", "url"), STREAMS)
def test_every_streamed_chunk_sees_the_tenant(mode: Mode, url: str, spans: Spans) -> None:
    """Each chunk is made with the tenant current and its span is a child of the root span,
    which ends after all of them."""
    received, _ = read_stream(mode, url, spans, **{"X-Tenant-ID": "acme"})
    assert received == [b"0:acme\n", b"1:acme\n", b"2:acme\n"]
    root = spans.one("agent.run")
    assert root.attributes is not None
    assert root.attributes["http.response.status_code"] == 200
    made = sorted(children(spans, root), key=lambda s: s.name)
    assert [s.name for s in made] == ["chunk-0", "chunk-1", "chunk-2"]
    assert all(s.attributes and s.attributes["tenant.id"] == "acme" for s in made)
    assert root.end_time is not None
    assert all(s.end_time is not None and s.end_time <= root.end_time for s in made)


@pytest.mark.parametrize(("mode", "url"), STREAMS[:2])
def test_root_span_ends_after_the_last_chunk(mode: Mode, url: str, spans: Spans) -> None:
    """While chunks are still coming the root span is open; it ends when the body ends."""
    _, ended = read_stream(mode, url, spans, **{"X-Tenant-ID": "acme"})
    assert ended == [0, 0, 0]
    assert len(spans.named("agent.run")) == 1


def wsgi_environ(url: str, **headers: str) -> dict[str, Any]:
    environ: dict[str, Any] = {"PATH_INFO": url}
    environ.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()})
    setup_testing_defaults(environ)
    return environ


@pytest.mark.parametrize(("mode", "url"), STREAMS[:2])
def test_stream_through_a_sync_only_middleware_before_ours(
    mode: Mode, url: str, spans: Spans
) -> None:
    """A sync-only middleware outside ours: every chunk still sees the tenant, and the root
    span still ends after the last one."""
    with override_settings(MIDDLEWARE=[SYNC_ONLY, OURS]):
        received, ended = read_stream(mode, url, spans, **{"X-Tenant-ID": "acme"})
    assert received == [b"0:acme\n", b"1:acme\n", b"2:acme\n"]
    assert ended == [0, 0, 0]
    assert len(spans.named("agent.run")) == 1


@pytest.mark.parametrize(("mode", "url"), STREAMS[:2])
def test_root_span_ends_with_the_body_even_if_the_server_never_closes(
    mode: Mode, url: str, spans: Spans
) -> None:
    """A server that reads the body to the end but never calls close(): the span ends anyway."""
    handler = BaseHandler()
    handler.load_middleware(is_async=mode == "async")
    headers = {"X-Tenant-ID": "acme"}
    if mode == "sync":
        response = handler.get_response(RequestFactory().get(url, headers=headers))
        received = list(response)
    else:

        async def read() -> tuple[Any, list[bytes]]:
            request = AsyncRequestFactory().get(url, headers=headers)
            response = cast(StreamingHttpResponse, await handler.get_response_async(request))
            return response, [chunk async for chunk in response]

        response, received = asyncio.run(read())
    assert received == [b"0:acme\n", b"1:acme\n", b"2:acme\n"]
    assert spans.one("agent.run").attributes["tenant.id"] == "acme"  # type: ignore[index]
    response.close()


def test_client_gone_mid_stream_sync(spans: Spans) -> None:
    """A WSGI server closes the response when the client goes away: the span still ends."""
    response = Client().get("/stream", headers={"X-Tenant-ID": "acme"})
    body = iter(response)
    assert next(body) == b"0:acme\n"
    assert spans.named("agent.run") == []
    response.close()
    assert len(spans.named("agent.run")) == 1
    assert [s.name for s in spans.all() if s.name.startswith("chunk")] == ["chunk-0"]


def test_client_gone_mid_stream_async(spans: Spans) -> None:
    """Django's ASGI handler closes the response after a disconnect: the span still ends."""

    async def disconnect() -> None:
        response = await AsyncClient().get("/astream", headers={"X-Tenant-ID": "acme"})
        body = cast(AsyncGenerator[bytes, None], aiter(cast(StreamingHttpResponse, response)))
        assert await anext(body) == b"0:acme\n"
        await body.aclose()
        assert spans.named("agent.run") == []
        response.close()  # as ASGIHandler.handle does after a cancelled send
        assert len(spans.named("agent.run")) == 1

    asyncio.run(disconnect())


@pytest.mark.parametrize(
    ("waiting", "events"),
    [
        pytest.param("body", ["exception"], id="while-the-body-waits"),
        pytest.param("send", [], id="while-the-server-sends"),
    ],
)
def test_client_disconnect_under_django_asgi_handler_ends_the_span(
    waiting: str, events: list[str], spans: Spans
) -> None:
    """Django's ASGI handler cancels a request whose client went away mid-stream: cancelled
    in the body, the span records it and ends; cancelled in the server's send, the span ends
    when the handler closes the response."""

    async def serve_until_the_client_leaves() -> list[bytes]:
        first_chunk_sent = asyncio.Event()
        received = 0
        bodies = []

        async def receive() -> dict[str, Any]:
            nonlocal received
            received += 1
            if received == 1:
                return {"type": "http.request", "body": b"", "more_body": False}
            await first_chunk_sent.wait()
            return {"type": "http.disconnect"}

        async def send(message: Mapping[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                bodies.append(message["body"])
                first_chunk_sent.set()
                if waiting == "send":
                    await asyncio.Event().wait()  # a client that stopped reading

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/slow-stream",
            "raw_path": b"/slow-stream",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"x-tenant-id", b"acme")],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        await asyncio.wait_for(ASGIHandler()(scope, receive, send), timeout=10)
        return bodies

    assert asyncio.run(serve_until_the_client_leaves()) == [b"0:acme\n"]
    root = spans.one("agent.run")
    assert root.attributes is not None
    assert root.attributes["tenant.id"] == "acme"
    assert [e.name for e in root.events] == events


def test_error_in_a_streamed_body_is_recorded(spans: Spans) -> None:
    """An exception while streaming marks the root span ERROR and ends it."""
    response = Client().get("/failing-stream", headers={"X-Tenant-ID": "acme"})
    body = iter(response)
    assert next(body) == b"0:acme\n"
    with pytest.raises(RuntimeError, match="the body failed"):
        next(body)
    root = spans.one("agent.run")
    assert root.status.status_code is StatusCode.ERROR
    assert [e.name for e in root.events] == ["exception"]


def test_file_response_keeps_the_file_wrapper_and_ends_on_close(spans: Spans) -> None:
    """A FileResponse still goes out through wsgi.file_wrapper; its span ends at close()."""
    environ = wsgi_environ("/download", **{"X-Tenant-ID": "acme"})
    environ["wsgi.file_wrapper"] = FileWrapper
    result: object = WSGIHandler()(environ, no_start)
    assert isinstance(result, FileWrapper)
    assert b"".join(result) == b"file body"
    assert spans.named("agent.run") == []
    result.close()
    assert spans.one("agent.run").attributes["tenant.id"] == "acme"  # type: ignore[index]


# --- rejections ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "headers", "status", "code"),
    in_modes(
        ("bad-header", {"X-Tenant-ID": "a" * 256}, 400, "invalid_tenant"),
        ("two-values", {"X-Tenant-ID": "acme, beta"}, 400, "duplicate_header"),
        ("bad-host", {"Host": "a.b.example.com"}, 400, "invalid_host"),
        ("missing", {}, 401, "missing_tenant"),
        ("bad-jwt", {"Authorization": "Bearer not-a-jwt"}, 401, "invalid_token"),
        (
            "header-vs-subdomain",
            {"X-Tenant-ID": "acme", "Host": "beta.example.com"},
            403,
            "tenant_conflict",
        ),
        (
            "header-vs-jwt",
            {"X-Tenant-ID": "acme", "Authorization": f"Bearer {token('beta')}"},
            403,
            "tenant_conflict",
        ),
    ),
)
def test_rejections_are_the_cores_byte_for_byte(
    mode: Mode, headers: dict[str, str], status: int, code: str, spans: Spans
) -> None:
    """Refused requests get the core's status, headers and JSON body, and no span."""
    expected = core_rejection(headers)
    assert (expected.status, expected.code) == (status, code)
    response = get(mode, "/whoami", **headers)
    assert response.status_code == status
    assert response.content == expected.body()
    for name, value in expected.response_headers():
        assert response[name] == value
    assert spans.named("agent.run") == []


@pytest.mark.parametrize("mode", MODES)
def test_rejection_raised_by_a_view_is_answered_like_the_cores(mode: Mode, spans: Spans) -> None:
    """require_tenant() in a view without a tenant: the core's 401, recorded on the span."""
    with override_settings(TENANT_TRACE=OPTIONAL):
        response = get(mode, "/required")
    expected = core_rejection({})
    assert response.status_code == 401
    assert response.content == expected.body()
    assert response["Content-Type"] == "application/json"
    root = spans.one("agent.run")
    assert root.attributes is not None
    assert "tenant.id" not in root.attributes
    assert root.attributes["http.response.status_code"] == 401
    assert root.status.status_code is StatusCode.UNSET


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({}, [], id="valid"),
        pytest.param(
            {"TENANT_TRACE": {"HEADER": "X-Tenant-ID", "Exclude_Paths": ["/health"]}},
            [],
            id="upper-case-keys",
        ),
        pytest.param({"TENANT_TRACE": ["X-Tenant-ID"]}, ["tenant_trace.E001"], id="not-a-dict"),
        pytest.param({"TENANT_TRACE": {"headers": "X"}}, ["tenant_trace.E002"], id="unknown-key"),
        pytest.param(
            {"TENANT_TRACE": {"header": "X", "HEADER": "Y"}}, ["tenant_trace.E002"], id="twice"
        ),
        pytest.param(
            {"TENANT_TRACE": {"required": True, "default": "acme"}},
            ["tenant_trace.E003"],
            id="required-with-default",
        ),
        pytest.param(
            {"TENANT_TRACE": {"jwt": {"algorithms": ["HS256"]}}},
            ["tenant_trace.E003"],
            id="jwt-without-key",
        ),
        pytest.param(
            {"TENANT_TRACE": {"jwt": {"key": "k", "algorithms": ["HS256"], "keys": 1}}},
            ["tenant_trace.E003"],
            id="jwt-unknown-argument",
        ),
        pytest.param({"TENANT_TRACE": {"pattern": "("}}, ["tenant_trace.E003"], id="bad-pattern"),
        pytest.param(
            {"TENANT_TRACE": {"resolver": "tests.nowhere.resolve"}},
            ["tenant_trace.E003"],
            id="resolver-not-importable",
        ),
        pytest.param(
            {"TENANT_TRACE": {"tracing": "yes"}}, ["tenant_trace.E003"], id="tracing-not-bool"
        ),
        pytest.param({"MIDDLEWARE": []}, ["tenant_trace.W001"], id="middleware-missing"),
        pytest.param(
            {"TENANT_TRACES": {"header": "X"}}, ["tenant_trace.W002"], id="misspelt-setting"
        ),
        pytest.param(
            {"TENANT_TRACE": 1, "MIDDLEWARE": []},
            ["tenant_trace.E001", "tenant_trace.W001"],
            id="both",
        ),
    ],
)
def test_system_checks(overrides: dict[str, Any], expected: list[str]) -> None:
    """The checks registered by the AppConfig report each kind of misconfiguration by id."""
    with override_settings(**overrides):
        found = [m.id for m in run_checks() if (m.id or "").startswith("tenant_trace.")]
    assert found == expected


def test_bad_settings_stop_the_middleware_from_loading() -> None:
    """Django refuses to load the middleware with an invalid TENANT_TRACE, saying why."""
    with (
        override_settings(TENANT_TRACE={"headers": "X"}),
        pytest.raises(ImproperlyConfigured, match="unknown tenant-trace option 'headers'"),
    ):
        Client().get("/whoami")


# --- a real single-threaded WSGI server ---------------------------------------------------


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_reused_wsgi_thread_forgets_the_previous_tenant(spans: Spans) -> None:
    """On a one-thread WSGI server, a request without a tenant after one with tenant A sees
    no tenant: not in the view, not in an outer sync middleware, not on its span."""
    with override_settings(TENANT_TRACE=OPTIONAL, MIDDLEWARE=[SYNC_ONLY, OURS]):
        app = get_wsgi_application()
    server = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/whoami"
        results = []
        for headers in ({"X-Tenant-ID": "tenant-a"}, {}):
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
                results.append((r.read(), r.headers["X-Tenant-Outside"]))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert results == [
        (b'{"tenant": "tenant-a", "source": "header", "request": "tenant-a"}', "None,None"),
        (b'{"tenant": null, "source": null, "request": null}', "None,None"),
    ]
    first, second = sorted(spans.named("agent.run"), key=lambda s: s.start_time or 0)
    assert first.attributes and first.attributes["tenant.id"] == "tenant-a"
    assert second.attributes is not None
    assert "tenant.id" not in second.attributes


async def tenant_from_query_async(request: RequestView) -> str | None:
    return None


def test_an_async_resolver_is_improperly_configured_under_wsgi() -> None:
    from tenant_trace_django.middleware import TenantTraceMiddleware

    resolver = "tests.test_django.tenant_from_query_async"
    with override_settings(TENANT_TRACE={"resolver": resolver}):
        with pytest.raises(ImproperlyConfigured, match=r"is async.*ASGI"):
            TenantTraceMiddleware(lambda request: JsonResponse({}))

        async def get_response(request: HttpRequest) -> JsonResponse:
            return JsonResponse({})

        assert TenantTraceMiddleware(get_response).async_mode
