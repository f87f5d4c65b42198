"""init() and the exporters it builds from arguments and OTEL_* variables.

The global tracer provider can be set once per process, and this test session has already
set it, so each init() scenario runs in a fresh interpreter that reports back as JSON.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tenant_trace import ConfigurationError
from tenant_trace.export import build_exporters
from tests.fresh import run_fresh

ROOT = Path(__file__).resolve().parent.parent

PRELUDE = """
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import tenant_trace

def processors(provider):
    # The SDK has no public list of a provider's processors (nor of a batch processor's exporter).
    return provider._active_span_processor._span_processors

def tenant_processors(provider):
    return sum(isinstance(p, tenant_trace.TenantSpanProcessor) for p in processors(provider))

def inner(batch):
    # init() wraps the exporters it builds in a RedactingSpanExporter: name the one inside.
    return getattr(batch._exporter, "exporter", batch._exporter)

def exporters(provider):
    found = [getattr(p, "_batch_processor", None) for p in processors(provider)]
    return [f"{type(inner(b)).__module__}.{type(inner(b)).__name__}" for b in found if b]

def report(**values):
    print(json.dumps(values))
"""


def run(code: str, **env: str) -> dict[str, Any]:
    """Run `code` after PRELUDE in a fresh interpreter with only the OTEL_* variables given;
    return what it passed to report()."""
    result, done = run_fresh(PRELUDE + textwrap.dedent(code), **env)
    result["stdout"] = done.stdout
    return result


def test_init_twice_is_harmless() -> None:
    result = run(
        """
        first = tenant_trace.init()
        second = tenant_trace.init(exporter="console")
        report(
            same=first is second,
            is_global=trace.get_tracer_provider() is first,
            tenant_processors=tenant_processors(first),
            exporters=exporters(first),
        )
        """
    )
    assert result["same"]
    assert result["is_global"]
    assert result["tenant_processors"] == 1
    assert result["exporters"] == [
        "tenant_trace.export.store.SQLiteSpanExporter"
    ]  # the first call's


def test_the_applications_provider_is_kept_and_stamped() -> None:
    result = run(
        """
        memory = InMemorySpanExporter()
        app = TracerProvider()
        app.add_span_processor(SimpleSpanProcessor(memory))
        trace.set_tracer_provider(app)
        provider = tenant_trace.init(service_name="ignored")
        again = tenant_trace.init()
        with tenant_trace.tenant_context("acme"):
            trace.get_tracer("someone.else").start_span("llm").end()
        (span,) = memory.get_finished_spans()
        report(
            kept=provider is app and again is app,
            is_global=trace.get_tracer_provider() is app,
            tenant_processors=tenant_processors(app),
            processors=len(processors(app)),
            tenant=span.attributes.get("tenant.id"),
        )
        """
    )
    assert result["kept"]
    assert result["is_global"]
    assert result["tenant_processors"] == 1
    assert result["processors"] == 3  # the app's own, the tenant's stamp, the usage count
    assert result["tenant"] == "acme"


def test_an_exporter_given_to_init_is_added_to_the_applications_provider() -> None:
    result = run(
        """
        trace.set_tracer_provider(TracerProvider())
        provider = tenant_trace.init(exporter="console")
        report(exporters=exporters(provider))
        """,
        OTEL_TRACES_EXPORTER="otlp",  # the application's provider is not reconfigured from env
    )
    assert result["exporters"] == ["opentelemetry.sdk.trace.export.ConsoleSpanExporter"]


def test_otel_service_name_and_console_exporter() -> None:
    result = run(
        """
        provider = tenant_trace.init()
        with tenant_trace.tenant_context("acme", source="header"):
            trace.get_tracer("someone.else").start_span("llm").end()
        provider.shutdown()
        report(
            service=provider.resource.attributes["service.name"],
            exporters=exporters(provider),
        )
        """,
        OTEL_SERVICE_NAME="agent-service",
        OTEL_TRACES_EXPORTER="console",
    )
    assert result["service"] == "agent-service"
    assert result["exporters"] == ["opentelemetry.sdk.trace.export.ConsoleSpanExporter"]
    assert '"tenant.id": "acme"' in result["stdout"]
    assert '"tenant.source": "header"' in result["stdout"]


def test_an_explicit_service_name_wins_over_the_environment() -> None:
    result = run(
        """
        provider = tenant_trace.init(service_name="explicit")
        report(service=provider.resource.attributes["service.name"])
        """,
        OTEL_SERVICE_NAME="from-env",
    )
    assert result["service"] == "explicit"


OTLP = "opentelemetry.exporter.otlp.proto"


@pytest.mark.parametrize(
    ("env", "exporter", "endpoint"),
    [
        pytest.param({"OTEL_TRACES_EXPORTER": "none"}, None, None, id="none"),
        pytest.param({}, "tenant_trace.export.store.SQLiteSpanExporter", None,
                     id="nothing-configured-means-the-local-store"),
        pytest.param(
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            f"{OTLP}.grpc.trace_exporter.OTLPSpanExporter",
            "localhost:4317",
            id="otlp-grpc",
        ),
        pytest.param(
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            f"{OTLP}.http.trace_exporter.OTLPSpanExporter",
            "http://localhost:4318/v1/traces",
            id="otlp-http",
        ),
        # Metrics off: at exit, their last export to the dead endpoint would retry for 8 s.
        pytest.param(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:14318", "OTEL_METRICS_EXPORTER": "none"},
            f"{OTLP}.http.trace_exporter.OTLPSpanExporter",
            "http://127.0.0.1:14318/v1/traces",
            id="endpoint-alone-means-otlp",
        ),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:14317",
             "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_METRICS_EXPORTER": "none"},
            f"{OTLP}.grpc.trace_exporter.OTLPSpanExporter",
            "127.0.0.1:14317",
            id="endpoint-grpc",
        ),
    ],
)  # fmt: skip
def test_otel_traces_exporter(env: dict[str, str], exporter: str | None, endpoint: str) -> None:
    result = run(
        """
        provider = tenant_trace.init()
        (batch,) = [p._batch_processor for p in processors(provider)
                    if hasattr(p, "_batch_processor")] or [None]
        report(
            exporters=exporters(provider),
            endpoint=batch and getattr(inner(batch), "_endpoint", None),
            tenant_processors=tenant_processors(provider),
        )
        """,
        **env,
    )
    assert result["exporters"] == ([exporter] if exporter else [])
    assert result["endpoint"] == endpoint
    assert result["tenant_processors"] == 1


def test_otel_traces_sampler_always_off() -> None:
    result = run(
        """
        provider = tenant_trace.init()
        span = trace.get_tracer("x").start_span("dropped")
        report(recording=span.is_recording(), sampler=type(provider.sampler).__name__)
        """,
        OTEL_TRACES_SAMPLER="always_off",
    )
    assert result["recording"] is False
    assert result["sampler"] == "StaticSampler"


def test_an_unknown_exporter_is_a_configuration_error_and_installs_nothing() -> None:
    result = run(
        """
        try:
            tenant_trace.init()
        except tenant_trace.ConfigurationError as exc:
            error = str(exc)
        report(error=error, installed=isinstance(trace.get_tracer_provider(), TracerProvider))
        """,
        OTEL_TRACES_EXPORTER="zipkin-please",
    )
    assert "zipkin-please" in result["error"]
    assert result["installed"] is False


def test_init_sets_the_tenant_pattern() -> None:
    result = run(
        """
        tenant_trace.init(tenant_pattern=r"org_[0-9]+")
        try:
            tenant_trace.set_tenant("acme")
            refused = False
        except tenant_trace.InvalidTenantError:
            refused = True
        tenant_trace.set_tenant("org_1")
        report(refused=refused)
        """
    )
    assert result["refused"] is True


# -- build_exporters in this process ------------------------------------------------------

OTEL_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TENANT_TRACE_DB", str(tmp_path / "traces.sqlite3"))
    return monkeypatch


@pytest.fixture
def built() -> Iterator[list[SpanExporter]]:
    """Exporters made by a test, shut down afterwards (a gRPC one holds a channel)."""
    made: list[SpanExporter] = []
    yield made
    for exporter in made:
        exporter.shutdown()


def names(exporters: list[SpanExporter]) -> list[str]:
    return [f"{type(e).__module__}.{type(e).__name__}" for e in exporters]


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        pytest.param({}, ["local"], id="nothing-means-the-local-store"),
        pytest.param({"OTEL_TRACES_EXPORTER": "none"}, [], id="none"),
        pytest.param({"OTEL_TRACES_EXPORTER": " Console "}, ["console"], id="console"),
        pytest.param({"OTEL_TRACES_EXPORTER": "console,otlp"}, ["console", "http"],
                     id="console-and-otlp"),
        pytest.param({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
                     ["grpc"], id="grpc"),
        pytest.param({"OTEL_TRACES_EXPORTER": "otlp",
                      "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                      "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
                     ["grpc"], id="traces-protocol-wins"),
        pytest.param({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"},
                     ["http"], id="traces-endpoint-means-otlp"),
    ],
)  # fmt: skip
def test_build_exporters_from_the_environment(
    env: pytest.MonkeyPatch,
    built: list[SpanExporter],
    variables: dict[str, str],
    expected: list[str],
) -> None:
    for name, value in variables.items():
        env.setenv(name, value)
    built += build_exporters(None)
    short = {
        "opentelemetry.sdk.trace.export.ConsoleSpanExporter": "console",
        "tenant_trace.export.store.SQLiteSpanExporter": "local",
        f"{OTLP}.http.trace_exporter.OTLPSpanExporter": "http",
        f"{OTLP}.grpc.trace_exporter.OTLPSpanExporter": "grpc",
    }
    assert [short[n] for n in names(built)] == expected


def test_an_explicit_http_endpoint_gets_the_signal_path(
    env: pytest.MonkeyPatch, built: list[SpanExporter]
) -> None:
    env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318")
    built += build_exporters("otlp", endpoint="http://127.0.0.1:4318/", protocol="http/protobuf")
    assert built[0]._endpoint == "http://127.0.0.1:4318/v1/traces"  # type: ignore[attr-defined]


def test_a_traces_endpoint_from_the_environment_is_used_as_is(
    env: pytest.MonkeyPatch, built: list[SpanExporter]
) -> None:
    env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/custom")
    built += build_exporters("otlp")
    assert built[0]._endpoint == "http://127.0.0.1:4318/custom"  # type: ignore[attr-defined]


def test_arguments_win_over_the_environment(
    env: pytest.MonkeyPatch, built: list[SpanExporter]
) -> None:
    env.setenv("OTEL_TRACES_EXPORTER", "otlp")
    built += build_exporters("console")
    assert [type(e) for e in built] == [ConsoleSpanExporter]


def test_exporter_objects_are_used_as_given(env: pytest.MonkeyPatch) -> None:
    one, two = InMemorySpanExporter(), InMemorySpanExporter()
    assert build_exporters(one) == [one]
    assert build_exporters([one, two]) == [one, two]


@pytest.mark.parametrize(
    ("exporter", "protocol"),
    [
        pytest.param("zipkin", None, id="unknown-exporter"),
        pytest.param("console,jaeger", None, id="unknown-in-a-list"),
        pytest.param("otlp", "http/json", id="unknown-protocol"),
    ],
)
def test_unknown_names_are_configuration_errors(
    env: pytest.MonkeyPatch, exporter: str, protocol: str | None
) -> None:
    with pytest.raises(ConfigurationError):
        build_exporters(exporter, protocol=protocol)
