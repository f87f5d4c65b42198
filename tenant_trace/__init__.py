"""tenant-trace: per-tenant tracing, logs and metrics for AI-agent web services.

Resolve the tenant of every request, keep it in context, open the root agent span and stamp
``tenant.id`` on every span the request produces. This module is the public facade; the
rooms behind it are `resolve`, `server`, `agent`, `propagate`, `export`, `redaction`,
`metrics`, `logs` and `local`.

The current things are read with ``get_current_*``: `get_current_tenant`,
`get_current_tenant_source`, `get_current_request`, `get_current_step` (the names before
0.2, ``get_tenant_source``, ``current_request`` and ``current_step``, still work).
"""

from ._version import __version__
from .agent import (
    GENAI_SEMCONV_VERSION,
    LLMCall,
    Memory,
    Retrieval,
    Run,
    RunBudget,
    Step,
    ToolCall,
    get_current_step,
    identity,
    llm_call,
    memory,
    retrieval,
    start_trace,
    sub_agent,
    tool_call,
)
from .agent.handles import current_step
from .context import (
    Tenant,
    get_current_tenant,
    get_current_tenant_source,
    get_tenant_source,
    require_tenant,
    set_tenant,
    tenant_context,
    validate_tenant_id,
)
from .errors import (
    ConfigurationError,
    InvalidTenantError,
    MissingDependencyError,
    Rejection,
    RunBudgetExceeded,
    TenantTraceError,
)
from .export import TenantSampler, TenantSpanProcessor
from .identity import Identity, get_current_identity
from .logs import TenantLogFilter, configure_logging
from .propagate import (
    ContextExecutor,
    carry_context,
    instrument_celery,
    instrument_threads,
    outbound_headers,
    propagate_httpx,
    propagate_requests,
    uninstrument_celery,
    uninstrument_threads,
)
from .redaction import RedactingSpanExporter, Redactor
from .resolve import (
    BaggageResolver,
    ChainResolver,
    HeaderResolver,
    JWTResolver,
    PathResolver,
    RequestView,
    SubdomainResolver,
    TenantPolicy,
    TrustedHeaderResolver,
    as_resolver,
)
from .server import TenantTraceASGIMiddleware, TenantTraceWSGIMiddleware, get_current_request
from .server.lifecycle import current_request
from .setup import init

__all__ = [
    "GENAI_SEMCONV_VERSION",
    "BaggageResolver",
    "ChainResolver",
    "ConfigurationError",
    "ContextExecutor",
    "HeaderResolver",
    "Identity",
    "InvalidTenantError",
    "JWTResolver",
    "LLMCall",
    "Memory",
    "MissingDependencyError",
    "PathResolver",
    "RedactingSpanExporter",
    "Redactor",
    "Rejection",
    "RequestView",
    "Retrieval",
    "Run",
    "RunBudget",
    "RunBudgetExceeded",
    "Step",
    "SubdomainResolver",
    "Tenant",
    "TenantLogFilter",
    "TenantPolicy",
    "TenantSampler",
    "TenantSpanProcessor",
    "TenantTraceASGIMiddleware",
    "TenantTraceError",
    "TenantTraceWSGIMiddleware",
    "ToolCall",
    "TrustedHeaderResolver",
    "__version__",
    "as_resolver",
    "carry_context",
    "configure_logging",
    "current_request",
    "current_step",
    "get_current_identity",
    "get_current_request",
    "get_current_step",
    "get_current_tenant",
    "get_current_tenant_source",
    "get_tenant_source",
    "identity",
    "init",
    "instrument_celery",
    "instrument_threads",
    "llm_call",
    "memory",
    "outbound_headers",
    "propagate_httpx",
    "propagate_requests",
    "require_tenant",
    "retrieval",
    "set_tenant",
    "start_trace",
    "sub_agent",
    "tenant_context",
    "tool_call",
    "uninstrument_celery",
    "uninstrument_threads",
    "validate_tenant_id",
]
