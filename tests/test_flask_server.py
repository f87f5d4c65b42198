"""The Flask example under a real gunicorn server with the gthread worker."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenant_trace import Rejection, RequestView, TenantPolicy
from tests.servers.load import interleaved, mismatches
from tests.servers.process import PATIENCE, Server, serve

pytestmark = pytest.mark.real_server

TARGET = "examples.flask_app:app"


def traced(tenant: str | None = None) -> tuple[str, dict[str, str]]:
    """A new trace id, and request headers that start that trace (and name `tenant`)."""
    trace_id = secrets.token_hex(16)
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    if tenant is not None:
        headers["X-Tenant-ID"] = tenant
    return trace_id, headers


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The example on gunicorn: 2 workers of 8 threads each (tests/servers/run.py)."""
    with serve("gunicorn", TARGET, tmp_path_factory.mktemp("gunicorn")) as server:
        yield server


def test_interleaved_requests_from_many_tenants_never_mix(gunicorn: Server) -> None:
    """2,000 overlapping requests from 50 tenants: every response and span has its own tenant."""
    sent = interleaved(gunicorn.url, n=2000, tenants=50)
    spans = gunicorn.spans(traces={s.trace_id for s in sent})
    assert len(sent) == 2000
    assert len({s.tenant for s in sent}) == 50
    assert mismatches(sent, spans) == []


async def _streams(url: str, tenants: list[str]) -> list[tuple[str, str, list[str]]]:
    async with httpx.AsyncClient(base_url=url, timeout=PATIENCE) as client:

        async def one(tenant: str) -> tuple[str, str, list[str]]:
            trace_id, headers = traced(tenant)
            async with client.stream("GET", "/stream", headers=headers) as response:
                lines = [line async for line in response.aiter_lines() if line]
            return tenant, trace_id, lines

        return await asyncio.gather(*(one(tenant) for tenant in tenants))


def test_concurrent_streams_name_their_own_tenant_in_every_chunk(gunicorn: Server) -> None:
    """200 concurrent streamed responses from 20 tenants: every chunk, and the root span,
    names the request's own tenant."""
    tenants = [f"tenant-{i % 20:02d}" for i in range(200)]
    results = asyncio.run(_streams(gunicorn.url, tenants))
    wrong = [
        (tenant, lines)
        for tenant, _, lines in results
        if lines != [f"chunk {i} for {tenant}" for i in range(5)]
    ]
    assert wrong == []
    spans = gunicorn.spans(traces={trace_id for _, trace_id, _ in results})
    roots = {s["trace_id"]: s["attributes"] for s in spans if s["name"] == "agent.run"}
    for tenant, trace_id, _ in results:
        root = roots[trace_id]
        assert (root["tenant.id"], root["http.route"]) == (tenant, "/stream")
        assert root["http.response.status_code"] == 200


def test_single_threaded_server_does_not_carry_a_tenant_over(tmp_path: Path) -> None:
    """On gunicorn with one worker and one thread, a request without a tenant after one for
    tenant A sees no tenant, and /chat then answers the core's own 401."""
    env = {
        "TEST_GUNICORN_WORKERS": "1",
        "TEST_GUNICORN_THREADS": "1",
        "FLASK_TENANT_TRACE_REQUIRED": "false",  # so that /stream takes requests without one
    }
    ids: list[str] = []
    with (
        serve("gunicorn", TARGET, tmp_path, env) as server,
        httpx.Client(timeout=PATIENCE) as client,
    ):

        def get(path: str, tenant: str | None, **kwargs: Any) -> httpx.Response:
            trace_id, headers = traced(tenant)
            ids.append(trace_id)
            return client.request(url=server.url + path, headers=headers, **kwargs)

        first = get("/stream", "acme", method="GET")
        second = get("/stream", None, method="GET")
        refused = get("/chat", None, method="POST", json={"message": "hi"})
        chat = get("/chat", "acme", method="POST", json={"message": "hi"})
        spans = server.spans(traces=ids)
    assert first.text.splitlines() == [f"chunk {i} for acme" for i in range(5)]
    assert second.text.splitlines() == [f"chunk {i} for None" for i in range(5)]
    with pytest.raises(Rejection) as missing:
        TenantPolicy().resolve(RequestView())
    assert (refused.status_code, refused.content) == (401, missing.value.body())
    assert (chat.status_code, chat.json()["tenant"]) == (200, "acme")
    roots = {s["trace_id"]: s["attributes"] for s in spans if s["name"] == "agent.run"}
    assert [roots[trace_id].get("tenant.id") for trace_id in ids] == ["acme", None, None, "acme"]
    assert len({s["pid"] for s in spans}) == 1
