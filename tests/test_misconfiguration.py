"""Misconfiguration is loud, and never a 500 (the hardening issue, items 8 and 10): a missing
``init()``, ``require_tenant`` where the middleware does not run, a misspelt option, an
``async def`` resolver, and an installed instrumentation that cannot work."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from flask import Flask
from opentelemetry import trace
from werkzeug.test import Client

import tenant_trace
from tenant_trace import ConfigurationError, RequestView
from tenant_trace.export import instrument
from tenant_trace.server.wsgi import TenantTraceWSGIMiddleware
from tenant_trace_fastapi import TenantTraceMiddleware, instrument_app
from tenant_trace_fastapi import require_tenant as fastapi_require_tenant
from tenant_trace_flask import TenantTrace
from tenant_trace_flask import require_tenant as flask_require_tenant

MISSING = {"error": "missing_tenant", "detail": "the request does not name a tenant"}


def fastapi_app(**options: Any) -> FastAPI:
    app = FastAPI()
    if options:
        app.add_middleware(TenantTraceMiddleware, **options)

    @app.get("/health")
    @app.get("/me")
    async def me(tenant: str = Depends(fastapi_require_tenant)) -> dict[str, str]:
        return {"tenant": tenant}

    return app


# --- a missing init() -----------------------------------------------------------------------


def test_a_middleware_without_an_sdk_provider_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    app = fastapi_app(tracer_provider=trace.NoOpTracerProvider())
    with caplog.at_level(logging.WARNING, "tenant_trace"), TestClient(app) as client:
        for _ in range(3):
            assert client.get("/me", headers={"X-Tenant-ID": "acme"}).json() == {"tenant": "acme"}
    warnings = [r for r in caplog.records if "tenant_trace.init()" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "NoOpTracerProvider" in warnings[0].getMessage()


def test_with_the_sdk_provider_there_is_no_such_warning(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, "tenant_trace"),
        TestClient(fastapi_app(header="X-Tenant-ID")) as client,
    ):
        assert client.get("/me", headers={"X-Tenant-ID": "acme"}).status_code == 200
    assert not [r for r in caplog.records if "tenant_trace.init()" in r.getMessage()]


# --- require_tenant where the middleware does not run --------------------------------------


def test_fastapi_require_tenant_without_the_middleware_is_a_json_401(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, "tenant_trace"), TestClient(fastapi_app()) as client:
        response = client.get("/me")
    assert response.status_code == 401
    assert response.json() == {"detail": MISSING["detail"]}
    assert any("add_middleware" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("install", ["add_middleware", "instrument_app"])
def test_fastapi_require_tenant_on_an_excluded_path_is_the_usual_401(install: str) -> None:
    if install == "add_middleware":
        app = fastapi_app(exclude_paths=["/health"])
    else:
        app = fastapi_app()
        instrument_app(app, exclude_paths=["/health"])
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/health")
        assert (response.status_code, response.json()) == (401, MISSING)
        assert client.get("/me", headers={"X-Tenant-ID": "acme"}).json() == {"tenant": "acme"}


def flask_app(**options: Any) -> Flask:
    app = Flask(__name__)

    @app.get("/health")
    @app.get("/me")
    def me() -> dict[str, str]:
        return {"tenant": flask_require_tenant()}

    if options:
        TenantTrace(app, **options)
    return app


def test_flask_require_tenant_without_the_extension_is_the_usual_401(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, "tenant_trace"):
        response = flask_app().test_client().get("/me")
    assert (response.status_code, response.json) == (401, MISSING)
    assert any("TenantTrace(app)" in r.getMessage() for r in caplog.records)


def test_flask_require_tenant_on_an_excluded_path_is_the_usual_401() -> None:
    client = flask_app(exclude_paths=["/health"]).test_client()
    response = client.get("/health")
    assert (response.status_code, response.json) == (401, MISSING)
    assert client.get("/me", headers={"X-Tenant-ID": "acme"}).json == {"tenant": "acme"}


def test_wsgi_require_tenant_on_an_excluded_path_is_the_usual_401() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        tenant = tenant_trace.require_tenant()
        start_response("200 OK", [("content-type", "text/plain")])
        return [tenant.encode()]

    client = Client(TenantTraceWSGIMiddleware(app, exclude_paths=["/health"]))
    response = client.get("/health")
    assert (response.status_code, response.json) == (401, MISSING)
    assert client.get("/x", headers={"X-Tenant-ID": "acme"}).text == "acme"


# --- a misspelt option ------------------------------------------------------------------------


def test_a_misspelt_fastapi_option_names_itself_and_the_valid_ones() -> None:
    app = fastapi_app(heder="X-Tenant-ID")
    with pytest.raises(ConfigurationError) as raised, TestClient(app):
        pass
    message = str(raised.value)
    assert "'heder' (did you mean 'header'?)" in message
    assert "exclude_paths" in message
    assert "__init__()" not in message


# --- an async def resolver ----------------------------------------------------------------


async def tenant_from_query(view: RequestView) -> str | None:
    return parse_qs(view.query).get("tenant", [None])[0]


def test_an_async_resolver_is_awaited_by_the_asgi_middleware() -> None:
    with TestClient(fastapi_app(resolver=tenant_from_query)) as client:
        assert client.get("/me?tenant=acme").json() == {"tenant": "acme"}
        assert client.get("/me").status_code == 401


def test_an_async_resolver_in_a_chain_is_awaited() -> None:
    app = fastapi_app(resolver=tenant_from_query, header="X-Tenant-ID")
    with TestClient(app) as client:
        assert client.get("/me?tenant=acme", headers={"X-Tenant-ID": "acme"}).json() == {
            "tenant": "acme"
        }
        assert client.get("/me?tenant=acme", headers={"X-Tenant-ID": "globex"}).status_code == 403


@pytest.mark.parametrize("chained", [False, True])
def test_an_async_resolver_under_wsgi_is_a_configuration_error(chained: bool) -> None:
    options: dict[str, Any] = {"resolver": tenant_from_query}
    if chained:
        options["header"] = "X-Tenant-ID"
    with pytest.raises(ConfigurationError, match=r"tenant_from_query.*is async.*ASGI"):
        flask_app(**options)
    with pytest.raises(ConfigurationError, match="is async"):
        TenantTraceWSGIMiddleware(lambda e, s: [], **options)


# --- an installed instrumentation that cannot work ----------------------------------------


def test_an_instrumentation_that_does_not_import_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    package = tmp_path / "tt_broken_instrumentation"
    package.mkdir()
    (package / "__init__.py").write_text("import tt_a_dependency_that_is_not_there\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        instrument, "KNOWN", (("broken", "tt_broken_instrumentation", "Instrumentor", "tt-broken"),)
    )
    with caplog.at_level(logging.INFO, "tenant_trace"):
        assert instrument.auto_instrument() == []
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = warning.getMessage()
    assert "broken instrumentation is installed but does not import" in message
    assert "tt_a_dependency_that_is_not_there" in message
    assert "pip install -U tt-broken" in message
    sys.modules.pop("tt_broken_instrumentation", None)


def test_a_pydantic_ai_that_does_not_import_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """pydantic-ai's distribution is there but its package does not import (a broken
    install): a WARNING naming it and the fix, and nothing instrumented."""
    (entry,) = [k for k in instrument.KNOWN if k[0] == "pydantic-ai"]
    monkeypatch.setattr(instrument, "KNOWN", (entry,))
    monkeypatch.setitem(sys.modules, "pydantic_ai", None)  # its import now raises ImportError
    with caplog.at_level(logging.INFO, "tenant_trace"):
        assert instrument.auto_instrument() == []
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "could not instrument pydantic-ai" in warning.getMessage()
    assert "pip install -U pydantic-ai-slim" in warning.getMessage()
    assert not instrument.PydanticAIInstrumentor().is_instrumented_by_opentelemetry


def test_an_instrumentation_that_is_not_installed_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        instrument,
        "KNOWN",
        (("nothing", "tt_no_such_instrumentation", "Instrumentor", "tt-nothing"),),
    )
    with caplog.at_level(logging.INFO, "tenant_trace"):
        assert instrument.auto_instrument() == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
