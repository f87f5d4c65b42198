"""FastAPI under a real uvicorn server."""

from __future__ import annotations

from pathlib import Path

from tests.servers.load import interleaved, mismatches
from tests.servers.process import serve


def test_interleaved_requests_from_many_tenants_never_mix(tmp_path: Path) -> None:
    """2,000 overlapping requests from 50 tenants: every response and span has its own tenant."""
    with serve("uvicorn", "examples.fastapi_app:app", tmp_path) as server:
        sent = interleaved(server.url, n=2000, tenants=50)
        spans = server.spans()
    assert len(sent) == 2000
    assert len({s.tenant for s in sent}) == 50
    assert mismatches(sent, spans) == []
