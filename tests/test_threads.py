"""Context across asyncio tasks and threads: the tenant and the current span follow the work,
and nothing a unit of work sets outlives it (tenant_trace.threads)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace

import tenant_trace
from tenant_trace.propagate.threads import (
    ContextExecutor,
    carry_context,
    instrument_threads,
    threads_instrumented,
    uninstrument_threads,
)
from tests.conftest import Spans

tracer = trace.get_tracer("tests.threads")


def seen(label: str = "") -> dict[str, Any]:
    """What the calling code sees, inside a span of its own named `label`."""
    parent = trace.get_current_span().get_span_context()
    with tenant_trace.tool_call(label or "unit"):
        pass
    return {
        "tenant": tenant_trace.get_current_tenant(),
        "parent": parent.span_id if parent.is_valid else None,
        "thread": threading.get_ident(),
    }


def leave_a_mess() -> dict[str, Any]:
    """Careless work: sets a tenant and a current span and never resets them."""
    result = seen()
    tenant_trace.set_tenant("left-behind")
    otel_context.attach(trace.set_span_in_context(tracer.start_span("never-ended")))
    return result


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    """Every test here starts instrumented (as after init()) and leaves the state it found."""
    was = threads_instrumented()
    instrument_threads()
    yield
    if not was:
        uninstrument_threads()


@pytest.fixture
def uninstrumented(instrumented: None) -> Iterator[None]:
    """The interpreter's own behaviour, for one test."""
    uninstrument_threads()
    yield
    instrument_threads()


def test_init_instruments_threads_and_can_be_told_not_to(uninstrumented: None) -> None:
    assert not threads_instrumented()
    tenant_trace.init(instrument_threads=False)
    assert not threads_instrumented()
    assert ThreadPoolExecutor.submit.__module__ == "concurrent.futures.thread"
    tenant_trace.init()
    assert threads_instrumented()


def test_instrumenting_is_idempotent_and_undone() -> None:
    submit, start = ThreadPoolExecutor.submit, threading.Thread.start
    instrument_threads()
    assert (ThreadPoolExecutor.submit, threading.Thread.start) == (submit, start)
    uninstrument_threads()
    uninstrument_threads()
    try:
        assert ThreadPoolExecutor.submit is submit.__wrapped__  # type: ignore[attr-defined]
        assert threading.Thread.start is start.__wrapped__  # type: ignore[attr-defined]
    finally:
        instrument_threads()


def test_uninstrumenting_under_another_wrapper_leaves_it_in_place(
    uninstrumented: None,
) -> None:
    """Another library wrapped submit after us: undoing ours keeps theirs, and ours then
    passes calls straight through."""
    instrument_threads()
    ours = ThreadPoolExecutor.__dict__["submit"]
    calls = []

    def theirs(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *a: Any, **k: Any) -> Any:
        calls.append(fn)
        return ours(self, fn, *a, **k)

    ThreadPoolExecutor.submit = theirs  # type: ignore[method-assign]
    try:
        uninstrument_threads()
        assert ThreadPoolExecutor.__dict__["submit"] is theirs
        with tenant_trace.tenant_context("acme"), ThreadPoolExecutor(1) as pool:
            assert pool.submit(tenant_trace.get_current_tenant).result() is None
        assert len(calls) == 1
    finally:
        ThreadPoolExecutor.submit = ours.__wrapped__
        uninstrument_threads()


def submit_patched(fn: Callable[[], Any]) -> Any:
    with ThreadPoolExecutor(2) as pool:
        return pool.submit(fn).result()


def submit_context_executor(fn: Callable[[], Any]) -> Any:
    with ContextExecutor(2) as pool:
        return pool.submit(fn).result()


def submit_carried(fn: Callable[[], Any]) -> Any:
    with ThreadPoolExecutor(2) as pool:
        return pool.submit(carry_context(fn)).result()


def start_thread(fn: Callable[[], Any]) -> Any:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join()
    return result[0]


class Subclass(threading.Thread):
    """A thread that overrides run(), the other common way to use threads."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.fn = fn
        self.result: Any = None

    def run(self) -> None:
        self.result = self.fn()


def start_subclass(fn: Callable[[], Any]) -> Any:
    thread = Subclass(fn)
    thread.start()
    thread.join()
    assert "run" not in thread.__dict__  # the wrapper is gone once it ran
    return thread.result


def start_timer(fn: Callable[[], Any]) -> Any:
    result: list[Any] = []
    timer = threading.Timer(0, lambda: result.append(fn()))
    timer.start()
    timer.join()
    return result[0]


def run_in_default_executor(fn: Callable[[], Any]) -> Any:
    async def main() -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn)

    return asyncio.run(main())


PATCHED = [submit_patched, start_thread, start_subclass, start_timer, run_in_default_executor]
EXPLICIT = [submit_context_executor, submit_carried]


@pytest.mark.parametrize("hand_over", PATCHED + EXPLICIT)
def test_work_in_a_thread_sees_the_tenant_and_span_that_handed_it_over(
    hand_over: Callable[[Callable[[], Any]], Any], spans: Spans
) -> None:
    with tenant_trace.tenant_context("acme"), tracer.start_as_current_span("outer") as outer:
        result = hand_over(lambda: seen("in-thread"))
        assert tenant_trace.get_current_tenant() == "acme"
    assert result["tenant"] == "acme"
    assert result["parent"] == outer.get_span_context().span_id
    assert result["thread"] != threading.get_ident()
    inner = spans.one("execute_tool in-thread")
    assert inner.parent is not None
    assert inner.parent.span_id == outer.get_span_context().span_id
    assert (inner.attributes or {})["tenant.id"] == "acme"


@pytest.mark.parametrize("hand_over", PATCHED)
def test_without_instrumentation_threads_see_nothing(
    hand_over: Callable[[Callable[[], Any]], Any], uninstrumented: None
) -> None:
    """What the instrumentation fixes: the interpreter alone does not carry the context."""
    with tenant_trace.tenant_context("acme"):
        assert hand_over(seen)["tenant"] is None


@pytest.mark.parametrize("executor", [ThreadPoolExecutor, ContextExecutor])
def test_a_pool_thread_reused_without_a_tenant_sees_none(
    executor: type[ThreadPoolExecutor],
) -> None:
    """The one thread of the pool first runs careless work of tenant acme, then work handed
    over without a tenant: that sees no tenant and no span."""
    with executor(1) as pool:
        with tenant_trace.tenant_context("acme"), tracer.start_as_current_span("outer"):
            first = pool.submit(leave_a_mess).result()
        second = pool.submit(seen).result()
    assert first["tenant"] == "acme"
    assert (second["tenant"], second["parent"]) == (None, None)
    assert second["thread"] == first["thread"]


@pytest.mark.parametrize("executor", [ThreadPoolExecutor, ContextExecutor])
def test_pool_threads_themselves_start_with_an_empty_context(
    executor: type[ThreadPoolExecutor],
) -> None:
    """A pool's worker thread, started by a submission of tenant acme, outlives it: its own
    context (seen by work submitted without any copying) holds no tenant."""
    original_submit = ThreadPoolExecutor.submit.__wrapped__  # type: ignore[attr-defined]
    with executor(1) as pool:
        with tenant_trace.tenant_context("acme"), tracer.start_as_current_span("outer"):
            pool.submit(seen).result()
        bare = original_submit(pool, seen).result()
    assert (bare["tenant"], bare["parent"]) == (None, None)


def test_a_carried_function_runs_in_a_fresh_copy_at_every_call() -> None:
    """One carried function called twice, and from two threads at once: no call sees what
    another set, and no 'context already entered' error."""
    with tenant_trace.tenant_context("acme"):
        carried = carry_context(leave_a_mess)
    assert carry_context(carried) is carried
    assert carried()["tenant"] == "acme"
    assert carried()["tenant"] == "acme"
    barrier = threading.Barrier(2)

    def twice() -> list[dict[str, Any]]:
        barrier.wait(timeout=5)
        return [carried(), carried()]

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(twice) for _ in range(2)]
        results = [r for f in futures for r in f.result()]
    assert [r["tenant"] for r in results] == ["acme"] * 4
    assert tenant_trace.get_current_tenant() is None


async def test_asyncio_tasks_carry_the_tenant_and_parent_span(spans: Spans) -> None:
    """create_task, gather, TaskGroup and to_thread copy the context on their own: each task
    sees the request's tenant and span, and what a task sets stays in that task."""

    async def unit(label: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        result = seen(label)
        tenant_trace.set_tenant("left-behind")
        return result

    with tenant_trace.tenant_context("acme"), tracer.start_as_current_span("outer") as outer:
        results = [await asyncio.create_task(unit("task"))]
        results += await asyncio.gather(unit("gather-1"), unit("gather-2"))
        if sys.version_info >= (3, 11):
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(unit(f"group-{i}")) for i in (1, 2)]
            results += [task.result() for task in tasks]
        results.append(await asyncio.to_thread(seen, "to_thread"))
        assert tenant_trace.get_current_tenant() == "acme"
        assert trace.get_current_span() is outer
    outer_id = outer.get_span_context().span_id
    assert [(r["tenant"], r["parent"]) for r in results] == [("acme", outer_id)] * len(results)
    inner = [s for s in spans.all() if s.name.startswith("execute_tool")]
    assert len(inner) == len(results)
    assert all(s.parent is not None and s.parent.span_id == outer_id for s in inner)


def test_a_thread_given_its_own_context_keeps_it() -> None:
    """A second start() is an error and changes nothing; a thread that already runs in a
    context of its own choosing (``target=Context().run``) keeps it."""
    from contextvars import Context

    result: list[Any] = []
    with tenant_trace.tenant_context("acme"):
        thread = threading.Thread(target=Context().run, args=(lambda: result.append(seen()),))
        thread.start()
        thread.join()
        with pytest.raises(RuntimeError, match="once"):
            thread.start()
    assert result[0]["tenant"] is None
