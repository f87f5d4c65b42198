"""Helpers for views."""

from __future__ import annotations

from tenant_trace.context import require_tenant

__all__ = ["require_tenant"]
