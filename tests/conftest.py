"""Shared fixtures: one real SDK TracerProvider with an in-memory exporter for the session,
and a check after every test that no tenant, request or span is left in the context."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tenant_trace
from tenant_trace.server.lifecycle import current_request

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(PROVIDER)
# The application configured its own provider first; init() adds the tenant processor to it.
tenant_trace.init()

# The `exp` of test tokens, 2100-01-01 UTC: a token made when the tests are collected must not
# expire before its test runs, however long the suite takes.
FAR_EXP = 4_102_444_800


class FakeClock:
    """A clock for code that takes one (``clock=``): it stands still until advanced."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# Seconds a test marked real_server may take (the others: `timeout` in pyproject.toml): it
# starts processes and sends thousands of requests, on a machine that may be busy.
REAL_SERVER_TIMEOUT = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("real_server") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(REAL_SERVER_TIMEOUT))


class Spans:
    """The spans finished during one test."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    def all(self) -> list[ReadableSpan]:
        return list(self._exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"expected one {name!r} span, got {len(found)}: {self.all()}"
        return found[0]

    def clear(self) -> None:
        self._exporter.clear()


@pytest.fixture
def spans() -> Iterator[Spans]:
    EXPORTER.clear()
    yield Spans(EXPORTER)
    EXPORTER.clear()


@pytest.fixture
def provider() -> TracerProvider:
    return PROVIDER


@pytest.fixture(autouse=True)
def _context_is_clean() -> Iterator[None]:
    """Every test must leave no tenant, request or active span behind."""
    assert tenant_trace.get_current_tenant() is None, "a tenant leaked into this test"
    yield
    assert tenant_trace.get_current_tenant() is None, "the test left a tenant in the context"
    assert current_request() is None, "the test left a request in the context"
    assert not trace.get_current_span().get_span_context().is_valid, "a span was left current"
