"""The Django example site under real servers: uvicorn (ASGI) and gunicorn's gthread worker
(WSGI)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers.load import interleaved, mismatches
from tests.servers.process import PATIENCE, Server, serve

pytestmark = pytest.mark.real_server

ASGI = "examples.django_site.project.asgi:application"
WSGI = "examples.django_site.project.wsgi:application"
EXAMPLE = {"DJANGO_SETTINGS_MODULE": "examples.django_site.project.settings"}
# The example with the tenant optional and a sync-only middleware before ours.
OPTIONAL = {"DJANGO_SETTINGS_MODULE": "tests.django_settings"}
ONE_THREAD = {"TEST_GUNICORN_WORKERS": "1", "TEST_GUNICORN_THREADS": "1"}

SERVERS = [
    pytest.param(("uvicorn", ASGI), id="uvicorn"),
    pytest.param(("gunicorn", WSGI), id="gunicorn-gthread"),
]


@pytest.fixture(scope="module", params=SERVERS)
def example(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The example site as shipped, under each server."""
    server, target = request.param
    with serve(server, target, tmp_path_factory.mktemp(server), env=EXAMPLE) as running:
        yield running


def traced(tenant: str | None = None) -> tuple[str, dict[str, str]]:
    """Headers naming `tenant` (if any) with a fresh trace id, to find the request's spans."""
    trace_id = secrets.token_hex(16)
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    if tenant is not None:
        headers["X-Tenant-ID"] = tenant
    return trace_id, headers


def roots(server: Server, trace_id: str) -> list[dict[str, Any]]:
    """The agent.run spans of a trace, once there is one."""
    spans = server.spans(traces=[trace_id])
    return [s for s in spans if s["trace_id"] == trace_id and s["name"] == "agent.run"]


def test_interleaved_requests_from_many_tenants_never_mix(example: Server) -> None:
    """2,000 overlapping requests from 50 tenants: every response and span has its own tenant."""
    sent = interleaved(example.url, n=2000, tenants=50)
    assert len(sent) == 2000
    assert len({s.tenant for s in sent}) == 50
    assert mismatches(sent, example.spans(traces={s.trace_id for s in sent})) == []


def test_every_streamed_chunk_names_the_tenant(example: Server) -> None:
    """GET /stream: each chunk names the tenant; one root span with route and status."""
    trace_id, headers = traced("acme")
    with httpx.stream(
        "GET", f"{example.url}/stream", headers=headers, timeout=PATIENCE
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.status_code == 200
    assert lines == [f"chunk {i} for acme" for i in range(5)]
    (root,) = roots(example, trace_id)
    assert root["attributes"]["tenant.id"] == "acme"
    assert root["attributes"]["http.route"] == "stream"
    assert root["attributes"]["http.response.status_code"] == 200


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        pytest.param({"X-Tenant-ID": "a" * 256}, 400, "invalid_tenant", id="bad-header"),
        pytest.param({}, 401, "missing_tenant", id="missing"),
        pytest.param({"Host": "a.b.example.com"}, 400, "invalid_host", id="bad-host"),
        pytest.param(
            {"X-Tenant-ID": "acme", "Host": "beta.example.com"},
            403,
            "tenant_conflict",
            id="conflict",
        ),
    ],
)
def test_rejections_over_a_real_socket(
    example: Server, headers: dict[str, str], status: int, code: str
) -> None:
    """Bad or missing tenants get the JSON 4xx of every framework, never a 500."""
    response = httpx.post(
        f"{example.url}/chat", json={"message": "x"}, headers=headers, timeout=PATIENCE
    )
    assert (response.status_code, response.json()["error"]) == (status, code)
    assert response.headers["content-type"] == "application/json"


def test_health_is_excluded(example: Server) -> None:
    """/health answers with no tenant and no span."""
    trace_id, headers = traced("acme")
    assert httpx.get(f"{example.url}/health", headers=headers, timeout=PATIENCE).json() == {
        "status": "ok"
    }
    assert [s for s in example.spans() if s["trace_id"] == trace_id] == []


@pytest.mark.parametrize(
    ("server", "target", "env"),
    [
        pytest.param("gunicorn", WSGI, ONE_THREAD, id="gunicorn-one-thread"),
        pytest.param("uvicorn", ASGI, {}, id="uvicorn"),
    ],
)
def test_request_without_tenant_after_one_with_sees_none(
    server: str, target: str, env: dict[str, str], tmp_path: Path
) -> None:
    """With the tenant optional and a sync-only middleware before ours: after a request of
    tenant A on the same (single) thread, a request without a tenant sees none, in the view,
    in every chunk, in the outer middleware and on its span; concurrent traffic still never
    mixes tenants across Django's sync/async adaptation."""
    with serve(server, target, tmp_path, env={**OPTIONAL, **env}) as running:
        url = running.url
        trace_a, headers_a = traced("tenant-a")
        first = httpx.post(
            f"{url}/chat", json={"message": "hi"}, headers=headers_a, timeout=PATIENCE
        )
        trace_b, headers_b = traced()
        second = httpx.post(
            f"{url}/chat", json={"message": "hi"}, headers=headers_b, timeout=PATIENCE
        )
        streamed = httpx.get(f"{url}/stream", timeout=PATIENCE)
        sent = interleaved(url, n=200, tenants=10)
        root_a, root_b = roots(running, trace_a), roots(running, trace_b)
        spans = running.spans(traces={s.trace_id for s in sent})
    assert first.json()["tenant"] == "tenant-a"
    assert first.headers["X-Tenant-Outside"] == "None,None"
    assert (second.status_code, second.json()["error"]) == (401, "missing_tenant")
    assert second.headers["X-Tenant-Outside"] == "None,None"
    assert streamed.text.splitlines() == [f"chunk {i} for None" for i in range(5)]
    assert root_a[0]["attributes"]["tenant.id"] == "tenant-a"
    assert "tenant.id" not in root_b[0]["attributes"]
    assert root_b[0]["attributes"]["http.response.status_code"] == 401
    assert mismatches(sent, spans) == []
