"""Django adapter: ``"tenant_trace_django.middleware.TenantTraceMiddleware"`` in MIDDLEWARE,
options in the ``TENANT_TRACE`` setting, ``"tenant_trace_django"`` in INSTALLED_APPS for the
system checks."""

try:
    import django  # noqa: F401
except ImportError:  # pragma: no cover
    from tenant_trace.errors import MissingDependencyError

    raise MissingDependencyError("django", "django") from None

from tenant_trace.context import require_tenant

from .middleware import TenantTraceMiddleware

__all__ = ["TenantTraceMiddleware", "require_tenant"]
