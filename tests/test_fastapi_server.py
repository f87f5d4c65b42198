"""FastAPI under a real uvicorn server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.servers.load import interleaved, mismatches
from tests.servers.process import serve

pytestmark = pytest.mark.real_server


def test_interleaved_requests_from_many_tenants_never_mix(tmp_path: Path) -> None:
    """2,000 overlapping requests from 50 tenants: every response and span has its own tenant."""
    with serve("uvicorn", "examples.fastapi_app:app", tmp_path) as server:
        sent = interleaved(server.url, n=2000, tenants=50)
        spans = server.spans(roots=2000)
    assert len(sent) == 2000
    assert len({s.tenant for s in sent}) == 50
    assert mismatches(sent, spans) == []


def test_streamed_response_and_excluded_path_on_uvicorn(tmp_path: Path) -> None:
    """Under uvicorn every streamed chunk names the tenant, the root span ends after the body,
    and /health is served with no span at all."""
    with serve("uvicorn", "examples.fastapi_app:app", tmp_path) as server:
        with httpx.stream(
            "GET", f"{server.url}/stream", headers={"X-Tenant-ID": "acme"}
        ) as response:
            lines = [line for line in response.iter_lines() if line]
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
        spans = server.spans(roots=1)
    assert lines == [f"chunk {i} for acme" for i in range(5)]
    roots = [s for s in spans if s["name"] == "agent.run"]
    assert len(roots) == 1
    assert roots[0]["attributes"]["tenant.id"] == "acme"
    assert roots[0]["attributes"]["http.route"] == "/stream"
    same_trace = [s for s in spans if s["trace_id"] == roots[0]["trace_id"]]
    assert len(same_trace) > 1
    assert all(s["attributes"].get("tenant.id") == "acme" for s in same_trace)


def test_rejections_on_uvicorn(tmp_path: Path) -> None:
    """Bad input over a real socket: JSON 4xx, never a 500."""
    with serve("uvicorn", "examples.fastapi_app:app", tmp_path) as server:
        bad = httpx.post(
            f"{server.url}/chat", json={"message": "x"}, headers={"X-Tenant-ID": "a" * 256}
        )
        missing = httpx.post(f"{server.url}/chat", json={"message": "x"})
        host = httpx.post(
            f"{server.url}/chat", json={"message": "x"}, headers={"Host": "a.b.example.com"}
        )
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_tenant")
    assert (missing.status_code, missing.json()["error"]) == (401, "missing_tenant")
    assert (host.status_code, host.json()["error"]) == (400, "invalid_host")


def test_the_last_batch_is_exported_when_uvicorn_stops(tmp_path: Path) -> None:
    """uvicorn ends its process by re-raising SIGTERM, so no exit handler flushes the batch
    processor: the middleware exports what is held when the lifespan shutdown completes. With
    an export delay of an hour, every run still reaches the store."""
    import sqlite3

    db = tmp_path / "traces.sqlite3"
    env = {
        "OTEL_TRACES_EXPORTER": "local",
        "TENANT_TRACE_DB": str(db),
        "OTEL_BSP_SCHEDULE_DELAY": "3600000",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512",
        "TENANT_TRACE_TEST_SPANFILE": "",
    }
    with (
        serve("uvicorn", "examples.fastapi_app:app", tmp_path, env=env) as server,
        httpx.Client(base_url=server.url, timeout=120) as client,
    ):
        for i in range(20):
            response = client.post(
                "/chat", json={"message": f"hi {i}"}, headers={"X-Tenant-ID": "acme"}
            )
            assert response.status_code == 200
    runs = (
        sqlite3.connect(db)
        .execute("SELECT COUNT(*) FROM spans WHERE name = 'agent.run' AND tenant_id = 'acme'")
        .fetchone()[0]
    )
    assert runs == 20
