"""Per-tenant metrics recorded by the request lifecycle, the agent API and the rejection
paths; the tenant cap; metrics that never break a request; readers chosen by init()."""

from __future__ import annotations

import asyncio
import os
import random
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import tenant_trace
from tenant_trace import ConfigurationError, metrics
from tenant_trace.context import Tenant, require_tenant
from tenant_trace.metrics import (
    ADMIT_AFTER,
    OTHER,
    RUN_DURATION_BUCKETS,
    TenantCap,
    build_metric_readers,
)
from tenant_trace.server.asgi import TenantTraceASGIMiddleware
from tenant_trace.server.wsgi import TenantTraceWSGIMiddleware
from tests.conftest import Spans
from tests.fresh import run_fresh

ROOT = Path(__file__).resolve().parent.parent


class Points:
    """The metric points an in-memory reader collected."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self._reader = reader

    def of(self, name: str) -> list[Any]:
        data = self._reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def attributes(self, name: str) -> list[dict[str, Any]]:
        return sorted((dict(p.attributes) for p in self.of(name)), key=repr)


@pytest.fixture
def points() -> Iterator[Points]:
    """Metrics go to a fresh provider with an in-memory reader for this test."""
    reader = InMemoryMetricReader()
    saved, kept = metrics.record._instruments, set(metrics.record._policy_kept)
    metrics.record._policy_kept.clear()  # the allowed= tenants of other tests' middleware
    metrics.configure(meter_provider=MeterProvider([reader], shutdown_on_exit=False))
    yield Points(reader)
    metrics.record._instruments = saved
    metrics.record._policy_kept.update(kept)


# --- an app -----------------------------------------------------------------------------------


class Boom(Exception):
    pass


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"tenant": tenant_trace.get_current_tenant()})


async def boom(request: Request) -> JSONResponse:
    raise Boom


async def unavailable(request: Request) -> PlainTextResponse:
    return PlainTextResponse("busy", status_code=503)


async def missing(request: Request) -> PlainTextResponse:
    return PlainTextResponse("no such thing", status_code=404)


async def stale(request: Request) -> JSONResponse:
    with tenant_trace.start_trace(agent_name="support") as run:
        with tenant_trace.tool_call("get_account_data") as tool:
            tool.fail("48 hours old", error_type="StaleData")
        run.fail("stale account data", error_type="StaleData")
    return JSONResponse({})


async def agent(request: Request) -> JSONResponse:
    with tenant_trace.start_trace(agent_name="support"):
        with tenant_trace.llm_call("model-a", provider="demo") as llm:
            llm.record_usage(input_tokens=100, output_tokens=20)
        with tenant_trace.tool_call("lookup_order"):
            pass
    return JSONResponse({})


def make_app(**options: Any) -> TestClient:
    routes = [
        Route(path, endpoint)
        for path, endpoint in [
            ("/", ok),
            ("/boom", boom),
            ("/busy", unavailable),
            ("/missing", missing),
            ("/stale", stale),
            ("/agent", agent),
        ]
    ]
    app = TenantTraceASGIMiddleware(Starlette(routes=routes), header="X-Tenant-ID", **options)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client() -> TestClient:
    return make_app()


def tenant(name: str) -> dict[str, str]:
    return {"X-Tenant-ID": name}


# --- runs -------------------------------------------------------------------------------------


def test_a_request_records_its_duration_by_tenant(client: TestClient, points: Points) -> None:
    started = time.monotonic()
    assert client.get("/", headers=tenant("acme")).status_code == 200
    elapsed = time.monotonic() - started
    (point,) = points.of("tenant_trace.run.duration")
    assert dict(point.attributes) == {"tenant.id": "acme", "outcome": "success"}
    assert point.count == 1
    assert 0 < point.sum <= elapsed
    assert tuple(point.explicit_bounds) == RUN_DURATION_BUCKETS
    assert RUN_DURATION_BUCKETS[-1] >= 300, "buckets must reach agent runs of several minutes"


@pytest.mark.parametrize(
    ("path", "status", "error_type"),
    [
        ("/boom", 500, "Boom"),
        ("/busy", 503, "503"),
        ("/stale", 200, "StaleData"),
    ],
)
def test_a_failed_request_is_an_error_with_its_type(
    client: TestClient, points: Points, path: str, status: int, error_type: str
) -> None:
    """An exception, a 5xx answer and a failed agent run are errors, each with its type."""
    assert client.get(path, headers=tenant("acme")).status_code == status
    assert points.attributes("tenant_trace.run.duration") == [
        {"tenant.id": "acme", "outcome": "error", "error.type": error_type}
    ]


def test_a_client_error_is_no_run_failure(client: TestClient, points: Points) -> None:
    assert client.get("/missing", headers=tenant("acme")).status_code == 404
    assert points.attributes("tenant_trace.run.duration") == [
        {"tenant.id": "acme", "outcome": "success"}
    ]


def test_runs_are_measured_with_tracing_off(points: Points) -> None:
    client = make_app(tracing=False)
    client.get("/", headers=tenant("acme"))
    client.get("/boom", headers=tenant("acme"))
    assert points.attributes("tenant_trace.run.duration") == [
        {"tenant.id": "acme", "outcome": "error", "error.type": "Boom"},
        {"tenant.id": "acme", "outcome": "success"},
    ]


def test_a_run_inside_a_request_is_counted_once(client: TestClient, points: Points) -> None:
    client.get("/agent", headers=tenant("acme"))
    (point,) = points.of("tenant_trace.run.duration")
    assert point.count == 1


def test_a_run_outside_a_request_is_measured_with_its_tenant(points: Points) -> None:
    with tenant_trace.start_trace(agent_name="worker", tenant="acme"):
        pass
    with pytest.raises(Boom), tenant_trace.start_trace(agent_name="worker", tenant="globex"):
        raise Boom
    with (
        tenant_trace.tenant_context("initech"),
        tenant_trace.start_trace(agent_name="worker"),
        tenant_trace.sub_agent("helper") as sub,
    ):
        sub.fail("gave up", error_type="GaveUp")
    assert points.attributes("tenant_trace.run.duration") == [
        {"tenant.id": "acme", "outcome": "success"},
        {"tenant.id": "globex", "outcome": "error", "error.type": "Boom"},
        {"tenant.id": "initech", "outcome": "error", "error.type": "GaveUp"},
    ]


async def test_interleaved_requests_keep_their_own_tenant_on_every_point(points: Points) -> None:
    """Many concurrent requests of several tenants: each one's tokens, tool calls and run land
    on its own tenant (every tenant uses a token count of its own)."""
    tenants = {f"tenant-{i}": 1000 * (i + 1) for i in range(5)}

    async def work(request: Request) -> JSONResponse:
        name = tenant_trace.get_current_tenant()
        assert name is not None
        with tenant_trace.start_trace(agent_name="support"):
            await asyncio.sleep(random.uniform(0, 0.005))
            with tenant_trace.llm_call("model-a") as llm:
                await asyncio.sleep(random.uniform(0, 0.005))
                llm.record_usage(input_tokens=tenants[name], output_tokens=1)
            with tenant_trace.tool_call(f"tool-of-{name}"):
                await asyncio.sleep(random.uniform(0, 0.005))
        return JSONResponse({})

    app = TenantTraceASGIMiddleware(Starlette(routes=[Route("/", work)]), header="X-Tenant-ID")
    sent = [random.choice(list(tenants)) for _ in range(300)]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        responses = await asyncio.gather(*(client.get("/", headers=tenant(t)) for t in sent))
    assert all(r.status_code == 200 for r in responses)
    expected = Counter(sent)
    runs = {p.attributes["tenant.id"]: p.count for p in points.of("tenant_trace.run.duration")}
    assert runs == expected
    tokens = {
        p.attributes["tenant.id"]: p.value
        for p in points.of("tenant_trace.usage.tokens")
        if p.attributes["gen_ai.token.type"] == "input"
    }
    assert tokens == {t: n * tenants[t] for t, n in expected.items()}
    tools = {
        (p.attributes["tenant.id"], p.attributes["gen_ai.tool.name"]): p.value
        for p in points.of("tenant_trace.tool.calls")
    }
    assert tools == {(t, f"tool-of-{t}"): n for t, n in expected.items()}


# --- LLM and tool calls -----------------------------------------------------------------------


def test_token_usage_and_llm_duration(client: TestClient, points: Points) -> None:
    client.get("/agent", headers=tenant("acme"))
    usage = {p.attributes["gen_ai.token.type"]: p for p in points.of("tenant_trace.usage.tokens")}
    assert set(usage) == {"input", "output"}
    assert (usage["input"].value, usage["output"].value) == (100, 20)
    call = {"gen_ai.provider.name": "demo", "gen_ai.request.model": "model-a"}
    assert dict(usage["input"].attributes) == {
        "tenant.id": "acme",
        **call,
        "gen_ai.token.type": "input",
    }
    # model-a has no price: its cost is unknown, never 0, and the call is counted as such.
    assert points.of("tenant_trace.usage.cost") == []
    (unpriced,) = points.of("tenant_trace.usage.unpriced_calls")
    assert (dict(unpriced.attributes), unpriced.value) == ({"tenant.id": "acme", **call}, 1)
    (duration,) = points.of("tenant_trace.llm.duration")
    assert dict(duration.attributes) == {
        "tenant.id": "acme",
        "gen_ai.operation.name": "chat",
        **call,
    }
    assert duration.count == 1


def test_an_llm_call_that_raises_has_an_error_type(points: Points) -> None:
    with tenant_trace.tenant_context("acme"), pytest.raises(Boom), tenant_trace.llm_call("model-a"):
        raise Boom
    assert points.attributes("tenant_trace.llm.duration") == [
        {
            "tenant.id": "acme",
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "unknown",  # no provider= and no init(genai_provider=)
            "gen_ai.request.model": "model-a",
            "error.type": "Boom",
        }
    ]


def test_tool_calls_by_tool_and_outcome(client: TestClient, points: Points) -> None:
    client.get("/agent", headers=tenant("acme"))
    client.get("/stale", headers=tenant("acme"))
    with (
        tenant_trace.tenant_context("acme"),
        pytest.raises(Boom),
        tenant_trace.tool_call("lookup_order"),
    ):
        raise Boom
    counts = {
        (p.attributes["gen_ai.tool.name"], p.attributes["outcome"]): p.value
        for p in points.of("tenant_trace.tool.calls")
        if p.attributes["tenant.id"] == "acme"
    }
    assert counts == {
        ("lookup_order", "success"): 1,
        ("lookup_order", "error"): 1,
        ("get_account_data", "error"): 1,
    }


def test_a_decorated_tool_is_counted(points: Points) -> None:
    @tenant_trace.tool_call("search")
    def search() -> str:
        return "found"

    with tenant_trace.tenant_context("acme"):
        search()
    assert points.attributes("tenant_trace.tool.calls") == [
        {"tenant.id": "acme", "gen_ai.tool.name": "search", "outcome": "success"}
    ]


# --- rejections -------------------------------------------------------------------------------


def test_asgi_rejections_are_counted_by_reason(client: TestClient, points: Points) -> None:
    assert client.get("/").status_code == 401
    assert client.get("/", headers=tenant(" padded ")).status_code == 400

    async def needs_tenant(scope: Any, receive: Any, send: Any) -> None:
        require_tenant()  # a Rejection raised by the application, answered by the middleware

    optional = TenantTraceASGIMiddleware(needs_tenant, header="X-Tenant-ID", required=False)
    assert TestClient(optional).get("/").status_code == 401
    counts = {p.attributes["reason"]: p.value for p in points.of("tenant_trace.requests.rejected")}
    assert counts == {"missing_tenant": 2, "invalid_tenant": 1}
    assert all(set(p.attributes) == {"reason"} for p in points.of("tenant_trace.requests.rejected"))


def test_wsgi_rejections_are_counted(points: Points) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    environ: dict[str, Any] = {"PATH_INFO": "/"}
    setup_testing_defaults(environ)
    statuses = []
    body = TenantTraceWSGIMiddleware(app, header="X-Tenant-ID")(
        environ, lambda status, headers, exc_info=None: statuses.append(status)
    )
    assert b"".join(body) and statuses == ["401 Unauthorized"]
    assert points.attributes("tenant_trace.requests.rejected") == [{"reason": "missing_tenant"}]


def test_django_rejection_responses_are_counted(points: Points) -> None:
    """Django's answers to rejections go through the core's one refusal, which counts them."""
    from django.test import Client

    import tests.test_django  # noqa: F401  (configures Django the way the Django tests do)

    assert Client().get("/whoami").status_code == 401
    assert points.attributes("tenant_trace.requests.rejected") == [{"reason": "missing_tenant"}]


# --- the tenant cap ---------------------------------------------------------------------------


def tenant_series(registry: CollectorRegistry, family: str) -> set[str]:
    text = generate_latest(registry).decode()
    return {
        sample.labels["tenant_id"]
        for metric in text_string_to_metric_families(text)
        if metric.name == family
        for sample in metric.samples
        if "tenant_id" in sample.labels
    }


def test_5000_tenants_make_at_most_n_plus_1_series() -> None:
    """Through the Prometheus exposition, as a Prometheus server would scrape it."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    saved = metrics.record._instruments
    provider = MeterProvider([reader], shutdown_on_exit=False)
    metrics.configure(meter_provider=provider, max_tenants=1000, always_kept=())
    try:
        started = time.monotonic()
        for i in range(5000):  # each with sustained traffic, so that every slot can be taken
            for _ in range(ADMIT_AFTER):
                metrics.record_run(Tenant(f"tenant-{i:05d}", "header"), started, None)
        series = tenant_series(registry, "tenant_trace_run_duration_seconds")
        assert len(series) == 1000 + 1
        assert OTHER in series
        assert "tenant-00000" in series and "tenant-04999" not in series
        text = generate_latest(registry).decode()
        assert "tenant_trace_metrics_tenant_overflow_total" in text
        overflow = next(
            s.value
            for m in text_string_to_metric_families(text)
            for s in m.samples
            if s.name == "tenant_trace_metrics_tenant_overflow_total"
        )
        # The second half of the cap waited ADMIT_AFTER runs; the rest never got in.
        assert overflow == 500 * (ADMIT_AFTER - 1) + 4000 * ADMIT_AFTER
    finally:
        provider.shutdown()
        metrics.record._instruments = saved


def test_spans_keep_the_real_tenant_beyond_the_cap(
    client: TestClient, points: Points, spans: Spans
) -> None:
    metrics.configure(max_tenants=1, always_kept=())
    client.get("/", headers=tenant("first"))
    client.get("/", headers=tenant("second"))
    assert {a["tenant.id"] for a in points.attributes("tenant_trace.run.duration")} == {
        "first",
        OTHER,
    }
    assert sorted(s.attributes["tenant.id"] for s in spans.named("agent.run")) == [  # type: ignore[index]
        "first",
        "second",
    ]
    (overflow,) = points.of("tenant_trace.metrics.tenant_overflow")
    assert overflow.value == 1


def runs_of(points: Points, name: str) -> int:
    return sum(
        p.count
        for p in points.of("tenant_trace.run.duration")
        if p.attributes.get("tenant.id") == name
    )


def test_a_flood_of_made_up_tenants_does_not_push_a_real_one_out(
    client: TestClient, points: Points
) -> None:
    """The hardening issue, item 6: 1,000 made-up header tenants, one request each, with a
    cap of 100; then a real tenant's 30 runs, failing, still get a series of their own."""
    metrics.configure(max_tenants=100, always_kept=())
    for i in range(1000):
        assert client.get("/", headers=tenant(f"made-up-{i}")).status_code == 200
    for _ in range(30):
        assert client.get("/boom", headers=tenant("acme")).status_code == 500
    assert runs_of(points, "acme") == 30 - (ADMIT_AFTER - 1)
    errors = [
        p
        for p in points.of("tenant_trace.run.duration")
        if dict(p.attributes) == {"tenant.id": "acme", "outcome": "error", "error.type": "Boom"}
    ]
    assert errors, "its failures are on its own series, where its alerts can fire"
    kept = {a.get("tenant.id") for a in points.attributes("tenant_trace.run.duration")}
    assert len(kept - {OTHER}) <= 100


def test_allowed_tenants_are_always_kept_on_metrics(points: Points) -> None:
    metrics.configure(max_tenants=0, always_kept=())
    client = make_app(allowed={"vip", "acme"})
    for name in ("vip", "acme"):
        assert client.get("/", headers=tenant(name)).status_code == 200
        assert runs_of(points, name) == 1
    metrics.configure(max_tenants=0)  # init() again later: the allowed stay kept
    assert metrics.record._get().cap.label("vip") == "vip"


@pytest.mark.parametrize("reserved", [OTHER, "__default__"])
def test_reserved_ids_cannot_be_claimed(client: TestClient, reserved: str) -> None:
    response = client.get("/", headers=tenant(reserved))
    assert response.status_code == 400
    assert "reserved" in response.json()["detail"]
    with pytest.raises(tenant_trace.InvalidTenantError):
        tenant_trace.set_tenant(reserved)


def test_configure_keeps_what_is_not_given(points: Points) -> None:
    metrics.configure(max_tenants=5, always_kept={"vip"})
    metrics.configure(max_tenants=7)
    assert (metrics.record._get().cap.limit, metrics.record._get().cap.always) == (7, {"vip"})
    metrics.configure(always_kept=())
    assert (metrics.record._get().cap.limit, metrics.record._get().cap.always) == (7, frozenset())
    metrics.record_rejection("missing_tenant")
    assert points.of("tenant_trace.requests.rejected"), "the provider was kept too"


def test_allow_listed_tenants_are_always_kept() -> None:
    cap = TenantCap(2, always={"vip"})
    assert [cap.label(t, run=True) for t in ["a", "b", "c", "vip", "a"]] == [
        "a",
        OTHER,  # the second half of the cap waits for sustained traffic
        OTHER,
        "vip",
        "a",
    ]
    assert cap.size == 4
    assert TenantCap(0, always={"vip"}).label("a") == OTHER


def test_the_cap_is_exact_under_threads() -> None:
    cap = TenantCap(1000)
    labels: dict[str, set[str]] = {}
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(600):
            name = f"t{(n * 600 + i) % 3000}"  # threads overlap on some ids
            for _ in range(ADMIT_AFTER):
                labels.setdefault(name, set()).add(cap.label(name, run=True))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kept = {name for name, got in labels.items() if name in got}
    assert len(kept) == 1000
    assert all(got <= {name, OTHER} for name, got in labels.items()), "a label was mixed up"
    assert all(cap.label(name) == name for name in kept), "a kept tenant was dropped"


@pytest.mark.parametrize(
    ("limit", "always"),
    [(-1, ()), (True, ()), ("10", ()), (10, "vip")],
)
def test_bad_cap_options_are_configuration_errors(limit: Any, always: Any) -> None:
    with pytest.raises(ConfigurationError):
        TenantCap(limit, always)


# --- never breaks a request -------------------------------------------------------------------


class Broken:
    def record(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("metrics backend is down")

    add = record


def test_failing_instruments_never_reach_the_application(
    client: TestClient, points: Points
) -> None:
    instruments = metrics.record._get()
    for name in (
        "run_duration",
        "usage_tokens",
        "usage_cost",
        "unpriced",
        "llm_duration",
        "tools",
        "rejected",
        "overflow",
    ):
        setattr(instruments, name, Broken())
    assert client.get("/agent", headers=tenant("acme")).status_code == 200
    assert client.get("/stale", headers=tenant("acme")).status_code == 200
    assert client.get("/").status_code == 401
    with tenant_trace.start_trace(agent_name="worker", tenant="acme"):
        pass


# --- readers ----------------------------------------------------------------------------------


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    return monkeypatch


def exporter_names(readers: list[Any]) -> list[str]:
    return [
        type(r._exporter).__name__
        if isinstance(r, PeriodicExportingMetricReader)
        else type(r).__name__
        for r in readers
    ]


def test_no_metrics_exporter_without_configuration(env: pytest.MonkeyPatch) -> None:
    assert build_metric_readers(None) == []


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"OTEL_METRICS_EXPORTER": "console"}, ["ConsoleMetricExporter"]),
        ({"OTEL_METRICS_EXPORTER": "none"}, []),
        ({"OTEL_METRICS_EXPORTER": "otlp"}, ["OTLPMetricExporter"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["OTLPMetricExporter"]),
        (
            {"OTEL_METRICS_EXPORTER": "otlp, console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            ["OTLPMetricExporter", "ConsoleMetricExporter"],
        ),
    ],
)
def test_readers_from_the_environment(
    env: pytest.MonkeyPatch, variables: dict[str, str], expected: list[str]
) -> None:
    for name, value in variables.items():
        env.setenv(name, value)
    readers = build_metric_readers(None)
    try:
        assert exporter_names(readers) == expected
    finally:
        for reader in readers:
            reader.shutdown()


def test_an_explicit_reader_is_used_as_given(env: pytest.MonkeyPatch) -> None:
    reader = InMemoryMetricReader()
    assert build_metric_readers(reader) == [reader]
    env.setenv("OTEL_METRICS_EXPORTER", "console")
    assert build_metric_readers("none") == []


@pytest.mark.parametrize("name", ["statsd", "none, carbon"])
def test_unknown_metrics_exporters_are_configuration_errors(
    env: pytest.MonkeyPatch, name: str
) -> None:
    with pytest.raises(ConfigurationError, match="unknown metrics exporter"):
        build_metric_readers(name)


def run(code: str, **variables: str) -> dict[str, Any]:
    """Run `code` in a fresh interpreter with only the OTEL_* variables given (and no trace
    exporter); return the JSON it printed last."""
    result, done = run_fresh(textwrap.dedent(code), **variables, OTEL_TRACES_EXPORTER="none")
    result["stderr"] = done.stderr
    return result


def test_init_serves_prometheus_metrics() -> None:
    from tests.servers.process import free_port

    port = free_port()
    result = run(
        f"""
        import json, urllib.request
        from opentelemetry import metrics
        import tenant_trace
        tenant_trace.init(metrics="prometheus", metrics_port={port}, max_metric_tenants=5,
                          sampler=tenant_trace.TenantSampler(0.5))
        with tenant_trace.start_trace(agent_name="worker", tenant="acme"):
            pass
        text = urllib.request.urlopen("http://localhost:{port}/metrics").read().decode()
        again = tenant_trace.init(metrics="prometheus")
        print(json.dumps({{"text": text, "provider": type(metrics.get_meter_provider()).__name__}}))
        """
    )
    assert "tenant_trace_run_duration_seconds_count{" in result["text"]
    assert 'tenant_id="acme"' in result["text"]
    assert result["provider"] == "MeterProvider"


def test_init_keeps_the_applications_meter_provider() -> None:
    result = run(
        """
        import json
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        import tenant_trace

        reader = InMemoryMetricReader()
        mine = MeterProvider(metric_readers=[reader])
        metrics.set_meter_provider(mine)
        tenant_trace.init(metrics="console")
        with tenant_trace.start_trace(agent_name="worker", tenant="acme"):
            pass
        names = [m.name for rm in reader.get_metrics_data().resource_metrics
                 for sm in rm.scope_metrics for m in sm.metrics]
        print(json.dumps({"kept": metrics.get_meter_provider() is mine, "names": names}))
        """,
        OTEL_METRICS_EXPORTER="prometheus",
    )
    assert result["kept"] is True
    assert "tenant_trace.run.duration" in result["names"]
    assert "MeterProvider is kept" in result["stderr"]


def test_every_instrument_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    doc = metrics.__doc__ or ""
    for name in [
        "tenant_trace.run.duration",
        "tenant_trace.usage.tokens",
        "tenant_trace.usage.cost",
        "tenant_trace.usage.unpriced_calls",
        "tenant_trace.llm.duration",
        "tenant_trace.tool.calls",
        "tenant_trace.requests.rejected",
        "tenant_trace.metrics.tenant_overflow",
    ]:
        assert name in doc and name in readme, name
