"""Recording per-tenant metrics: the instruments, the tenant cap and the ``record_*`` verbs
the lifecycle and the agent API call. Recording never raises into the application."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import metrics as otel_metrics

from .._version import __version__
from ..context import Tenant, current
from ..errors import ConfigurationError

__all__ = [
    "ADMIT_AFTER",
    "DEFAULT_MAX_TENANTS",
    "OTHER",
    "RUN_DURATION_BUCKETS",
    "STREAMS_PER_TENANT",
    "TenantCap",
    "configure",
    "keep_tenants",
    "record_llm_call",
    "record_rejection",
    "record_request",
    "record_run",
    "record_tool_call",
    "record_usage",
]

logger = logging.getLogger("tenant_trace")

METER_NAME = "tenant_trace"
OTHER = "__other__"
DEFAULT_MAX_TENANTS = 1000
#: Agent runs take from milliseconds (a cached answer) to minutes (a long tool loop).
RUN_DURATION_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
# The bucket boundaries the GenAI semantic conventions advise.
OPERATION_BUCKETS = tuple(0.01 * 2**i for i in range(14))
#: Runs a tenant id needs, once half the cap is taken, to get a series of its own.
ADMIT_AFTER = 5
# Metric streams one tenant may need across outcomes, error types, models and tools: the
# SDK's per-instrument limit (2000 by default) is raised to this times the tenant cap.
STREAMS_PER_TENANT = 32


class TenantCap:
    """Which tenant ids metrics keep; others are recorded as `OTHER`. Thread-safe; O(1) per
    call (a set lookup, a lock only for an id not kept yet).

    The first half of `limit` goes to the first ids seen. The second half goes only to ids
    with sustained traffic: `ADMIT_AFTER` runs while they wait (counted in a bounded table
    that ages under a flood), so made-up ids sent once each cannot fill the cap and push a
    real tenant into `OTHER`. The ids in `always` are kept whatever the traffic.

    Args:
        limit: distinct tenant ids kept besides `always` (0: only `always`).
        always: tenant ids that are always kept and do not count toward `limit`.
    """

    __slots__ = ("_always", "_kept", "_lock", "_waiting", "limit")

    def __init__(self, limit: int = DEFAULT_MAX_TENANTS, always: Iterable[str] = ()) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigurationError("max_metric_tenants must be an integer >= 0")
        if isinstance(always, str):
            raise ConfigurationError("metric_tenants must be a collection of tenant ids")
        self.limit = limit
        self._always = frozenset(always)
        self._kept: set[str] = set()
        self._waiting: dict[str, int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TenantCap(limit={self.limit}, always={sorted(self._always)!r})"

    @property
    def always(self) -> frozenset[str]:
        """The tenant ids always kept."""
        return self._always

    @property
    def size(self) -> int:
        """The most distinct labels this cap gives out, `OTHER` included."""
        return self.limit + len(self._always) + 1

    def keep(self, tenant_ids: Iterable[str]) -> None:
        """Always keep `tenant_ids` too (a middleware's ``allowed=`` tenants)."""
        with self._lock:
            self._always = self._always | frozenset(tenant_ids)

    def label(self, tenant_id: str, run: bool = False) -> str:
        """`tenant_id` if it is kept or now admitted, else `OTHER`; `run`: this measurement
        is a run, which counts toward admission to the second half of the cap."""
        if tenant_id in self._kept or tenant_id in self._always:
            return tenant_id
        with self._lock:
            if tenant_id in self._kept:
                return tenant_id
            kept = len(self._kept)
            if kept >= self.limit:
                return OTHER
            if 2 * kept >= self.limit:
                if not run:
                    return OTHER
                runs = self._waiting.pop(tenant_id, 0) + 1
                if runs < ADMIT_AFTER:
                    if len(self._waiting) >= max(self.limit, 64):
                        # A flood of new ids: halve every count, forget those at 0.
                        self._waiting = {t: n // 2 for t, n in self._waiting.items() if n > 1}
                    self._waiting[tenant_id] = runs
                    return OTHER
            self._kept.add(tenant_id)
            return tenant_id


class _Instruments:
    """The instruments, created once per meter provider, and the tenant cap."""

    __slots__ = (
        "cap",
        "llm_duration",
        "overflow",
        "provider",
        "rejected",
        "run_duration",
        "tools",
        "unpriced",
        "usage_cost",
        "usage_tokens",
    )

    def __init__(self, provider: otel_metrics.MeterProvider | None, cap: TenantCap) -> None:
        meter = otel_metrics.get_meter(METER_NAME, __version__, provider)
        self.provider = provider
        self.cap = cap
        self.run_duration = meter.create_histogram(
            "tenant_trace.run.duration",
            unit="s",
            description="Duration of agent runs (traced requests and start_trace runs).",
            explicit_bucket_boundaries_advisory=RUN_DURATION_BUCKETS,
        )
        # tenant_trace.* names, never the GenAI ones that instrumentations record (without
        # a tenant): the same name with two identities conflicts in the SDK and in backends.
        self.usage_tokens = meter.create_counter(
            "tenant_trace.usage.tokens",
            unit="{token}",
            description="Tokens of model calls, from any instrumentation, by token type "
            "(input or output).",
        )
        self.usage_cost = meter.create_counter(
            "tenant_trace.usage.cost",
            unit="{USD}",
            description="Estimated cost in USD of the model calls that have a price.",
        )
        self.unpriced = meter.create_counter(
            "tenant_trace.usage.unpriced_calls",
            unit="{call}",
            description="Model calls whose model has no price: their cost is unknown.",
        )
        self.llm_duration = meter.create_histogram(
            "tenant_trace.llm.duration",
            unit="s",
            description="Duration of LLM calls.",
            explicit_bucket_boundaries_advisory=OPERATION_BUCKETS,
        )
        self.tools = meter.create_counter(
            "tenant_trace.tool.calls", unit="{call}", description="Tool calls, by outcome."
        )
        self.rejected = meter.create_counter(
            "tenant_trace.requests.rejected",
            unit="{request}",
            description="Requests refused before they reached the application, by reason.",
        )
        self.overflow = meter.create_counter(
            "tenant_trace.metrics.tenant_overflow",
            unit="{measurement}",
            description="Measurements recorded as tenant __other__: the tenant cap was full.",
        )

    def attributes(self, tenant: Tenant | None, run: bool = False) -> dict[str, Any]:
        """The tenant attribute, capped (none when the request has no tenant); `run`: see
        `TenantCap.label`."""
        if tenant is None:
            return {}
        label = self.cap.label(tenant.id, run)
        if label is OTHER:  # identity: a tenant really named "__other__" is no overflow
            self.overflow.add(1)
        return {"tenant.id": label}


_instruments: _Instruments | None = None
_configure_lock = threading.Lock()
_policy_kept: set[str] = set()  # `keep_tenants`


def configure(
    *,
    meter_provider: otel_metrics.MeterProvider | None = None,
    max_tenants: int | None = None,
    always_kept: Iterable[str] | None = None,
) -> _Instruments:
    """(Re)create the instruments on `meter_provider` (at first: the global one) with a new
    tenant cap; what is not given keeps its current value. `init()` calls this."""
    global _instruments
    with _configure_lock:
        old = _instruments
        if meter_provider is None and old is not None:
            meter_provider = old.provider
        if old is not None and max_tenants is None and always_kept is None:
            cap = old.cap  # the same cap: the tenants it kept stay kept
        else:
            default = old.cap if old is not None else TenantCap()
            always = default.always if always_kept is None else frozenset(always_kept)
            cap = TenantCap(
                default.limit if max_tenants is None else max_tenants, always | _policy_kept
            )
        _instruments = instruments = _Instruments(meter_provider, cap)
    return instruments


def _get() -> _Instruments:
    return _instruments or configure()


def keep_tenants(tenant_ids: Iterable[str]) -> None:
    """Always keep `tenant_ids` on metrics, beyond the cap (a middleware's ``allowed=``),
    also after a later `configure`."""
    ids = frozenset(tenant_ids)
    with _configure_lock:
        _policy_kept.update(ids)
    _get().cap.keep(ids)


def record_run(tenant: Tenant | None, started: float, error_type: str | None) -> None:
    """A run ended: `started` is its `time.monotonic()` start; `error_type` says it failed."""
    try:
        instruments = _get()
        attributes = instruments.attributes(tenant, run=True)
        attributes["outcome"] = "error" if error_type else "success"
        if error_type:
            attributes["error.type"] = error_type
        instruments.run_duration.record(time.monotonic() - started, attributes)
    except Exception:
        logger.debug("tenant_trace: could not record a run metric", exc_info=True)


def record_request(
    tenant: Tenant | None,
    started: float,
    failure: str | None,
    exception: BaseException | None,
    status: int | None,
) -> None:
    """A request ended: a run that failed (`failure`), raised, or answered 5xx is an error."""
    if failure is None and exception is not None:
        failure = type(exception).__qualname__
    if failure is None and status is not None and status >= 500:
        failure = str(status)
    record_run(tenant, started, failure)


def record_usage(
    tenant_id: str | None,
    call: Mapping[str, str],
    input_tokens: int,
    output_tokens: int,
    cost: float | None,
) -> None:
    """Usage of one model call of `tenant_id` (the ``tenant.id`` its span carries);
    `call` holds its ``gen_ai.request.model`` and ``gen_ai.provider.name``; a `cost` of
    ``None`` counts the call as unpriced."""
    try:
        instruments = _get()
        attributes = instruments.attributes(Tenant(tenant_id, "span") if tenant_id else None)
        attributes.update(call)
        instruments.usage_tokens.add(input_tokens, {**attributes, "gen_ai.token.type": "input"})
        instruments.usage_tokens.add(output_tokens, {**attributes, "gen_ai.token.type": "output"})
        if cost is None:
            instruments.unpriced.add(1, attributes)
        else:
            instruments.usage_cost.add(cost, attributes)
    except Exception:
        logger.debug("tenant_trace: could not record a usage metric", exc_info=True)


def record_llm_call(call: Mapping[str, str], seconds: float, error: BaseException | None) -> None:
    """An LLM call of the current tenant ended (with `error` when it raised)."""
    try:
        instruments = _get()
        attributes = instruments.attributes(current())
        attributes.update(call)
        if error is not None and not isinstance(error, GeneratorExit):
            attributes["error.type"] = type(error).__qualname__
        instruments.llm_duration.record(seconds, attributes)
    except Exception:
        logger.debug("tenant_trace: could not record an LLM metric", exc_info=True)


def record_tool_call(name: str, failed: bool) -> None:
    """A tool call of the current tenant ended."""
    try:
        instruments = _get()
        attributes = instruments.attributes(current())
        attributes["gen_ai.tool.name"] = name
        attributes["outcome"] = "error" if failed else "success"
        instruments.tools.add(1, attributes)
    except Exception:
        logger.debug("tenant_trace: could not record a tool metric", exc_info=True)


def record_rejection(code: str) -> None:
    """A request was refused with a `Rejection` of this `code`."""
    try:
        _get().rejected.add(1, {"reason": code})
    except Exception:
        logger.debug("tenant_trace: could not record a rejection metric", exc_info=True)
