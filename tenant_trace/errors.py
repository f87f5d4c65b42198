"""Exceptions raised by tenant-trace.

The hierarchy::

    TenantTraceError
    ├── InvalidTenantError (also ValueError)   a tenant id failed validation
    ├── ConfigurationError (also ValueError)   an option given to the library is wrong
    │   └── OptionNameError                    an option's name is unknown or repeated
    ├── Rejection                              a request must be refused (status + JSON body)
    ├── RunBudgetExceeded                      an agent run crossed its budget
    └── MissingDependencyError (also ImportError) an optional extra is not installed

A `Rejection` is the only exception the middleware turns into a response; every other
exception inside telemetry code is contained and logged.
"""

from __future__ import annotations

import json

__all__ = [
    "ConfigurationError",
    "InvalidTenantError",
    "MissingDependencyError",
    "OptionNameError",
    "Rejection",
    "RunBudgetExceeded",
    "TenantTraceError",
    "missing_tenant",
]


class TenantTraceError(Exception):
    """Base class of every exception tenant-trace raises on purpose."""


class InvalidTenantError(TenantTraceError, ValueError):
    """A tenant id is malformed. The message says why and never contains the id itself."""


class ConfigurationError(TenantTraceError, ValueError):
    """An option given to tenant-trace is invalid."""


class OptionNameError(ConfigurationError):
    """An option's name is unknown (a typo: the message names the likely meant one and the
    valid ones) or given twice."""


class MissingDependencyError(TenantTraceError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"{module} is not installed: pip install 'tenant-trace[{extra}]'")


class Rejection(TenantTraceError):
    """A request is refused: an HTTP status and a JSON body ``{"error": code, "detail": ...}``.

    Args:
        status: the HTTP status (400, 401, 403 or 503).
        code: a stable machine-readable error code, such as ``"invalid_tenant"``.
        detail: a human-readable sentence; it never echoes the rejected value.
        headers: extra response headers, such as ``WWW-Authenticate``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers

    def body(self) -> bytes:
        """The JSON response body."""
        return json.dumps({"error": self.code, "detail": self.detail}).encode()

    def response_headers(self) -> list[tuple[str, str]]:
        """Headers for the rejection response, content type included."""
        return [("content-type", "application/json"), *self.headers]


def missing_tenant() -> Rejection:
    """The 401 for a request that names no tenant where one is required."""
    return Rejection(401, "missing_tenant", "the request does not name a tenant")


class RunBudgetExceeded(TenantTraceError):
    """A run crossed a limit of its `RunBudget` (LLM calls, tokens or wall time)."""

    def __init__(self, limit: str, value: float, allowed: float) -> None:
        super().__init__(f"run budget exceeded: {limit} {value:g} > {allowed:g}")
        self.limit = limit
        self.value = value
        self.allowed = allowed
