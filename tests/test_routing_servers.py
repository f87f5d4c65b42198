"""Per-tenant routing on a real server: three tenants interleaved on uvicorn, two real OTLP/HTTP
receivers on loopback (one per routed tenant), the local store as the default exporter.

Each receiver must get exactly its tenant's whole traces, the spans of other libraries
included (tests/servers/routed.py makes them), and its log lines, and nothing else; a dead
or sleeping collector must neither delay nor starve the others.

uvicorn ends with the signal it was sent, so exporters are not flushed at exit: each test
waits for the telemetry to arrive, then stops the server and checks that nothing else came.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import spanfile
from tests.servers.otlp import Receiver, eventually
from tests.servers.process import serve

pytestmark = pytest.mark.real_server

TENANTS = ("acme", "globex", "initech")  # initech has no route
# Spans every /chat trace has, tenant-trace's own and other libraries' (see routed.py).
REQUIRED = {"POST /chat", "edge.check", "agent.run", "GET", "vector-db.query", "worker.step"}


def chat(url: str, tenant: str) -> str:
    """One /chat request; returns its trace id."""
    response = httpx.post(f"{url}/chat", headers={"X-Tenant-ID": tenant}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["tenant"] == tenant
    return str(response.json()["trace_id"])


def interleaved(url: str, per_tenant: int) -> dict[str, str]:
    """`per_tenant` requests of each tenant, interleaved over 8 connections: {trace: tenant}."""
    jobs = [tenant for _ in range(per_tenant) for tenant in TENANTS]
    with ThreadPoolExecutor(8) as pool:
        return dict(zip(pool.map(lambda t: chat(url, t), jobs), jobs, strict=True))


def traces_of(sent: dict[str, str], *tenants: str) -> set[str]:
    return {trace for trace, owner in sent.items() if owner in tenants}


def by_trace(spans: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        grouped[span["trace_id"]].append(span)
    return grouped


def whole(spans: list[dict[str, Any]], traces: set[str]) -> bool:
    """Whether `spans` are of exactly `traces`, each with all of `REQUIRED`."""
    grouped = by_trace(spans)
    return set(grouped) == traces and all(
        {s["name"] for s in trace} >= REQUIRED for trace in grouped.values()
    )


def assert_whole_traces(receiver: Receiver, tenant: str, sent: dict[str, str]) -> None:
    """The receiver has every trace of `tenant`, each whole, and nothing of another tenant."""
    assert whole(receiver.spans, traces_of(sent, tenant))
    assert {s["attributes"].get("tenant.id", tenant) for s in receiver.spans} == {tenant}


def stored(db: Path) -> list[dict[str, Any]]:
    """The spans in the default exporter's store (the local store)."""
    if not db.exists():
        return []
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT trace_id, span_id, name, attributes FROM spans")
        return [
            {"trace_id": t, "span_id": s, "name": n, "attributes": json.loads(a)}
            for t, s, n, a in rows
        ]


def same_spans(receivers: tuple[Receiver, ...], db: Path) -> bool:
    """Whether each trace the receivers have is in the store with the same span ids."""
    default = by_trace(stored(db))
    return all(
        {s["span_id"] for s in spans} == {s["span_id"] for s in default.get(trace, [])}
        for receiver in receivers
        for trace, spans in by_trace(receiver.spans).items()
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(tmp_path: Path, routes: dict[str, Any], **extra: str) -> dict[str, str]:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(routes))
    return {
        spanfile.ENV: "",  # the app's own init() builds the provider
        "OTEL_TRACES_EXPORTER": "local",
        "TENANT_TRACE_DB": str(tmp_path / "default.sqlite3"),
        "TENANT_TRACE_ROUTES": str(path),
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        **extra,
    }


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    with ExitStack() as stack:
        yield (
            stack.enter_context(Receiver().running()),
            stack.enter_context(Receiver().running()),
        )


@pytest.mark.parametrize(
    ("unrouted", "mirror"), [("default", "false"), ("drop", "true")], ids=["default", "drop+mirror"]
)
def test_each_receiver_gets_exactly_its_tenants_whole_traces(
    tmp_path: Path, receivers: tuple[Receiver, Receiver], unrouted: str, mirror: str
) -> None:
    """30 interleaved requests of three tenants: acme's and globex's receivers each get that
    tenant's whole traces (FastAPI's, httpx's and other libraries' spans, the span that
    ended before the tenant was known, the child started without the tenant) and log lines,
    with their own headers; initech's go to the default exporter, or nowhere with "drop";
    with "mirror" the default exporter also gets a copy of the routed ones."""
    acme, globex = receivers
    routes = {
        "acme": {"endpoint": acme.url, "headers": {"x-project-name": "acme-project"}},
        "globex": {"endpoint": globex.url, "headers": {"X-Scope-OrgID": "globex"}},
        "unknown-tenant": "http://127.0.0.1:9",  # never seen: allowed, never used
    }
    env = environment(tmp_path, routes, TENANT_TRACE_UNROUTED=unrouted, TENANT_TRACE_MIRROR=mirror)
    db = Path(env["TENANT_TRACE_DB"])
    in_store = ("acme", "globex") if mirror == "true" else ("initech",)
    with serve("uvicorn", "tests.servers.routed:app", tmp_path, env=env) as server:
        sent = interleaved(server.url, per_tenant=10)
        assert eventually(
            lambda: (
                whole(acme.spans, traces_of(sent, "acme"))
                and whole(globex.spans, traces_of(sent, "globex"))
                and whole(stored(db), traces_of(sent, *in_store))
                and (mirror == "false" or same_spans(receivers, db))
                and len(acme.logs) + len(globex.logs) == 40
            )
        ), "the telemetry did not arrive"
    assert_whole_traces(acme, "acme", sent)
    assert_whole_traces(globex, "globex", sent)
    assert {h.get("x-project-name") for h in acme.headers} == {"acme-project"}
    assert {h.get("x-scope-orgid") for h in globex.headers} == {"globex"}
    for receiver, tenant in ((acme, "acme"), (globex, "globex")):
        # The app's line and httpx's "HTTP Request: ..." of each request.
        assert sum(r["body"] == f"answered for {tenant}" for r in receiver.logs) == 10
        assert {r["attributes"]["tenant.id"] for r in receiver.logs} == {tenant}
        assert {r["trace_id"] for r in receiver.logs} == traces_of(sent, tenant)
    # The default exporter: initech's whole traces, or (dropped) a mirror of the others'.
    assert whole(stored(db), traces_of(sent, *in_store))
    if mirror == "true":
        assert same_spans(receivers, db)


@pytest.mark.parametrize("fault", ["dead", "sleeping"])
def test_a_dead_or_sleeping_collector_delays_no_one_else(
    tmp_path: Path, receivers: tuple[Receiver, Receiver], fault: str
) -> None:
    """acme's collector is a closed port, or holds every request (30 s) until released at the
    end: globex's spans all reach its own receiver meanwhile, and every request of every
    tenant is answered before the sleeping collector has answered even one export (its
    route waits 60 s: a request that waited on it could only end after that)."""
    globex, _ = receivers
    db = tmp_path / "default.sqlite3"
    with Receiver(hold=True).running() as sleeping:
        if fault == "dead":  # retried for 5 s a batch
            acme = {"endpoint": f"http://127.0.0.1:{closed_port()}", "timeout": 5}
        else:
            acme = {"endpoint": sleeping.url, "timeout": 60}
        env = environment(tmp_path, {"acme": acme, "globex": globex.url})
        with serve("uvicorn", "tests.servers.routed:app", tmp_path, env=env) as server:
            first = chat(server.url, "acme")
            if fault == "sleeping":
                assert sleeping.wait(lambda r: r.held >= 1), "acme's export never started"
            sent = {first: "acme", **interleaved(server.url, per_tenant=10)}
            assert sleeping.answered == 0  # all 31 requests answered while it sleeps
            assert globex.wait(lambda r: whole(r.spans, traces_of(sent, "globex")))
            assert eventually(lambda: whole(stored(db), traces_of(sent, "initech")))
            assert sleeping.answered == 0  # globex's and initech's spans came meanwhile
            sleeping.release()
            if fault == "sleeping":  # late, not lost
                assert sleeping.wait(lambda r: whole(r.spans, traces_of(sent, "acme")))
    assert_whole_traces(globex, "globex", sent)
    assert whole(stored(db), traces_of(sent, "initech"))
    if fault == "sleeping":
        assert_whole_traces(sleeping, "acme", sent)
