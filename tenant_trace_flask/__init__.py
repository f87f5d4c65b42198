"""Flask adapter: ``TenantTrace(app)``, or ``TenantTrace()`` and ``init_app(app)``."""

from .extension import TenantTrace, require_tenant

__all__ = ["TenantTrace", "require_tenant"]
