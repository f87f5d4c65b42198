"""One request fans out across asyncio tasks, threads, a Celery worker and a second service,
all real processes (uvicorn, a prefork Celery worker, Redis): every span is in the request's
trace under the right parent with the right tenant, and nothing outlives its unit of work."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.servers.process import PATIENCE, Server, serve
from tests.servers.worker import BROKER_ENV, Worker, celery_worker, redis_server

pytestmark = pytest.mark.real_server

ASYNC_UNITS = ["create_task", "gather-1", "gather-2"]
if sys.version_info >= (3, 11):
    ASYNC_UNITS += ["taskgroup-1", "taskgroup-2"]
THREAD_UNITS = ["executor", "run_in_executor", "thread"]
LABELS = [*ASYNC_UNITS, *THREAD_UNITS, "celery", "httpx", "requests"]


@dataclass
class Services:
    edge: Server
    downstream: Server
    worker: Worker


@dataclass
class Sent:
    trace_id: str
    parent_id: str | None
    body: dict[str, Any]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    tmp_path = tmp_path_factory.mktemp("fanout")
    with (
        redis_server(tmp_path) as broker,
        celery_worker("prefork", broker, tmp_path) as worker,
        serve("uvicorn", "tests.servers.fanout:downstream", tmp_path) as downstream,
        serve(
            "uvicorn",
            "tests.servers.fanout:edge",
            tmp_path,
            env={
                BROKER_ENV: broker,
                "TENANT_TRACE_TEST_DOWNSTREAM": downstream.url,
                "TENANT_TRACE_TRUST_TRACEPARENT": "false",  # a public edge: the default
            },
        ) as edge,
    ):
        yield Services(edge, downstream, worker)


def send(services: Services, headers: dict[str, str]) -> Sent:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    response = httpx.post(
        f"{services.edge.url}/fanout",
        headers={"traceparent": f"00-{trace_id}-{parent_id}-01", **headers},
        timeout=PATIENCE,
    )
    assert response.status_code == 200, response.text
    return Sent(trace_id, parent_id, response.json())


@pytest.fixture(scope="module")
def exchange(services: Services) -> tuple[Sent, Sent, list[dict[str, Any]]]:
    """Two requests, one after the other: tenant acme, then no tenant at all; both send a
    client-made ``baggage: tenant.id=evil``. Then every span of the three processes."""
    acme = send(services, {"X-Tenant-ID": "acme", "baggage": "tenant.id=evil,other=kept"})
    anonymous = send(services, {"baggage": "tenant.id=evil"})
    spans = (
        services.edge.spans(roots=2)
        + services.downstream.spans(roots=4)
        + services.worker.spans(lambda found: len(found) >= 4)
    )
    return ran(acme, spans), ran(anonymous, spans), spans


def ran(sent: Sent, spans: list[dict[str, Any]]) -> Sent:
    """The trace the edge ran `sent` in: the public edge does not continue its client's
    trace but starts its own, linked to the client's context, and exports nothing in it."""
    assert all(s["trace_id"] != sent.trace_id for s in spans)
    [root] = [s for s in spans if [sent.trace_id, sent.parent_id] in s["links"]]
    assert (root["name"], root["parent_id"], root["kind"]) == ("agent.run", None, "SERVER")
    return Sent(root["trace_id"], None, sent.body)


def units(sent: Sent) -> dict[str, dict[str, Any]]:
    return {unit["label"]: unit for unit in sent.body["units"]}


def test_every_unit_of_work_sees_the_request_tenant_and_trace(
    exchange: tuple[Sent, Sent, list[dict[str, Any]]],
) -> None:
    """Tasks, pool threads, a thread, the Celery task and the downstream service all see
    tenant acme inside the request's trace, each in its own span."""
    acme, _, _ = exchange
    seen = units(acme)
    assert sorted(seen) == sorted(LABELS)
    for label, unit in seen.items():
        assert (unit["tenant"], unit["trace_id"]) == ("acme", acme.trace_id), label
    expected_source = {"celery": "celery", "httpx": "internal", "requests": "internal"}
    assert {label: unit["source"] for label, unit in seen.items()} == {
        label: expected_source.get(label, "header") for label in LABELS
    }
    assert acme.body["before"]["tenant"] == "acme"


def test_no_unit_of_work_leaks_into_its_request_or_a_later_one(
    exchange: tuple[Sent, Sent, list[dict[str, Any]]],
) -> None:
    """Every unit left a tenant and a foreign span current; the request that made it goes on
    unchanged, and the next request, without a tenant, sees none of it, on the very same
    pool threads."""
    acme, anonymous, _ = exchange
    assert acme.body["after"] == {**acme.body["before"], "label": "after"}
    first, second = units(acme), units(anonymous)
    for label in LABELS:
        unit = second[label]
        assert (unit["tenant"], unit["trace_id"]) == (None, anonymous.trace_id), label
    for label in ("executor", "run_in_executor", "requests"):
        assert second[label]["thread"] == first[label]["thread"], f"{label}: not reused"
    assert anonymous.body["after"]["tenant"] is None


def named(spans: dict[str, dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in spans.values() if s["name"] == name]


def path_up(
    spans: dict[str, dict[str, Any]], span: dict[str, Any], to: str
) -> list[dict[str, Any]]:
    """The spans from `span`'s parent up to the span whose id is `to` (KeyError: none)."""
    chain = [spans[span["parent_id"]]]
    while chain[-1]["span_id"] != to:
        chain.append(spans[chain[-1]["parent_id"]])
    return chain


@pytest.mark.parametrize(("which", "tenant"), [(0, "acme"), (1, None)], ids=["acme", "none"])
def test_every_span_is_in_its_request_trace_under_the_right_parent(
    exchange: tuple[Sent, Sent, list[dict[str, Any]]], which: int, tenant: str | None
) -> None:
    """No orphan: every span of the edge, the worker and the downstream service belongs to
    one of the two requests, its parent is in the same trace, and it has that request's
    tenant (or none). Each unit's span hangs under the run that made it."""
    sent, spans = exchange[which], exchange[2]
    assert {s["trace_id"] for s in spans} == {exchange[0].trace_id, exchange[1].trace_id}
    mine = {s["span_id"]: s for s in spans if s["trace_id"] == sent.trace_id}
    orphans = [s for s in mine.values() if s["parent_id"] not in {*mine, sent.parent_id}]
    assert orphans == []
    assert {s["attributes"].get("tenant.id") for s in mine.values()} == {tenant}
    [top] = [s for s in mine.values() if s["parent_id"] == sent.parent_id]
    [fanout] = named(mine, "invoke_agent fanout")
    assert "agent.run" in [s["name"] for s in path_up(mine, fanout, top["span_id"])]
    for label in [*ASYNC_UNITS, *THREAD_UNITS, "requests"]:
        [unit] = named(mine, f"execute_tool unit {label}")
        assert unit["parent_id"] == fanout["span_id"], label
    [task] = named(mine, "celery.run tests.whoami")
    assert (task["kind"], task["parent_id"]) == ("CONSUMER", fanout["span_id"])
    [in_task] = named(mine, "execute_tool unit celery")
    assert in_task["parent_id"] == task["span_id"]
    # The downstream service continues the trace: httpx was called from the run itself,
    # requests from inside the "unit requests" span.
    [requests_unit] = named(mine, "execute_tool unit requests")
    for label, caller in (("httpx", fanout), ("requests", requests_unit)):
        [remote] = named(mine, f"execute_tool unit {label}-downstream")
        chain = path_up(mine, remote, caller["span_id"])[:-1]
        assert [s["kind"] for s in chain][-1] == "SERVER", label
        assert "agent.run" in [s["name"] for s in chain], label


def test_client_baggage_never_names_the_tenant_nor_goes_downstream(
    exchange: tuple[Sent, Sent, list[dict[str, Any]]],
) -> None:
    """A client's ``baggage: tenant.id=evil`` is ignored (no tenant from it, by default) and
    never forwarded; other baggage entries still are."""
    acme, anonymous, spans = exchange
    assert anonymous.body["before"]["tenant"] is None
    assert all(s["attributes"].get("tenant.id") != "evil" for s in spans)
    for sent in (acme, anonymous):
        for label in ("httpx", "requests"):
            assert "evil" not in (units(sent)[label]["baggage"] or ""), label
    assert units(acme)["httpx"]["baggage"] == "other=kept"
