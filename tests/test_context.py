"""The tenant context: set/get/clear, the with-block, id validation and isolation."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator

import pytest

from tenant_trace import (
    InvalidTenantError,
    Rejection,
    get_current_tenant,
    get_tenant_source,
    set_tenant,
    tenant_context,
    validate_tenant_id,
)
from tenant_trace.context import require_tenant, set_tenant_pattern


@pytest.fixture
def cleared() -> Iterator[None]:
    """For tests that call `set_tenant` directly: leave the context empty afterwards."""
    yield
    set_tenant(None)


VALID_IDS = [
    pytest.param("3f2b7c1e-9d4a-4e8b-a1c2-5f6e7d8c9b0a", id="uuid"),
    pytest.param("acme-corp", id="slug"),
    pytest.param("org_123", id="org_123"),
    pytest.param("org_123:workspace_456", id="org-and-workspace"),
    pytest.param("a", id="one-char"),
    pytest.param("x" * 255, id="255-chars"),
    pytest.param("müller-gmbh", id="latin-letters"),
    pytest.param("東京支店", id="cjk-letters"),
    pytest.param("Ελληνικά", id="greek-letters"),
]

# Each hostile id carries the marker SECRET so that the tests can prove the error message
# never repeats the id (it may be an attack, and messages reach logs).
INVALID_IDS = [
    pytest.param("", id="empty"),
    pytest.param("SECRET" + "x" * 250, id="256-chars"),
    pytest.param("SECRET\r\nX-Injected: 1", id="crlf"),
    pytest.param("SECRET\n", id="trailing-lf"),
    pytest.param("SECRET\x00", id="nul"),
    pytest.param("SECRET\tb", id="tab"),
    pytest.param("SECRET\x1b[31m", id="ansi-escape"),
    pytest.param("SECRET\x7f", id="del"),
    pytest.param("SECRET\u202egnp.exe", id="bidi-override"),
    pytest.param("SECRET\u200bb", id="zero-width-space"),
    pytest.param("\ufeffSECRET", id="byte-order-mark"),
    pytest.param("SECRET\u2028b", id="line-separator"),
    pytest.param("SECRET\u0085b", id="next-line-c1"),
    pytest.param("SECRET\ud800", id="lone-surrogate"),
    pytest.param(" SECRET", id="leading-space"),
    pytest.param("SECRET ", id="trailing-space"),
    pytest.param("\u00a0SECRET", id="leading-nbsp"),
    pytest.param("SECRET\u3000", id="trailing-ideographic-space"),
]

NOT_STRINGS = [
    pytest.param(12345, id="int"),
    pytest.param(b"SECRET", id="bytes"),
    pytest.param(["SECRET"], id="list"),
    pytest.param({"id": "SECRET"}, id="dict"),
    pytest.param(None, id="none"),
]


@pytest.mark.parametrize("tenant_id", VALID_IDS)
def test_valid_ids_are_accepted(tenant_id: str) -> None:
    assert validate_tenant_id(tenant_id) == tenant_id
    with tenant_context(tenant_id):
        assert get_current_tenant() == tenant_id


@pytest.mark.parametrize("tenant_id", INVALID_IDS + NOT_STRINGS)
def test_invalid_ids_raise_a_value_error_that_never_repeats_the_id(tenant_id: object) -> None:
    with pytest.raises(InvalidTenantError) as info:
        validate_tenant_id(tenant_id)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert message.startswith("tenant id")
    assert "SECRET" not in message


@pytest.mark.parametrize("tenant_id", INVALID_IDS + NOT_STRINGS[:-1])
def test_invalid_ids_are_refused_by_every_verb_and_leave_the_context_alone(
    tenant_id: object, cleared: None
) -> None:
    set_tenant("before")
    with pytest.raises(InvalidTenantError):
        set_tenant(tenant_id)  # type: ignore[arg-type]
    with pytest.raises(InvalidTenantError):
        tenant_context(tenant_id)  # type: ignore[arg-type]
    assert get_current_tenant() == "before"


def test_set_get_and_clear(cleared: None) -> None:
    assert get_current_tenant() is None
    assert get_tenant_source() is None
    set_tenant("acme")
    assert get_current_tenant() == "acme"
    assert get_tenant_source() == "manual"
    set_tenant("globex", source="worker")
    assert (get_current_tenant(), get_tenant_source()) == ("globex", "worker")
    set_tenant(None)
    assert get_current_tenant() is None
    assert get_tenant_source() is None


def test_tenant_context_restores_the_previous_value() -> None:
    with tenant_context("outer") as value:
        assert value == "outer"
        with tenant_context("inner", source="header"):
            assert (get_current_tenant(), get_tenant_source()) == ("inner", "header")
            with tenant_context(None):
                assert get_current_tenant() is None
            assert get_current_tenant() == "inner"
        assert (get_current_tenant(), get_tenant_source()) == ("outer", "manual")
    assert get_current_tenant() is None


def test_tenant_context_restores_a_value_set_with_set_tenant(cleared: None) -> None:
    set_tenant("set-by-hand")
    with tenant_context("block"):
        assert get_current_tenant() == "block"
    assert get_current_tenant() == "set-by-hand"


def test_tenant_context_resets_on_exceptions() -> None:
    def fail_inside() -> None:
        with tenant_context("inner"):
            raise RuntimeError("inside")

    with tenant_context("outer"):
        with pytest.raises(RuntimeError, match="inside"):
            fail_inside()
        assert get_current_tenant() == "outer"
    with pytest.raises(RuntimeError, match="inside"):
        fail_inside()
    assert get_current_tenant() is None


def test_the_same_tenant_context_object_can_be_reentered() -> None:
    block = tenant_context("acme")
    with block:
        with tenant_context("other"), block:
            assert get_current_tenant() == "acme"
        assert get_current_tenant() == "acme"
    assert get_current_tenant() is None


@pytest.mark.asyncio
async def test_async_with_restores_nests_and_resets_on_exceptions() -> None:
    async def fail_inside() -> None:
        async with tenant_context("failing"):
            await asyncio.sleep(0)
            raise KeyError("x")

    async with tenant_context("outer") as value:
        assert value == "outer"
        async with tenant_context("inner"):
            await asyncio.sleep(0)
            assert get_current_tenant() == "inner"
        assert get_current_tenant() == "outer"
        with pytest.raises(KeyError):
            await fail_inside()
        assert get_current_tenant() == "outer"
    assert get_current_tenant() is None


@pytest.mark.asyncio
async def test_concurrent_tasks_never_see_each_others_tenant() -> None:
    """200 tasks interleave at every await; each sees only its own tenant."""
    seen: dict[int, set[str | None]] = {}

    async def request(n: int) -> None:
        observed = seen.setdefault(n, set())
        observed.add(get_current_tenant())  # before: nothing
        async with tenant_context(f"tenant-{n}"):
            for _ in range(5):
                await asyncio.sleep(0)
                observed.add(get_current_tenant())
        observed.add(get_current_tenant())  # after: nothing again

    await asyncio.gather(*(request(n) for n in range(200)))
    assert all(seen[n] == {None, f"tenant-{n}"} for n in range(200))
    assert get_current_tenant() is None


@pytest.mark.asyncio
async def test_a_set_inside_a_task_stays_inside_that_task() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def setter() -> None:
        set_tenant("task-a")  # no reset on purpose: the task's context dies with it
        started.set()
        await release.wait()
        assert get_current_tenant() == "task-a"

    async def watcher() -> str | None:
        await started.wait()
        return get_current_tenant()

    task = asyncio.create_task(setter())
    other = await asyncio.create_task(watcher())
    release.set()
    await task
    assert other is None
    assert get_current_tenant() is None


@pytest.mark.asyncio
async def test_a_child_task_gets_a_copy_and_cannot_change_its_parent() -> None:
    async def child() -> str | None:
        inherited = get_current_tenant()
        set_tenant("child")
        return inherited

    async with tenant_context("parent"):
        assert await asyncio.create_task(child()) == "parent"
        assert get_current_tenant() == "parent"


def test_threads_never_see_each_others_tenant() -> None:
    """Eight threads hold different tenants at the same time; none sees another's."""
    barrier = threading.Barrier(9)
    seen: dict[int, list[str | None]] = {}

    def worker(n: int) -> None:
        observed = seen.setdefault(n, [get_current_tenant()])
        with tenant_context(f"thread-{n}"):
            barrier.wait(timeout=5)  # every thread is now inside its block
            observed.append(get_current_tenant())
            barrier.wait(timeout=5)

    with tenant_context("main"):
        threads = [
            threading.Thread(target=contextvars.Context().run, args=(worker, n)) for n in range(8)
        ]
        for thread in threads:
            thread.start()
        barrier.wait(timeout=5)
        main_during = get_current_tenant()
        barrier.wait(timeout=5)
        for thread in threads:
            thread.join(timeout=5)
    assert main_during == "main"
    assert seen == {n: [None, f"thread-{n}"] for n in range(8)}


def test_a_configured_pattern_applies_to_every_id() -> None:
    set_tenant_pattern(r"[a-z]+")
    try:
        assert validate_tenant_id("acme") == "acme"
        with pytest.raises(InvalidTenantError, match="pattern"):
            validate_tenant_id("ACME")
        with pytest.raises(InvalidTenantError, match="pattern"):
            tenant_context("org_123")
    finally:
        set_tenant_pattern(None)
    assert validate_tenant_id("org_123") == "org_123"


def test_an_explicit_pattern_overrides_none() -> None:
    import re

    rule = re.compile(r"org_[0-9]+")
    assert validate_tenant_id("org_42", rule) == "org_42"
    with pytest.raises(InvalidTenantError):
        validate_tenant_id("org_x", rule)


def test_require_tenant_returns_the_tenant_or_refuses_with_401() -> None:
    """require_tenant gives the current id, or the 401 Rejection every middleware answers."""
    with pytest.raises(Rejection) as refused:
        require_tenant()
    assert (refused.value.status, refused.value.code) == (401, "missing_tenant")
    with tenant_context("acme"):
        assert require_tenant() == "acme"
