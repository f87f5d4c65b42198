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
from .lifecycle import current_request
from .policy import TenantPolicy
from .processor import TenantSpanProcessor
from .request import RequestView
from .resolvers import ChainResolver, HeaderResolver, PathResolver, SubdomainResolver, as_resolver
from .rollup import RunBudget
from .setup import init
from .spans import (
    GENAI_SEMCONV_VERSION,
    current_step,
    llm_call,
    memory,
    retrieval,
    start_trace,
    sub_agent,
    tool_call,
)
from .tokens import JWTResolver

__version__ = "0.1.0"

__all__ = [
    "GENAI_SEMCONV_VERSION",
    "ChainResolver",
    "ConfigurationError",
    "HeaderResolver",
    "InvalidTenantError",
    "JWTResolver",
    "MissingDependencyError",
    "PathResolver",
    "Rejection",
    "RunBudget",
    "RunBudgetExceeded",
    "RequestView",
    "SubdomainResolver",
    "Tenant",
    "TenantPolicy",
    "TenantSpanProcessor",
    "TenantTraceError",
    "__version__",
    "as_resolver",
    "current_request",
    "current_step",
    "get_current_tenant",
    "get_tenant_source",
    "init",
    "llm_call",
    "memory",
    "retrieval",
    "set_tenant",
    "start_trace",
    "sub_agent",
    "tenant_context",
    "tool_call",
    "validate_tenant_id",
]
