"""Per-tenant routing in process: the routes' checks, which destination each span goes to (whole
traces, by the stamped tenant only), isolation and drops per destination, bounds, and the
redaction safety net on routed spans. The real-server version is test_routing_servers.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import tenant_trace
from tenant_trace import ConfigurationError
from tenant_trace.export import routing
from tenant_trace.export.processor import TenantSpanProcessor
from tenant_trace.export.routes import MAX_DESTINATIONS, Destination, Routes, parse_routes
from tenant_trace.export.routing import RoutingSpanProcessor
from tests.servers.otlp import eventually


class Destinations:
    """An in-memory exporter per destination, made when the router asks for it."""

    def __init__(self, special: dict[str, SpanExporter] | None = None) -> None:
        self.made: dict[str, SpanExporter] = dict(special or {})
        self.asked: list[str] = []

    def __call__(self, destination: Destination) -> SpanExporter:
        self.asked.append(destination.name)
        return self.made.setdefault(destination.name, InMemorySpanExporter())

    def names(self, destination: str) -> list[str]:
        exporter = self.made.get(destination)
        assert exporter is None or isinstance(exporter, InMemorySpanExporter)
        return sorted(s.name for s in exporter.get_finished_spans()) if exporter else []


class Setup:
    def __init__(self, routes: Routes, **options: Any) -> None:
        self.destinations = Destinations(options.pop("special", None))
        self.default = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.router = RoutingSpanProcessor(
            routes,
            [SimpleSpanProcessor(self.default)],
            exporter=self.destinations,
            meter_provider=MeterProvider([self.reader]),
            schedule_delay_millis=10,
            **options,
        )
        self.provider = TracerProvider(sampler=options.pop("sampler", None))
        self.provider.add_span_processor(TenantSpanProcessor())
        self.provider.add_span_processor(self.router)
        self.tracer = self.provider.get_tracer("some-library")

    def names(self, destination: str) -> list[str]:
        for lane in self.router.lanes.made().values():
            lane.processor.force_flush()
        return self.destinations.names(destination)

    def defaults(self) -> list[str]:
        return sorted(s.name for s in self.default.get_finished_spans())

    def dropped(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == routing.DROPPED:
                        for point in metric.data.data_points:
                            key = (point.attributes["destination"], point.attributes["reason"])
                            counts[key] = counts.get(key, 0) + point.value
        return counts


@pytest.fixture
def setup() -> Iterator[Setup]:
    routes = parse_routes({"acme": "http://a:4318", "globex": "http://g:4318"})
    assert routes is not None
    made = Setup(routes)
    yield made
    made.provider.shutdown()


def test_spans_go_to_their_tenants_destination_only(setup: Setup) -> None:
    """Spans of every tracer go where their tenant's route says; no tenant, or a tenant
    without a route: the default exporters."""
    for tenant in ("acme", "globex", "initech", None):
        with (
            tenant_trace.tenant_context(tenant),
            setup.tracer.start_as_current_span(f"root {tenant}"),
            trace.get_tracer("other-library", tracer_provider=setup.provider).start_as_current_span(
                f"child {tenant}"
            ),
        ):
            pass
    assert setup.names("acme") == ["child acme", "root acme"]
    assert setup.names("globex") == ["child globex", "root globex"]
    assert setup.defaults() == ["child None", "child initech", "root None", "root initech"]


def test_a_server_span_stamped_later_takes_its_early_children_along(setup: Setup) -> None:
    """An HTTP server span opened before the tenant was known, a child that ended before
    then (an outer middleware's), and the request's spans: all to the tenant, once the
    lifecycle stamped the server span."""
    with setup.tracer.start_as_current_span("GET /chat") as server:
        with setup.tracer.start_as_current_span("edge.check"):
            pass
        assert setup.names("acme") == [] and setup.defaults() == []  # waiting
        with tenant_trace.tenant_context("acme"):
            server.set_attribute("tenant.id", "acme")  # what the lifecycle does
            with setup.tracer.start_as_current_span("agent.run"):
                pass
    assert setup.names("acme") == ["GET /chat", "agent.run", "edge.check"]
    assert setup.defaults() == []


def test_a_span_started_before_the_tenant_was_known_may_outlive_its_parent(setup: Setup) -> None:
    """A child of the server span started before the tenant was known, still running when
    the (stamped) server span ends: the tenant is the one its parent got."""
    with setup.tracer.start_as_current_span("GET /chat") as server:
        background = setup.tracer.start_span("background")
        server.set_attribute("tenant.id", "acme")
    background.end()
    assert setup.names("acme") == ["GET /chat", "background"]
    assert setup.defaults() == []


def test_children_without_the_tenant_follow_their_parent(setup: Setup) -> None:
    """A child started where no tenant is current (a fresh context), also one that outlives
    its parent (background work), and its own children: the parent's tenant."""
    with tenant_trace.tenant_context("globex"), setup.tracer.start_as_current_span("request"):
        context = otel_context.get_current()
    # No tenant is current here.
    with (
        setup.tracer.start_as_current_span("late", context=context),
        setup.tracer.start_as_current_span("later"),
    ):
        pass
    assert setup.names("globex") == ["late", "later", "request"]
    assert setup.defaults() == []


def test_a_remote_parent_is_never_followed(setup: Setup) -> None:
    """A client's traceparent naming an acme span (trace and span id) does not make a span
    of a request without a tenant acme's."""
    with tenant_trace.tenant_context("acme"), setup.tracer.start_as_current_span("acme's") as span:
        known = span.get_span_context()
    forged = SpanContext(known.trace_id, known.span_id, True, TraceFlags(1))
    context = trace.set_span_in_context(NonRecordingSpan(forged))
    with (
        setup.tracer.start_as_current_span("client-sent", context=context),
        setup.tracer.start_as_current_span("its child"),
    ):
        pass
    assert setup.names("acme") == ["acme's"]
    assert setup.defaults() == ["client-sent", "its child"]


def test_a_baggage_tenant_is_not_a_routing_key(setup: Setup) -> None:
    """Only the stamped ``tenant.id`` routes: a ``tenant.id`` in baggage does nothing."""
    from opentelemetry import baggage

    token = otel_context.attach(baggage.set_baggage("tenant.id", "acme"))
    try:
        with setup.tracer.start_as_current_span("baggage says acme"):
            pass
    finally:
        otel_context.detach(token)
    assert setup.names("acme") == []
    assert setup.defaults() == ["baggage says acme"]


@pytest.mark.parametrize(
    ("unrouted", "mirror", "default"),
    [
        ("default", False, ["none", "unrouted"]),
        ("drop", False, []),
        ("default", True, ["acme", "none", "unrouted"]),
        ("drop", True, ["acme"]),
    ],
)
def test_unrouted_and_mirror(unrouted: str, mirror: bool, default: list[str]) -> None:
    """``unrouted`` decides for tenants without a route and spans of none; ``mirror`` also
    sends routed spans to the default exporters."""
    routes = parse_routes({"acme": "http://a:4318"}, unrouted, mirror)
    assert routes is not None
    made = Setup(routes)
    for tenant, name in (("acme", "acme"), ("initech", "unrouted"), (None, "none")):
        with tenant_trace.tenant_context(tenant), made.tracer.start_as_current_span(name):
            pass
    assert made.names("acme") == ["acme"]
    assert made.defaults() == default
    made.provider.shutdown()


def test_destinations_are_made_lazily_and_shared(setup: Setup) -> None:
    """A destination's exporter and thread are made at its first span; tenants with the same
    destination share one."""
    routes = parse_routes(
        {"b": "http://shared:4318", "a": "http://shared:4318", "c": "http://other:4318"}
    )
    assert routes is not None
    assert routes.destinations["a"] is not routes.destinations["b"]
    assert routes.destinations["a"] == routes.destinations["b"]
    assert routes.destinations["b"].name == "a"  # named after the first tenant using it
    made = Setup(routes)
    assert made.destinations.asked == []
    for tenant in ("a", "b", "a"):
        with tenant_trace.tenant_context(tenant), made.tracer.start_as_current_span(tenant):
            pass
    assert made.destinations.asked == ["a"]
    assert made.names("a") == ["a", "a", "b"]
    made.provider.shutdown()


def test_routed_spans_are_redacted() -> None:
    """The redaction safety net scrubs routed spans on their destination's thread."""
    routes = parse_routes({"acme": "http://a:4318"})
    assert routes is not None
    made = Setup(routes, redactor=tenant_trace.Redactor())
    with tenant_trace.tenant_context("acme"), made.tracer.start_as_current_span("s") as span:
        span.set_attribute("note", "write to jane.doe@example.com")
    made.names("acme")
    exported = made.destinations.made["acme"]
    assert isinstance(exported, InMemorySpanExporter)
    assert exported.get_finished_spans()[0].attributes == {
        "tenant.id": "acme",
        "tenant.source": "manual",
        "note": "write to <EMAIL>",
    }
    made.provider.shutdown()


class Hanging(SpanExporter):
    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        self.release.wait(60)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


class Failing(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.FAILURE


def test_a_stuck_destination_drops_only_its_own_spans_and_counts_them() -> None:
    """acme's exporter hangs: acme's lane fills up to its bound (32) and counts every span it
    drops (``destination="acme"``); globex's 20 spans all arrive, and none is dropped; a
    destination whose exporter fails counts those as ``export_failed``."""
    routes = parse_routes({"acme": "http://a:4318", "globex": "http://g:4318", "c": "http://c"})
    assert routes is not None
    hanging = Hanging()
    made = Setup(
        routes, special={"acme": hanging, "c": Failing()}, limit=32, max_export_batch_size=4
    )
    try:
        for i in range(100):
            with tenant_trace.tenant_context("acme"), made.tracer.start_as_current_span(f"a{i}"):
                pass
            if i % 5 == 0:
                with (
                    tenant_trace.tenant_context("globex"),
                    made.tracer.start_as_current_span(f"g{i}"),
                ):
                    pass
        for _ in range(3):
            with tenant_trace.tenant_context("c"), made.tracer.start_as_current_span("c"):
                pass
        globex = made.destinations
        assert eventually(lambda: len(globex.names("globex")) == 20)
        assert eventually(lambda: hanging.calls == 1)
        lanes = made.router.lanes.made()
        lanes["c"].processor.force_flush()
        dropped = made.dropped()
        # 32 spans wait, 4 of them in the export that hangs: the other 68 are dropped.
        assert dropped[("acme", "queue_full")] == 100 - 32
        assert ("globex", "queue_full") not in dropped
        assert dropped[("c", "export_failed")] == 3
        assert lanes["globex"]._pending == 0
    finally:
        hanging.release.set()
        made.provider.shutdown()


class RecordOnly(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "RecordOnly"


def test_spans_not_sampled_are_never_queued() -> None:
    """Recorded but not sampled spans reach the router; they take no room in a lane."""
    routes = parse_routes({"acme": "http://a:4318"})
    assert routes is not None
    made = Setup(routes)
    made.provider = TracerProvider(sampler=RecordOnly())
    made.provider.add_span_processor(TenantSpanProcessor())
    made.provider.add_span_processor(made.router)
    for _ in range(5):
        with (
            tenant_trace.tenant_context("acme"),
            made.provider.get_tracer("t").start_as_current_span("s"),
        ):
            pass
    assert made.names("acme") == []
    assert made.router.lanes.made()["acme"]._pending == 0
    made.provider.shutdown()


def test_tracking_is_bounded(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spans remembered and spans waiting for an ancestor are bounded: beyond the bound,
    a span that would wait is unrouted at once, and open spans are forgotten oldest first."""
    monkeypatch.setattr(routing, "MAX_TRACKED", 10)
    monkeypatch.setattr(routing, "MAX_WAITING", 3)
    opened = [setup.tracer.start_span(f"open {i}") for i in range(50)]
    assert len(setup.router._open) <= 10
    with setup.tracer.start_as_current_span("server") as server:
        for i in range(5):
            with setup.tracer.start_as_current_span(f"early {i}"):
                pass
        assert setup.defaults() == ["early 3", "early 4"]
        server.set_attribute("tenant.id", "acme")
    assert setup.names("acme") == ["early 0", "early 1", "early 2", "server"]
    for span in opened:
        span.end()


def test_a_failing_destination_factory_never_reaches_the_app() -> None:
    """An exporter that cannot be made: the span is lost (logged), the app goes on."""
    routes = parse_routes({"acme": "http://a:4318"})
    assert routes is not None

    def broken(destination: Destination) -> SpanExporter:
        raise RuntimeError("cannot connect")

    provider = TracerProvider()
    provider.add_span_processor(TenantSpanProcessor())
    provider.add_span_processor(RoutingSpanProcessor(routes, exporter=broken))
    with tenant_trace.tenant_context("acme"), provider.get_tracer("t").start_as_current_span("s"):
        pass
    provider.shutdown()


# -- the routes' checks ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        (
            {"acme": "collector:4318"},
            "routes['acme']['endpoint']: 'collector:4318' is not an http(s) URL",
        ),
        ({"acme": "http://"}, "routes['acme']['endpoint']"),
        ({"acme": "http://c:99999"}, "routes['acme']['endpoint']"),
        ({"acme": "http://c:4318 "}, "routes['acme']['endpoint']"),
        ({"acme": "http://c:4318/v1/traces"}, "without /v1/traces"),
        ({"acme": {"endpoint": None}}, "routes['acme']['endpoint'] must be a URL"),
        (
            {"acme": {"endpoint": "http://c", "protocol": "thrift"}},
            "routes['acme']['protocol']: unknown OTLP protocol 'thrift'",
        ),
        (
            {"acme": {"endpoint": "http://c", "headers": {"X-Scope-OrgID": 7}}},
            "routes['acme']['headers']['X-Scope-OrgID'] must be a string, not int",
        ),
        (
            {"acme": {"endpoint": "http://c", "headers": {"X-Org": "a\r\nInjected: 1"}}},
            "routes['acme']['headers']['X-Org'] may hold printable ASCII",
        ),
        (
            {"acme": {"endpoint": "http://c", "headers": {"bad name": "x"}}},
            "'bad name' is not a valid header name",
        ),
        (
            {"acme": {"endpoint": "http://c", "headers": ["X-Org"]}},
            "routes['acme']['headers'] must be a mapping",
        ),
        (
            {"acme": {"endpoint": "http://c", "header": {}}},
            "routes['acme']: unknown tenant-trace route key 'header' (did you mean 'headers'?)",
        ),
        ({"acme": {"endpoint": "http://c", "timeout": 0}}, "routes['acme']['timeout']"),
        ({"acme": 4318}, "routes['acme'] must be an endpoint or a mapping"),
        ({"": "http://c"}, "a tenant id must be a non-empty string"),
        (["acme"], "routes must map tenant ids to destinations, not list"),
        ({f"t{i}": f"http://c{i}" for i in range(MAX_DESTINATIONS + 1)}, "at most 64"),
    ],
)
def test_a_bad_route_names_the_tenant_and_the_key(routes: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_routes(routes)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unrouted": "sometimes"}, "unrouted must be 'default' or 'drop', not 'sometimes'"),
        ({"mirror": "yes"}, "mirror must be True or False"),
    ],
)
def test_bad_unrouted_or_mirror(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_routes({"acme": "http://c"}, **options)


def test_routes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``TENANT_TRACE_ROUTES`` names a JSON file (or holds the JSON); unknown tenants are
    fine; ``TENANT_TRACE_UNROUTED`` and ``TENANT_TRACE_MIRROR`` set the rest."""
    path = tmp_path / "routes.json"
    path.write_text(
        json.dumps(
            {"acme": {"endpoint": "https://tempo:4318", "headers": {"X-Scope-OrgID": "acme"}}}
        )
    )
    monkeypatch.setenv("TENANT_TRACE_ROUTES", str(path))
    monkeypatch.setenv("TENANT_TRACE_UNROUTED", "drop")
    monkeypatch.setenv("TENANT_TRACE_MIRROR", "true")
    routes = parse_routes()
    assert routes is not None
    assert (routes.unrouted, routes.mirror) == ("drop", True)
    assert routes.destinations["acme"].headers == (("X-Scope-OrgID", "acme"),)
    monkeypatch.setenv("TENANT_TRACE_ROUTES", '{"globex": "http://g:4318"}')
    inline = parse_routes()
    assert inline is not None and list(inline.destinations) == ["globex"]
    monkeypatch.setenv("TENANT_TRACE_ROUTES", "{not json")
    with pytest.raises(ConfigurationError, match="TENANT_TRACE_ROUTES: not valid JSON"):
        parse_routes()
    monkeypatch.setenv("TENANT_TRACE_ROUTES", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigurationError, match="TENANT_TRACE_ROUTES: cannot read"):
        parse_routes()
    monkeypatch.delenv("TENANT_TRACE_ROUTES")
    assert parse_routes() is None


def test_a_destinations_repr_hides_header_values() -> None:
    """Header values are often credentials: never in a repr or a log line."""
    routes = parse_routes(
        {"acme": {"endpoint": "http://c", "headers": {"Authorization": "Bearer s3cret"}}}
    )
    assert routes is not None
    assert "s3cret" not in repr(routes.destinations["acme"])
    assert "Authorization" in repr(routes.destinations["acme"])


# -- init() ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"routes": {"acme": {"endpoint": "http://c", "protocol": "udp"}}},
            r"routes\['acme'\]\['protocol'\]",
        ),
        ({"routes": {"acme": "http://c"}, "unrouted": "elsewhere"}, "unrouted must be"),
        ({"retention": {"acme": "90 days"}}, r"retention\['acme'\] '90 days' is not a duration"),
    ],
)
def test_init_refuses_bad_routes_and_ages(options: dict[str, Any], message: str) -> None:
    """Checked before anything is installed, also when init() ran before."""
    with pytest.raises(ConfigurationError, match=message):
        tenant_trace.init(**options)


def test_init_puts_the_default_exporters_behind_the_router(tmp_path: Path) -> None:
    """With routes, init() installs the tenant processor, then one router holding the default
    exporters' batch processors (the local store, redacted): nothing else sees the spans;
    routes also come from ``TENANT_TRACE_ROUTES``; the logs bridge follows them."""
    from tests.fresh import run_fresh

    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"acme": "http://127.0.0.1:9"}))
    code = """
import json
import tenant_trace
from tenant_trace.export.routing import RoutingSpanProcessor, active_router
provider = tenant_trace.init()
processors = provider._active_span_processor._span_processors
router = processors[2]
print(json.dumps({
    "processors": [type(p).__name__ for p in processors],
    "defaults": [type(p.span_exporter.exporter).__name__ for p in router.defaults],
    "routes": sorted(router.routes.destinations),
    "unrouted": router.routes.unrouted,
    "active": active_router() is router,
}))
"""
    result, _ = run_fresh(code, TENANT_TRACE_ROUTES=str(routes), TENANT_TRACE_UNROUTED="drop")
    assert result == {
        "processors": ["TenantSpanProcessor", "UsageSpanProcessor", "RoutingSpanProcessor"],
        "defaults": ["SQLiteSpanExporter"],
        "routes": ["acme"],
        "unrouted": "drop",
        "active": True,
    }


def test_init_warns_that_the_applications_own_processors_see_every_span() -> None:
    """An application's provider keeps its own processors: they are not behind the router,
    and init() says so."""
    from tests.fresh import run_fresh

    code = """
import json, logging
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
trace.set_tracer_provider(TracerProvider())
import tenant_trace
tenant_trace.init(routes={"acme": "http://127.0.0.1:9"})
print(json.dumps({}))
"""
    _, done = run_fresh(code)
    assert (
        "the span processors of the application's own TracerProvider still get every span"
        in done.stderr
    )
