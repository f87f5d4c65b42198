"""The Flask extension through Flask's own test client: the tenant in views, error handlers,
teardown and streamed bodies; the root span; configuration; rejections; the example app."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
from flask import Blueprint, Flask, Response, g, request, stream_with_context
from flask.testing import FlaskClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from werkzeug.exceptions import InternalServerError
from werkzeug.test import EnvironBuilder, TestResponse

import tenant_trace
from examples import flask_app as flask_example
from examples.common import JWT_SECRET, MAX_DELAY, TENANT_OPTIONS
from examples.flask_app import app as example_app
from tenant_trace import ConfigurationError, Rejection, RequestView, TenantPolicy
from tenant_trace.resolve.policy import build_policy
from tenant_trace.server.wsgi import TenantTraceWSGIMiddleware
from tenant_trace_flask import TenantTrace, require_tenant
from tests.conftest import FAR_EXP, Spans

tracer = trace.get_tracer("tests.flask")

ACME = {"X-Tenant-ID": "acme"}
UNSET = "<unset>"
DENY = Rejection(403, "plan_expired", "the plan has expired", (("retry-after", "3600"),))

Seen = list[tuple[str, Any, Any]]  # (where, tenant in context, g.tenant_id)


class Teapot(Exception):
    """An application exception with an error handler of its own."""


def token(tenant: str) -> str:
    claims = {"tenant_id": tenant, "exp": FAR_EXP}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def tenant_from_query(view: RequestView) -> str | None:
    """A custom resolver, named by dotted path in TENANT_TRACE_RESOLVER."""
    return parse_qs(view.query).get("tenant", [None])[0]


def add_routes(app: Flask, seen: Seen) -> None:
    """Views, error handlers and a teardown function that all report the tenant they see."""

    def note(where: str) -> dict[str, Any]:
        tenant = tenant_trace.get_current_tenant()
        seen.append((where, tenant, g.get("tenant_id", UNSET)))
        return {"where": where, "tenant": tenant, "g": g.get("tenant_id", UNSET)}

    def chunks(with_request: bool) -> Iterator[str]:
        for i in range(3):
            tenant = tenant_trace.get_current_tenant()
            yield (
                f"{i}:{tenant}:{g.tenant_id}:{request.path}\n"
                if with_request
                else f"{i}:{tenant}\n"
            )
        with tracer.start_as_current_span("last-chunk"):
            last = f"last:{tenant_trace.get_current_tenant()}\n"
        yield last

    @app.route("/whoami", methods=["GET", "POST"])
    def whoami() -> dict[str, Any]:
        return {**note("view"), "source": tenant_trace.get_tenant_source()}

    @app.get("/async")
    async def async_view() -> dict[str, Any]:
        await asyncio.sleep(0)
        with tracer.start_as_current_span("in-async-view"):
            return note("async view")

    @app.post("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, Any]:
        return note("view")

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/teapot")
    def teapot() -> str:
        raise Teapot

    @app.get("/need")
    def need() -> dict[str, str]:
        return {"tenant": require_tenant()}

    @app.get("/deny")
    def deny() -> str:
        raise DENY

    @app.get("/stream")
    def stream() -> Response:
        return Response(chunks(with_request=False), mimetype="text/plain")

    @app.get("/stream-ctx")
    def stream_ctx() -> Response:
        return Response(stream_with_context(chunks(with_request=True)), mimetype="text/plain")

    @app.get("/stream-boom")
    def stream_boom() -> Response:
        def failing() -> Iterator[str]:
            yield f"0:{tenant_trace.get_current_tenant()}\n"
            raise RuntimeError("mid-stream")

        return Response(failing(), mimetype="text/plain")

    blueprint = Blueprint("agents", __name__, url_prefix="/v1")

    @blueprint.get("/agents/<name>")
    def agent(name: str) -> dict[str, Any]:
        return note("view")

    app.register_blueprint(blueprint)

    @app.errorhandler(Teapot)
    def on_teapot(exc: Teapot) -> tuple[dict[str, Any], int]:
        return note("errorhandler"), 418

    @app.errorhandler(404)
    def on_not_found(exc: Exception) -> tuple[dict[str, Any], int]:
        return note("errorhandler"), 404

    @app.errorhandler(InternalServerError)
    def on_server_error(exc: InternalServerError) -> tuple[dict[str, Any], int]:
        return note("errorhandler"), 500

    @app.teardown_request
    def teardown(exc: BaseException | None) -> None:
        note("teardown")


def build_app(
    seen: Seen | None = None, config: dict[str, Any] | None = None, **options: Any
) -> Flask:
    app = Flask(__name__)
    app.config.update(config or {})
    TenantTrace(app, **options)
    add_routes(app, [] if seen is None else seen)
    return app


def call(client: FlaskClient, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    """A request whose body is read and closed at once, as a server does."""
    return client.open(path, headers=headers, buffered=True, **kw)


def exceptions(span: ReadableSpan) -> list[Any]:
    return [
        (e.attributes or {}).get("exception.type") for e in span.events if e.name == "exception"
    ]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# --- the tenant wherever application code runs -------------------------------------------


def test_view_and_g_see_the_tenant(spans: Spans) -> None:
    """A view sees the request's tenant in context and in g.tenant_id."""
    response = call(build_app().test_client(), "/whoami", ACME)
    assert response.json == {"where": "view", "tenant": "acme", "g": "acme", "source": "header"}


def test_async_view_sees_the_tenant(spans: Spans) -> None:
    """An async view (run by asgiref) sees the tenant, and its spans are children of agent.run."""
    response = call(build_app().test_client(), "/async", ACME)
    assert response.json == {"where": "async view", "tenant": "acme", "g": "acme"}
    root, child = spans.one("agent.run"), spans.one("in-async-view")
    assert child.parent is not None and child.parent.span_id == root.context.span_id
    assert attrs(child)["tenant.id"] == "acme"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/teapot", 418, id="custom-exception"),
        pytest.param("/no-such-page", 404, id="not-found"),
        pytest.param("/boom", 500, id="unhandled-exception"),
    ],
)
def test_error_handlers_see_the_tenant(spans: Spans, path: str, status: int) -> None:
    """An errorhandler runs with the request's tenant in context and in g."""
    response = call(build_app().test_client(), path, ACME)
    assert response.status_code == status
    assert response.json == {"where": "errorhandler", "tenant": "acme", "g": "acme"}
    assert attrs(spans.one("agent.run"))["http.response.status_code"] == status


def test_teardown_request_sees_the_tenant(spans: Spans) -> None:
    """teardown_request functions run while the request's tenant is still current."""
    seen: Seen = []
    call(build_app(seen).test_client(), "/whoami", ACME)
    assert seen == [("view", "acme", "acme"), ("teardown", "acme", "acme")]


@pytest.mark.parametrize(
    ("path", "line"),
    [
        pytest.param("/stream", "{i}:acme\n", id="plain-generator"),
        pytest.param("/stream-ctx", "{i}:acme:acme:/stream-ctx\n", id="stream_with_context"),
    ],
)
def test_streamed_body_is_attributed_until_close(spans: Spans, path: str, line: str) -> None:
    """Every chunk names the tenant; agent.run ends after the last chunk, on close()."""
    seen: Seen = []
    response = build_app(seen).test_client().get(path, headers=ACME)
    body = response.get_data(as_text=True)
    assert body == "".join(line.format(i=i) for i in range(3)) + "last:acme\n"
    assert spans.named("agent.run") == []  # the whole body was read, but not closed yet
    response.close()
    root, last = spans.one("agent.run"), spans.one("last-chunk")
    assert last.parent is not None and last.parent.span_id == root.context.span_id
    assert attrs(last)["tenant.id"] == "acme"
    assert root.end_time is not None and last.end_time is not None
    assert root.end_time >= last.end_time
    assert attrs(root)["http.route"] == path
    teardowns = [s for s in seen if s[0] == "teardown"]
    assert teardowns and all(s == ("teardown", "acme", "acme") for s in teardowns)


def test_next_request_without_tenant_sees_none(spans: Spans) -> None:
    """After a request for tenant A, a request without a tenant sees none, in context or g."""
    client = build_app(required=False).test_client()
    first, second = call(client, "/whoami", ACME), call(client, "/whoami")
    assert (first.json["tenant"], first.json["g"]) == ("acme", "acme")
    assert (second.json["tenant"], second.json["g"]) == (None, None)
    assert [attrs(s).get("tenant.id") for s in spans.named("agent.run")] == ["acme", None]


# --- the root span -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "route", "status"),
    [
        pytest.param("GET", "/whoami", "/whoami", 200, id="static-rule"),
        pytest.param("POST", "/items/7", "/items/<int:item_id>", 200, id="variable-rule"),
        pytest.param("GET", "/v1/agents/planner", "/v1/agents/<name>", 200, id="blueprint"),
        pytest.param("GET", "/no-such-page", None, 404, id="no-rule"),
        pytest.param("DELETE", "/whoami", None, 405, id="method-not-allowed"),
    ],
)
def test_one_root_span_per_request(
    spans: Spans, method: str, path: str, route: str | None, status: int
) -> None:
    """One agent.run root span carries the tenant, the HTTP attributes and the URL rule."""
    response = call(build_app().test_client(), path, ACME, method=method)
    assert response.status_code == status
    root = spans.one("agent.run")
    assert root.parent is None
    assert root.kind is SpanKind.SERVER
    assert root.status.status_code is StatusCode.UNSET
    expected = {
        "tenant.id": "acme",
        "tenant.source": "header",
        "http.request.method": method,
        "url.path": path,
        "http.response.status_code": status,
        "http.route": route,
    }
    assert {k: attrs(root).get(k) for k in expected} == expected


@pytest.mark.parametrize("propagate", [False, True], ids=["flask-answers-500", "propagated"])
def test_raising_view_marks_the_span_as_error(spans: Spans, propagate: bool) -> None:
    """A raising view gives an ERROR span with one exception event, whoever answers it."""
    client = build_app(config={"PROPAGATE_EXCEPTIONS": propagate}).test_client()
    if propagate:
        with pytest.raises(RuntimeError, match="boom"):
            call(client, "/boom", ACME)
    else:
        assert call(client, "/boom", ACME).status_code == 500
    root = spans.one("agent.run")
    assert root.status.status_code is StatusCode.ERROR
    assert exceptions(root) == ["RuntimeError"]
    assert attrs(root).get("http.response.status_code") == (None if propagate else 500)


def test_exception_in_a_streamed_body_marks_the_span_as_error(spans: Spans) -> None:
    """A generator that raises mid-stream gives an ERROR span with one exception event."""
    response = build_app().test_client().get("/stream-boom", headers=ACME)
    with pytest.raises(RuntimeError, match="mid-stream"):
        response.get_data()
    response.close()
    root = spans.one("agent.run")
    assert root.status.status_code is StatusCode.ERROR
    assert exceptions(root) == ["RuntimeError"]


# --- configuration -----------------------------------------------------------------------

CONFIG_CASES = [
    pytest.param({}, {}, {"headers": ACME}, "acme", id="default-header"),
    pytest.param(
        {"TENANT_TRACE_HEADER": "X-Org"}, {}, {"headers": {"X-Org": "acme"}}, "acme", id="config"
    ),
    pytest.param(
        {"TENANT_TRACE_HEADER": "X-Org"}, {}, {"headers": ACME}, 401, id="config-over-default"
    ),
    pytest.param(
        {"TENANT_TRACE_HEADER": "X-Org"},
        {"header": "X-Team"},
        {"headers": {"X-Team": "acme"}},
        "acme",
        id="kwarg-over-config",
    ),
    pytest.param(
        {"TENANT_TRACE_HEADER": "X-Org"},
        {"header": "X-Team"},
        {"headers": {"X-Org": "acme"}},
        401,
        id="config-ignored-under-kwarg",
    ),
    pytest.param({"TENANT_TRACE_REQUIRED": False}, {}, {}, None, id="config-optional"),
    pytest.param(
        {"TENANT_TRACE_REQUIRED": False}, {"required": True}, {}, 401, id="kwarg-required"
    ),
    pytest.param({"TENANT_TRACE_DEFAULT": "public"}, {}, {}, "public", id="config-default"),
    pytest.param({"TENANT_TRACE_EXCLUDE_PATHS": ["/whoami"]}, {}, {}, None, id="config-exclude"),
    pytest.param(
        {"TENANT_TRACE_JWT": {"key": JWT_SECRET, "algorithms": ["HS256"]}},
        {},
        {"headers": {"Authorization": f"Bearer {token('acme')}"}},
        "acme",
        id="config-jwt",
    ),
    pytest.param(
        {"TENANT_TRACE_SUBDOMAIN": "example.com"},
        {},
        {"base_url": "http://acme.example.com"},
        "acme",
        id="config-subdomain",
    ),
    pytest.param(
        {"TENANT_TRACE_RESOLVER": f"{__name__}.tenant_from_query"},
        {},
        {"query_string": "tenant=acme"},
        "acme",
        id="config-resolver-path",
    ),
]


@pytest.mark.parametrize(("config", "options", "request_kwargs", "outcome"), CONFIG_CASES)
def test_option_precedence(
    spans: Spans,
    config: dict[str, Any],
    options: dict[str, Any],
    request_kwargs: dict[str, Any],
    outcome: str | int | None,
) -> None:
    """Keyword arguments win over app.config["TENANT_TRACE_*"], which wins over defaults."""
    response = call(build_app(config=config, **options).test_client(), "/whoami", **request_kwargs)
    if outcome == 401:
        assert (response.status_code, response.json["error"]) == (401, "missing_tenant")
    else:
        assert response.status_code == 200
        assert (response.json["tenant"], response.json["g"]) == (outcome, outcome)


@pytest.mark.parametrize(
    ("config", "options", "message"),
    [
        pytest.param({}, {"headr": "X-Org"}, "unknown tenant-trace option", id="unknown-kwarg"),
        pytest.param({"TENANT_TRACE_HEADR": "X"}, {}, "unknown tenant-trace setting", id="typo"),
        pytest.param({"TENANT_TRACE_DEFAULT": "a\nb"}, {}, "invalid default", id="bad-default"),
        pytest.param(
            {"TENANT_TRACE_REQUIRED": True, "TENANT_TRACE_DEFAULT": "public"},
            {},
            "makes no sense",
            id="required-with-default",
        ),
        pytest.param(
            {"TENANT_TRACE_RESOLVER": "tests.nowhere.resolve"},
            {},
            "cannot import the resolver",
            id="resolver-path",
        ),
        pytest.param(
            {"TENANT_TRACE_HEADER": "X-Org"},
            {"policy": TenantPolicy()},
            "either policy",
            id="policy-and-options",
        ),
    ],
)
def test_bad_configuration_fails_at_install(
    config: dict[str, Any], options: dict[str, Any], message: str
) -> None:
    """A wrong option or setting is a ConfigurationError at install time; nothing is wrapped."""
    app = Flask(__name__)
    app.config.update(config)
    with pytest.raises(ConfigurationError, match=message):
        TenantTrace(app, **options)
    assert "tenant_trace" not in app.extensions
    assert not isinstance(app.wsgi_app, TenantTraceWSGIMiddleware)


def test_one_extension_serves_several_apps(spans: Spans) -> None:
    """TenantTrace() then init_app on two apps: each app keeps its own config and state."""
    extension = TenantTrace(exclude_paths=["/health"])
    apps = []
    for name in ("one", "two"):
        app = Flask(name)
        app.config["TENANT_TRACE_HEADER"] = f"X-Tenant-{name}"
        extension.init_app(app)
        add_routes(app, [])
        app.add_url_rule("/health", "health", lambda: {"status": "ok"})
        apps.append(app)
    one, two = (app.test_client() for app in apps)
    assert call(one, "/whoami", {"X-Tenant-one": "acme"}).json["tenant"] == "acme"
    assert call(one, "/whoami", {"X-Tenant-two": "acme"}).status_code == 401
    assert call(two, "/whoami", {"X-Tenant-two": "globex"}).json["tenant"] == "globex"
    assert call(two, "/whoami", {"X-Tenant-one": "globex"}).status_code == 401
    assert call(one, "/health").status_code == call(two, "/health").status_code == 200
    states = [app.extensions["tenant_trace"] for app in apps]
    assert states[0] is not states[1]
    assert all(app.wsgi_app is state for app, state in zip(apps, states, strict=True))
    assert not hasattr(extension, "app")
    assert [attrs(s)["tenant.id"] for s in spans.named("agent.run")] == ["acme", "globex"]


def test_init_app_twice_on_one_app_is_refused(spans: Spans) -> None:
    """A second install on the same app raises and leaves one middleware in place."""
    extension = TenantTrace()
    app = Flask(__name__)
    add_routes(app, [])
    extension.init_app(app)
    installed = app.wsgi_app
    with pytest.raises(ConfigurationError, match="already installed"):
        extension.init_app(app)
    with pytest.raises(ConfigurationError, match="already installed"):
        TenantTrace(app)
    assert app.wsgi_app is installed
    assert call(app.test_client(), "/whoami", ACME).json["tenant"] == "acme"
    assert attrs(spans.one("agent.run"))["tenant.id"] == "acme"


# --- rejections --------------------------------------------------------------------------

REJECTIONS = [
    pytest.param(
        {"environ_overrides": {"HTTP_X_TENANT_ID": "acme\r\nX-Admin: 1"}}, 400, id="cr-lf"
    ),
    pytest.param({}, 401, id="missing"),
    pytest.param({"headers": {"Authorization": "Bearer not-a-jwt"}}, 401, id="bad-token"),
    pytest.param(
        {"headers": {**ACME, "Authorization": f"Bearer {token('globex')}"}},
        403,
        id="header-vs-jwt",
    ),
    pytest.param(
        {"headers": ACME, "base_url": "http://globex.example.com"}, 403, id="header-vs-subdomain"
    ),
]


def core_rejection(**request_kwargs: Any) -> Rejection:
    """What the core policy of the examples says about this request."""
    environ = EnvironBuilder(**request_kwargs).get_environ()
    with pytest.raises(Rejection) as caught:
        build_policy(**TENANT_OPTIONS).resolve(RequestView.from_wsgi(environ))
    return caught.value


def assert_answers(response: TestResponse, rejection: Rejection) -> None:
    assert response.status_code == rejection.status
    assert response.data == rejection.body()
    for name, value in rejection.response_headers():
        assert response.headers[name] == value


@pytest.mark.parametrize(("request_kwargs", "status"), REJECTIONS)
def test_rejections_match_the_core(
    spans: Spans, request_kwargs: dict[str, Any], status: int
) -> None:
    """The example app refuses bad tenant input with the core's own status, headers and body."""
    expected = core_rejection(path="/chat", method="POST", **request_kwargs)
    assert expected.status == status
    client = example_app.test_client()
    assert_answers(
        call(client, "/chat", method="POST", json={"message": "hi"}, **request_kwargs), expected
    )
    assert spans.all() == []


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        pytest.param("/need", {}, core_rejection(), id="require_tenant"),
        pytest.param("/deny", ACME, DENY, id="custom-rejection"),
    ],
)
def test_rejection_raised_in_a_view(
    spans: Spans, path: str, headers: dict[str, str], expected: Rejection
) -> None:
    """A Rejection raised by a view is answered with its status, headers and JSON body."""
    response = call(build_app(required=False).test_client(), path, headers)
    assert_answers(response, expected)
    root = spans.one("agent.run")
    assert attrs(root)["http.response.status_code"] == expected.status
    assert root.status.status_code is StatusCode.UNSET
    assert exceptions(root) == []


def test_view_rejection_is_byte_identical_to_the_middleware(spans: Spans) -> None:
    """require_tenant() in a view answers exactly what the middleware answers itself."""
    by_middleware = call(build_app().test_client(), "/need")
    by_view = call(build_app(required=False).test_client(), "/need")
    assert by_view.status_code == by_middleware.status_code == 401
    assert by_view.data == by_middleware.data
    assert by_view.headers["Content-Type"] == by_middleware.headers["Content-Type"]
    assert len(spans.named("agent.run")) == 1  # only the view's request got that far


# --- the example app ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "wait"),
    [
        pytest.param({"message": "hi"}, 0.0, id="no-delay"),
        pytest.param({"message": "hi", "delay": 0.05}, 0.05, id="delay"),
        pytest.param({"message": "hi", "delay": -1}, 0.0, id="negative-delay"),
        pytest.param({"message": "hi", "delay": 60}, MAX_DELAY, id="capped-delay"),
    ],
)
def test_example_chat(
    spans: Spans, monkeypatch: pytest.MonkeyPatch, body: dict[str, Any], wait: float
) -> None:
    """POST /chat answers for the request's tenant, waiting at most MAX_DELAY, and every span
    of the agent's run is in the request's trace with its tenant."""
    waits: list[float] = []
    monkeypatch.setattr(flask_example, "time", SimpleNamespace(sleep=waits.append))
    response = call(example_app.test_client(), "/chat", ACME, method="POST", json=body)
    assert waits == [wait]
    assert response.status_code == 200
    assert response.json["tenant"] == "acme"
    assert "acme" in response.json["response"]
    root = spans.one("agent.run")
    assert attrs(root)["http.route"] == "/chat"
    assert len(spans.all()) > 1
    for span in spans.all():
        assert span.context.trace_id == root.context.trace_id, span.name
        assert attrs(span)["tenant.id"] == "acme", span.name


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"data": "not json"}, id="not-json"),
        pytest.param({"json": ["hi"]}, id="not-an-object"),
        pytest.param({"json": {"message": 1}}, id="message-not-a-string"),
        pytest.param({"json": {"message": "hi", "delay": "1"}}, id="delay-not-a-number"),
        pytest.param({"json": {"message": "hi", "delay": True}}, id="delay-a-boolean"),
    ],
)
def test_example_chat_refuses_a_bad_body(spans: Spans, kwargs: dict[str, Any]) -> None:
    """A malformed /chat body is a 422 with a JSON error, never a 500."""
    response = call(example_app.test_client(), "/chat", ACME, method="POST", **kwargs)
    assert (response.status_code, response.json["error"]) == (422, "invalid_body")


def test_example_stream_and_health(spans: Spans) -> None:
    """GET /stream names the tenant in every chunk; GET /health needs no tenant, has no span."""
    client = example_app.test_client()
    stream = call(client, "/stream", ACME)
    assert stream.text.splitlines() == [f"chunk {i} for acme" for i in range(5)]
    assert call(client, "/health").json == {"status": "ok"}
    assert attrs(spans.one("agent.run"))["http.route"] == "/stream"
