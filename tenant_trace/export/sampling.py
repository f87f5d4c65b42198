"""Per-tenant trace sampling: a parent-based sampler whose root ratio depends on the tenant.

    tenant_trace.init(sampler=TenantSampler(0.1, tenants={"tenant-a": 0.5}, always={"tenant-b"}))

or, with no `sampler` given to `init()`, from the environment::

    TENANT_TRACE_SAMPLING="default=0.1,tenant-a=0.5,tenant-b=always"

A sampled-out span is still recorded (``RECORD_ONLY``), not exported: the span processors see
it end, so the usage ledger and the per-tenant metrics count every model call, sampled or not
("you cannot bill from a sample"); ``record_unsampled=False`` drops it (``DROP``) instead, for
the least work per unsampled request and no usage from it.

A span whose tenant (from `tenant_trace.context` at the moment the span starts) is an
"always" tenant is sampled whatever its parent decided: to record every trace of one
tenant during an incident. Any other span follows its parent's decision, and a root span is
sampled with its tenant's ratio, or the default one. The root span of a request that opens
under an HTTP server span of other instrumentation (FastAPI's own telemetry, OpenTelemetry's
ASGI/WSGI middleware), which was sampled before the tenant was known, is sampled anew with
the tenant's ratio; when that drops it, the server span is not exported either. Ratios are
applied to the trace id as `TraceIdRatioBased` does, so services that share a configuration
agree on each trace.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.sampling import (
    Decision,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from ..config import parse_tenant_values
from ..context import current, validate_tenant_id
from ..errors import ConfigurationError, InvalidTenantError

__all__ = ["ENV", "TenantSampler", "redeciding", "superseded"]

#: The environment variable `TenantSampler.from_env` reads.
ENV = "TENANT_TRACE_SAMPLING"
_MASK = (1 << 64) - 1

#: Set by the request lifecycle while it opens the root span of a request under a span that
#: other instrumentation started before the tenant was known: the sampler decides anew, with
#: the tenant's ratio, instead of following that span.
redeciding: ContextVar[bool] = ContextVar("tenant_trace.redeciding", default=False)


class _Superseded:
    """Spans of other instrumentation that a request's own root replaced: the HTTP server
    spans that joined an untrusted caller's trace, or that the tenant's sampling dropped.
    They and their direct children are not exported by the processors `init()` builds.
    Bounded: the oldest of `size` entries are forgotten."""

    __slots__ = ("_ids", "_lock", "size")

    def __init__(self, size: int = 4096) -> None:
        self._ids: dict[tuple[int, int], None] = {}
        self._lock = threading.Lock()
        self.size = size

    def add(self, context: SpanContext) -> None:
        """Leave out the span of `context` and its direct children (every local server
        span that joined a caller's `context`)."""
        with self._lock:
            self._ids[context.trace_id, context.span_id] = None
            if len(self._ids) > self.size:
                del self._ids[next(iter(self._ids))]

    def covers(self, span: ReadableSpan) -> bool:
        """Whether `span` is to be left out."""
        context = span.context
        if not self._ids or context is None:
            return False
        parent = span.parent
        return (context.trace_id, context.span_id) in self._ids or (
            parent is not None and (context.trace_id, parent.span_id) in self._ids
        )


superseded = _Superseded()


class TenantSampler(Sampler):
    """Sample root spans with a ratio per tenant; always sample some tenants.

    Args:
        default: the ratio of root spans sampled for tenants not listed, and for spans
            started without a tenant.
        tenants: ratios for some tenants, ``{"tenant-a": 0.5}``.
        always: tenants whose every span is sampled, even under a parent that was not.
        record_unsampled: record the spans not sampled (``RECORD_ONLY``: processors see them,
            exporters do not), so their usage is counted; ``False``: drop them.
    """

    __slots__ = ("_always", "_bounds", "_default", "_ratios", "_unsampled", "default")

    def __init__(
        self,
        default: float = 1.0,
        *,
        tenants: Mapping[str, float] | None = None,
        always: Iterable[str] = (),
        record_unsampled: bool = True,
    ) -> None:
        if isinstance(always, str):
            raise ConfigurationError("always must be a collection of tenant ids")
        self.default = _ratio(default, "the default sampling ratio")
        self._ratios = {
            _tenant(t): _ratio(r, "a tenant's sampling ratio") for t, r in (tenants or {}).items()
        }
        self._always = frozenset(_tenant(t) for t in always)
        self._unsampled = Decision.RECORD_ONLY if record_unsampled else Decision.DROP
        self._default = TraceIdRatioBased.get_bound_for_rate(self.default)
        self._bounds = {t: TraceIdRatioBased.get_bound_for_rate(r) for t, r in self._ratios.items()}

    def __repr__(self) -> str:
        return (
            f"TenantSampler({self.default}, tenants={self._ratios!r}, "
            f"always={sorted(self._always)!r})"
        )

    @classmethod
    def parse(cls, spec: str) -> TenantSampler:
        """A sampler from ``"default=0.1,tenant-a=0.5,tenant-b=always"``: comma-separated
        ``tenant=ratio`` or ``tenant=always`` entries; the key ``default`` is the default
        ratio (1.0 when absent).

        Raises:
            ConfigurationError: an entry is malformed, a ratio is not within [0, 1], a
                tenant id is invalid or a tenant is listed twice.
        """
        default = 1.0
        tenants: dict[str, float] = {}
        always: set[str] = set()
        for key, value in parse_tenant_values(spec, "sampling").items():
            if value.lower() == "always":
                if key == "default":
                    raise ConfigurationError("default=always: use default=1.0")
                always.add(key)
                continue
            try:
                ratio = float(value)
            except ValueError:
                raise ConfigurationError(f"sampling ratio {value!r} is not a number") from None
            if key == "default":
                default = ratio
            else:
                tenants[key] = ratio
        return cls(default, tenants=tenants, always=always)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TenantSampler | None:
        """The sampler ``TENANT_TRACE_SAMPLING`` describes, or ``None`` when it is unset."""
        spec = (os.environ if environ is None else environ).get(ENV, "").strip()
        if not spec:
            return None
        try:
            return cls.parse(spec)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{ENV}: {exc}") from None

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        tenant = current()
        if tenant is not None and tenant.id in self._always:
            sampled = True
        elif parent.is_valid and (parent.is_remote or tenant is None or not redeciding.get()):
            sampled = parent.trace_flags.sampled
        else:
            bound = self._default if tenant is None else self._bounds.get(tenant.id, self._default)
            sampled = trace_id & _MASK < bound
        decision = Decision.RECORD_AND_SAMPLE if sampled else self._unsampled
        return SamplingResult(
            decision,
            # A recorded span keeps its attributes (a model call's model, read at its end).
            attributes if decision is not Decision.DROP else None,
            parent.trace_state if parent.is_valid else None,
        )

    def get_description(self) -> str:
        ratios = "".join(f",{t}={r}" for t, r in sorted(self._ratios.items()))
        always = "".join(f",{t}=always" for t in sorted(self._always))
        return f"TenantSampler{{default={self.default}{ratios}{always}}}"


def _ratio(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigurationError(f"{what} must be a number from 0 to 1")
    return float(value)


def _tenant(value: object) -> str:
    try:
        return validate_tenant_id(value)
    except InvalidTenantError as exc:
        raise ConfigurationError(f"sampling: {exc}") from None
