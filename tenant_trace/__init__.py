"""tenant-trace: per-tenant tracing, logs and metrics for AI-agent web services.

Resolve the tenant of every request, keep it in context, open the root agent span and stamp
``tenant.id`` on every span the request produces.
"""

from .context import (
    Tenant,
    get_current_tenant,
    get_tenant_source,
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
from .server.lifecycle import current_request
from .logs.record import TenantLogFilter, configure_logging
from .resolve.policy import TenantPolicy
from .export.processor import TenantSpanProcessor
from .propagate.http import outbound_headers, propagate_httpx, propagate_requests
from .redaction.redactor import Redactor
from .redaction.exporter import RedactingSpanExporter
from .resolve.view import RequestView
from .resolve.resolvers import (
    BaggageResolver,
    ChainResolver,
    HeaderResolver,
    PathResolver,
    SubdomainResolver,
    TrustedHeaderResolver,
    as_resolver,
)
from .agent.rollup import RunBudget
from .export.sampling import TenantSampler
from .setup import init
from .agent.api import (
    GENAI_SEMCONV_VERSION,
    llm_call,
    memory,
    retrieval,
    start_trace,
    sub_agent,
    tool_call,
)
from .agent.handles import current_step
from .propagate.threads import (
    ContextExecutor,
    carry_context,
    instrument_threads,
    uninstrument_threads,
)
from .resolve.jwt import JWTResolver

from ._version import __version__

__all__ = [
    "GENAI_SEMCONV_VERSION",
    "BaggageResolver",
    "ChainResolver",
    "ConfigurationError",
    "ContextExecutor",
    "HeaderResolver",
    "InvalidTenantError",
    "JWTResolver",
    "MissingDependencyError",
    "PathResolver",
    "RedactingSpanExporter",
    "Redactor",
    "Rejection",
    "RunBudget",
    "RunBudgetExceeded",
    "RequestView",
    "SubdomainResolver",
    "Tenant",
    "TenantLogFilter",
    "TenantPolicy",
    "TenantSampler",
    "TenantSpanProcessor",
    "TenantTraceError",
    "TrustedHeaderResolver",
    "__version__",
    "as_resolver",
    "carry_context",
    "configure_logging",
    "current_request",
    "current_step",
    "get_current_tenant",
    "get_tenant_source",
    "init",
    "instrument_threads",
    "llm_call",
    "memory",
    "outbound_headers",
    "propagate_httpx",
    "propagate_requests",
    "retrieval",
    "set_tenant",
    "start_trace",
    "sub_agent",
    "tenant_context",
    "tool_call",
    "uninstrument_threads",
    "validate_tenant_id",
]
