"""Celery: tasks published in a tenant's context run in it, on a real worker (prefork and
threads pools) with a real Redis broker, and the worker's context is reset after each."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from opentelemetry import trace

import tenant_trace
from tenant_trace import ConfigurationError, MissingDependencyError
from tenant_trace.propagate.celery import TENANT_HEADER, instrument_celery, uninstrument_celery
from tests.conftest import Spans
from tests.servers.process import PATIENCE
from tests.servers.worker import Worker, celery_worker, redis_server

pytestmark = pytest.mark.real_server

tracer = trace.get_tracer("tests.celery")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(("prefork", {}), id="prefork"),
        # Without the thread instrumentation, each pool thread keeps its own context from
        # one task to the next: only tenant-trace's reset after each task keeps it clean.
        pytest.param(("threads", {"TENANT_TRACE_TEST_INSTRUMENT_THREADS": "0"}), id="threads"),
    ],
)
def worker(
    request: pytest.FixtureRequest, broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    pool, env = request.param
    with celery_worker(pool, broker, tmp_path_factory.mktemp(pool), env) as running:
        yield running


@pytest.fixture(scope="module")
def publisher(broker: str) -> Iterator[Celery]:
    """A separate app that publishes by task name, as a web service would."""
    app = Celery("publisher", broker=broker, backend=broker)
    instrument_celery(app)
    yield app
    app.close()


def send(app: Celery, name: str, *args: Any, **options: Any) -> Any:
    return app.send_task(name, args=args, **options)


def task_spans(worker: Worker, task_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The ``celery.run`` span of each task, by task id, once all of them are exported."""
    wanted = set(task_ids)

    def ids(spans: list[dict[str, Any]]) -> set[str]:
        return {s["attributes"].get("messaging.message.id") for s in spans} & wanted

    spans = worker.spans(lambda found: ids(found) == wanted)
    return {
        s["attributes"]["messaging.message.id"]: s
        for s in spans
        if s["attributes"].get("messaging.message.id") in wanted
    }


def test_a_task_runs_in_the_publishers_tenant_under_a_child_span(
    worker: Worker, publisher: Celery
) -> None:
    """The task sees tenant acme inside the publisher's trace; its CONSUMER span is a child
    of the span that published it, and spans made inside the task are its children."""
    with tenant_trace.tenant_context("acme"), tracer.start_as_current_span("publish") as span:
        result = send(publisher, "tests.whoami", "one")
    seen = result.get(timeout=PATIENCE)
    published = span.get_span_context()
    assert seen["tenant"] == "acme"
    assert seen["source"] == "celery"
    assert seen["trace_id"] == format(published.trace_id, "032x")
    run = task_spans(worker, [result.id])[result.id]
    assert run["name"] == "celery.run tests.whoami"
    assert run["kind"] == "CONSUMER"
    assert run["parent_id"] == format(published.span_id, "016x")
    assert run["attributes"]["tenant.id"] == "acme"
    assert run["attributes"]["messaging.system"] == "celery"
    assert run["attributes"]["celery.task.state"] == "SUCCESS"
    inner = [s for s in worker.spans(lambda f: True) if s["name"] == "execute_tool unit one"]
    assert [(s["parent_id"], s["attributes"]["tenant.id"]) for s in inner] == [
        (run["span_id"], "acme")
    ]


def test_log_lines_in_tasks_carry_the_tasks_tenant_and_span(
    worker: Worker, publisher: Celery
) -> None:
    """A JSON log line written in a task names the task's tenant, and the trace and span
    (the task's celery.run span) that were current; one without a tenant names none."""
    labels = {"log-a": "acme", "log-b": "globex", "log-none": None}
    results = {}
    for label, tenant in labels.items():
        with tenant_trace.tenant_context(tenant):
            results[label] = send(publisher, "tests.log", label)
    seen = {label: result.get(timeout=PATIENCE) for label, result in results.items()}
    lines = {
        line["label"]: line
        for line in worker.logs(lambda found: {f.get("label") for f in found} >= set(labels))
    }
    runs = task_spans(worker, [r.id for r in results.values()])
    for label, tenant in labels.items():
        line, run = lines[label], runs[results[label].id]
        assert line["message"] == f"task {label} ran"
        assert line["tenant_id"] == tenant
        assert (line["trace_id"], line["span_id"]) == (run["trace_id"], run["span_id"])
        assert (seen[label]["trace_id"], seen[label]["span_id"]) == (
            run["trace_id"],
            run["span_id"],
        )


def test_interleaved_tasks_each_see_only_their_own_tenant(
    worker: Worker, publisher: Celery
) -> None:
    """Tasks of four tenants, tasks without one (even with a forged tenant header) and tasks
    that leave their context dirty run interleaved on two workers: each sees only its own
    tenant, and the worker's context is empty before and after every task."""
    sent = []
    for i in range(24):
        tenant = None if i % 3 == 0 else f"tenant-{i % 4}"
        name = "tests.sloppy" if i % 4 == 1 else "tests.whoami"
        with tenant_trace.tenant_context(tenant):
            # A header set by the caller never passes for the tenant: ours replaces it.
            result = send(publisher, name, str(i), headers={TENANT_HEADER: "forged"})
        sent.append((tenant, result))
    seen = [(tenant, result.get(timeout=PATIENCE)) for tenant, result in sent]
    assert [s["tenant"] for _, s in seen] == [tenant for tenant, _ in seen]
    assert all(s["request"] is False for _, s in seen)
    task_ids = [result.id for _, result in sent]
    probes = worker.probes(lambda found: sum(p["task_id"] in task_ids for p in found) == 48)
    mine = [p for p in probes if p["task_id"] in task_ids]
    assert len(mine) == 48
    assert [p for p in mine if p["tenant"] is not None or p["trace_id"] is not None] == []
    # The same processes or threads ran tasks of different tenants, one after the other.
    runners: dict[tuple[int, int], set[str | None]] = {}
    for tenant, s in seen:
        runners.setdefault((s["pid"], s["thread"]), set()).add(tenant)
    assert max(len(tenants) for tenants in runners.values()) > 1
    runs = task_spans(worker, task_ids)
    assert [runs[r.id]["attributes"].get("tenant.id") for _, r in sent] == [t for t, _ in sent]


def test_a_failed_task_records_the_error_and_resets_the_context(
    worker: Worker, publisher: Celery
) -> None:
    with tenant_trace.tenant_context("acme"):
        result = send(publisher, "tests.fail", "failing")
    with pytest.raises(ValueError, match="the task failed"):
        result.get(timeout=PATIENCE)
    run = task_spans(worker, [result.id])[result.id]
    assert run["status"] == "ERROR"
    assert run["attributes"]["error.type"] == "ValueError"
    assert run["attributes"]["celery.task.state"] == "FAILURE"
    assert run["attributes"]["tenant.id"] == "acme"
    probes = worker.probes(lambda found: sum(p["task_id"] == result.id for p in found) == 2)
    assert [p["tenant"] for p in probes if p["task_id"] == result.id] == [None, None]


def test_a_task_published_by_a_task_continues_its_tenant_and_trace(
    worker: Worker, publisher: Celery
) -> None:
    with tenant_trace.tenant_context("acme"), tracer.start_as_current_span("publish"):
        parent = send(publisher, "tests.spawn", "parent")
    child_id = parent.get(timeout=PATIENCE)
    child = publisher.AsyncResult(child_id).get(timeout=PATIENCE)
    runs = task_spans(worker, [parent.id, child_id])
    assert child["tenant"] == "acme"
    assert runs[child_id]["parent_id"] == runs[parent.id]["span_id"]
    assert runs[child_id]["trace_id"] == runs[parent.id]["trace_id"] == child["trace_id"]


def test_an_eager_task_stays_in_its_callers_context(spans: Spans) -> None:
    """``apply()`` runs the task inline: it keeps the caller's tenant and span, and the
    caller's context is unchanged afterwards."""
    from tests.celery_app import whoami

    with tenant_trace.tenant_context("acme"), tracer.start_as_current_span("caller") as span:
        seen = whoami.apply(args=["eager"]).get()
        assert trace.get_current_span() is span
        assert tenant_trace.get_current_tenant() == "acme"
    assert (seen["tenant"], seen["source"]) == ("acme", "manual")
    run = spans.one("celery.run tests.whoami")
    assert run.parent is not None
    assert run.parent.span_id == span.get_span_context().span_id


def test_protocol_1_is_refused() -> None:
    app = Celery("old", set_as_current=False)
    app.conf.task_protocol = 1
    with pytest.raises(ConfigurationError, match="protocol 2"):
        instrument_celery(app)


def test_without_celery_installed_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "celery", None)  # what an absent package looks like
    with pytest.raises(MissingDependencyError, match=r"tenant-trace\[celery\]"):
        instrument_celery()
    with pytest.raises(MissingDependencyError):
        uninstrument_celery()


def test_instrumenting_twice_connects_each_handler_once() -> None:
    from celery import signals

    instrument_celery()
    before = len(signals.task_prerun.receivers)
    instrument_celery()
    assert len(signals.task_prerun.receivers) == before
