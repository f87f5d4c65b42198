"""Per-tenant metrics: agent runs, token usage and cost, LLM calls, tool calls and rejected
requests.

The request lifecycle and the agent API record these instruments (meter ``tenant_trace``);
`tenant_trace.init` chooses where they go (``metrics=`` / ``OTEL_METRICS_EXPORTER``)::

    name                                 kind       unit           attributes
    tenant_trace.run.duration            histogram  s              tenant.id, outcome, error.type
    tenant_trace.usage.tokens            counter    {token}        tenant.id, gen_ai.token.type,
                                                                   gen_ai.request.model,
                                                                   gen_ai.provider.name
    tenant_trace.usage.cost              counter    {USD}          tenant.id, gen_ai.request.model,
                                                                   gen_ai.provider.name
    tenant_trace.usage.unpriced_calls    counter    {call}         tenant.id, gen_ai.request.model,
                                                                   gen_ai.provider.name
    tenant_trace.llm.duration            histogram  s              tenant.id, gen_ai.request.model,
                                                                   error.type
    tenant_trace.tool.calls              counter    {call}         tenant.id, gen_ai.tool.name,
                                                                   outcome
    tenant_trace.requests.rejected       counter    {request}      reason (`Rejection.code`)
    tenant_trace.metrics.tenant_overflow counter    {measurement}  (none)

Usage counts every model call once, from the span of whichever instrumentation made it
(`tenant_trace.usage`), sampled or not. Instrumentations record their own
``gen_ai.client.token.usage`` and ``gen_ai.client.operation.duration`` without a tenant;
tenant-trace's names never collide with them, and the sum of ``tenant_trace.usage.tokens``
over tenants equals theirs for the calls made inside requests.

A run is one traced request, or a `start_trace` run outside any request; ``outcome`` is
``success`` or ``error``, and an error's ``error.type`` is the run's failure (``StaleData``),
the exception's class, or the 5xx status code. A rejected request carries no tenant: the
rejected value is never written to telemetry.

At most `DEFAULT_MAX_TENANTS` distinct ``tenant.id`` values (configurable, plus the ids that
are always kept: ``metric_tenants=`` and a middleware's ``allowed=``) appear per process; the
second half of the cap goes only to tenants with sustained traffic (`TenantCap`), and the
others are recorded as `OTHER` and counted by ``tenant_trace.metrics.tenant_overflow``.
Spans and logs keep the real id. Recording never raises into the application.
"""

from .expose import build_metric_readers, install
from .record import (
    ADMIT_AFTER,
    DEFAULT_MAX_TENANTS,
    OTHER,
    RUN_DURATION_BUCKETS,
    TenantCap,
    configure,
    keep_tenants,
    record_llm_call,
    record_rejection,
    record_request,
    record_run,
    record_tool_call,
    record_usage,
)

__all__ = [
    "ADMIT_AFTER",
    "DEFAULT_MAX_TENANTS",
    "OTHER",
    "RUN_DURATION_BUCKETS",
    "TenantCap",
    "build_metric_readers",
    "configure",
    "install",
    "keep_tenants",
    "record_llm_call",
    "record_rejection",
    "record_request",
    "record_run",
    "record_tool_call",
    "record_usage",
]
