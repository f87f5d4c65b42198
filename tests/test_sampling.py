"""The per-tenant sampler: ratios per tenant, "always" tenants, parent-based decisions, its
configuration string and TENANT_TRACE_SAMPLING, and its place in init()."""

from __future__ import annotations

import math
import random
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.span import TraceState

import tenant_trace
from tenant_trace import ConfigurationError, TenantSampler
from tests.fresh import run_fresh

ROOT = Path(__file__).resolve().parent.parent
RATIO = 0.25
N = 4000


def sampled_share(sampler: TenantSampler, tenant: str | None, n: int = N) -> float:
    """The share of `n` root spans of `tenant` that `sampler` records (seeded trace ids)."""
    rng = random.Random(f"{tenant}")
    hits = 0
    for _ in range(n):
        trace_id = rng.getrandbits(128)
        if tenant is None:
            result = sampler.should_sample(None, trace_id, "agent.run")
        else:
            with tenant_trace.tenant_context(tenant):
                result = sampler.should_sample(None, trace_id, "agent.run")
        hits += result.decision is Decision.RECORD_AND_SAMPLE
    return hits / n


def within(share: float, ratio: float, n: int = N) -> bool:
    """`share` is within 5 standard deviations of a binomial(`n`, `ratio`) share."""
    return abs(share - ratio) <= 5 * math.sqrt(ratio * (1 - ratio) / n)


def test_the_debug_tenant_is_always_sampled_and_others_follow_the_ratio() -> None:
    sampler = TenantSampler(RATIO, always={"tenant-b"})
    assert sampled_share(sampler, "tenant-b") == 1.0
    for tenant in ["tenant-a", "tenant-c", None]:
        share = sampled_share(sampler, tenant)
        assert within(share, RATIO), (tenant, share)


def test_per_tenant_ratios() -> None:
    sampler = TenantSampler(0.1, tenants={"big": 0.01, "small": 1.0, "muted": 0.0})
    assert sampled_share(sampler, "small") == 1.0
    assert sampled_share(sampler, "muted") == 0.0
    assert within(sampled_share(sampler, "big"), 0.01)
    assert within(sampled_share(sampler, "other"), 0.1)


def test_the_decision_follows_the_trace_id_like_trace_id_ratio_based() -> None:
    """Services that share the configuration agree on every trace."""
    ours = TenantSampler(RATIO)
    theirs = TraceIdRatioBased(RATIO)
    rng = random.Random(7)
    for _ in range(500):
        trace_id = rng.getrandbits(128)
        with tenant_trace.tenant_context("acme"):
            mine = ours.should_sample(None, trace_id, "x").decision
        assert mine.is_sampled() == theirs.should_sample(None, trace_id, "x").decision.is_sampled()
        assert mine.is_recording()  # unsampled: RECORD_ONLY, for the usage ledger


def parent(sampled: bool, remote: bool = True, state: str = "") -> Any:
    context = SpanContext(
        trace_id=0x1234,
        span_id=0x99,
        is_remote=remote,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else 0),
        trace_state=TraceState.from_header([state]) if state else TraceState(),
    )
    return trace.set_span_in_context(NonRecordingSpan(context))


@pytest.mark.parametrize(
    ("tenant", "parent_sampled", "remote", "expected"),
    [
        ("muted", True, True, True),  # a sampled parent wins over the tenant's ratio
        ("muted", True, False, True),
        ("acme", False, True, False),  # an unsampled parent is followed
        ("acme", False, False, False),
        ("vip", False, True, True),  # ... except for an "always" tenant
        ("vip", False, False, True),
    ],
)
def test_parent_based(tenant: str, parent_sampled: bool, remote: bool, expected: bool) -> None:
    sampler = TenantSampler(1.0, tenants={"muted": 0.0}, always={"vip"})
    with tenant_trace.tenant_context(tenant):
        result = sampler.should_sample(parent(parent_sampled, remote), 0x1234, "agent.run")
    assert (result.decision is Decision.RECORD_AND_SAMPLE) is expected


def test_unsampled_spans_are_dropped_when_asked() -> None:
    """record_unsampled=False: DROP, the least work for an unsampled request."""
    sampler = TenantSampler(0.0, record_unsampled=False)
    assert sampler.should_sample(None, 0x1234, "agent.run").decision is Decision.DROP


def test_attributes_and_trace_state_are_kept() -> None:
    sampler = TenantSampler(1.0)
    with tenant_trace.tenant_context("acme"):
        result = sampler.should_sample(
            parent(True, state="vendor=abc"), 0x1234, "agent.run", attributes={"k": "v"}
        )
    assert dict(result.attributes) == {"k": "v"}
    assert result.trace_state is not None and result.trace_state.get("vendor") == "abc"


def test_the_tenant_is_read_when_the_span_starts(spans: Any) -> None:
    """On a real provider: the request's root span is sampled by its tenant, and its child
    spans follow it."""
    provider = TracerProvider(sampler=TenantSampler(0.0, always={"vip"}))
    tracer = provider.get_tracer("tests.sampling")
    for tenant in ["vip", "acme"]:
        with (
            tenant_trace.tenant_context(tenant),
            tracer.start_as_current_span("root") as root,
            tracer.start_as_current_span("child") as child,
        ):
            sampled = root.get_span_context().trace_flags.sampled
            assert child.get_span_context().trace_flags.sampled is sampled is (tenant == "vip")
            # Unsampled spans are still recorded, for the usage ledger; never exported.
            assert child.is_recording() and root.is_recording()


def test_description_and_repr() -> None:
    sampler = TenantSampler(0.1, tenants={"a": 0.5}, always=["b"])
    assert sampler.get_description() == "TenantSampler{default=0.1,a=0.5,b=always}"
    assert "always=['b']" in repr(sampler)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("default=0.1,tenant-b=1.0", "TenantSampler{default=0.1,tenant-b=1.0}"),
        (" default = 0.5 , tenant-b = always ,", "TenantSampler{default=0.5,tenant-b=always}"),
        ("tenant-a=0", "TenantSampler{default=1.0,tenant-a=0.0}"),
        ("", "TenantSampler{default=1.0}"),
    ],
)
def test_parse(spec: str, expected: str) -> None:
    assert TenantSampler.parse(spec).get_description() == expected


@pytest.mark.parametrize(
    "spec",
    [
        "default",  # no ratio
        "default=lots",
        "default=1.5",
        "tenant-a=-0.1",
        "tenant-a=nan",
        "tenant-a=0.5,tenant-a=0.7",
        "default=always",
        "\x00bad=0.5",  # an invalid tenant id
    ],
)
def test_bad_specs_are_configuration_errors(spec: str) -> None:
    with pytest.raises(ConfigurationError):
        TenantSampler.parse(spec)


@pytest.mark.parametrize(
    ("kwargs"),
    [{"default": 2}, {"default": True}, {"tenants": {"a": "0.5"}}, {"always": "vip"}],
)
def test_bad_arguments_are_configuration_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        TenantSampler(**kwargs)


def test_from_env() -> None:
    assert TenantSampler.from_env({}) is None
    sampler = TenantSampler.from_env({"TENANT_TRACE_SAMPLING": "default=0.1,tenant-b=always"})
    assert sampler is not None
    assert sampler.get_description() == "TenantSampler{default=0.1,tenant-b=always}"
    with pytest.raises(ConfigurationError, match="TENANT_TRACE_SAMPLING"):
        TenantSampler.from_env({"TENANT_TRACE_SAMPLING": "default=2"})


def test_init_reads_tenant_trace_sampling() -> None:
    """init() in a fresh interpreter (the global provider is set once per process)."""
    code = """
        import json
        from opentelemetry import trace
        import tenant_trace
        provider = tenant_trace.init(exporter="none", metrics="none")
        tracer = trace.get_tracer("t")
        seen = {}
        for tenant in ["tenant-b", "tenant-a"]:
            with tenant_trace.tenant_context(tenant), tracer.start_as_current_span("x") as span:
                seen[tenant] = span.get_span_context().trace_flags.sampled
        print(json.dumps({"sampler": provider.sampler.get_description(), "seen": seen}))
    """
    result, _ = run_fresh(textwrap.dedent(code), TENANT_TRACE_SAMPLING="default=0,tenant-b=always")
    assert result == {
        "sampler": "TenantSampler{default=0.0,tenant-b=always}",
        "seen": {"tenant-b": True, "tenant-a": False},
    }


def test_unsampled_requests_are_still_measured() -> None:
    """Metrics do not depend on sampling: a run whose spans were dropped is counted."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from tenant_trace import metrics

    reader = InMemoryMetricReader()
    saved = metrics.record._instruments
    metrics.configure(meter_provider=MeterProvider([reader], shutdown_on_exit=False))
    provider = TracerProvider(sampler=TenantSampler(0.0))
    tracer = provider.get_tracer("tests.sampling")
    try:
        with tenant_trace.tenant_context("acme"), tracer.start_as_current_span("root") as root:
            assert not root.get_span_context().trace_flags.sampled
            with tenant_trace.start_trace(agent_name="worker") as run:
                run.fail("stale", error_type="StaleData")
        data = reader.get_metrics_data()
        points = [
            dict(p.attributes)
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == "tenant_trace.run.duration"
            for p in m.data.data_points
        ]
        assert points == [{"tenant.id": "acme", "outcome": "error", "error.type": "StaleData"}]
    finally:
        metrics.record._instruments = saved
