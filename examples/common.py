"""Tenant options shared by the three example apps.

A request names its tenant by the ``X-Tenant-ID`` header, by the ``tenant_id`` claim of a
Bearer JWT signed (HS256) with ``EXAMPLE_JWT_SECRET``, or by its subdomain under
``EXAMPLE_BASE_DOMAIN``; when several are present they must agree (else 403).
"""

from __future__ import annotations

import os
from typing import Any

JWT_SECRET = os.environ.get("EXAMPLE_JWT_SECRET", "example-secret-for-local-use-only-32b")
BASE_DOMAIN = os.environ.get("EXAMPLE_BASE_DOMAIN", "example.com")

# /chat may be asked to wait (an agent "thinking"), so that concurrent requests interleave.
MAX_DELAY = 0.1

TENANT_OPTIONS: dict[str, Any] = {
    "header": "X-Tenant-ID",
    "jwt": {"key": JWT_SECRET, "algorithms": ["HS256"], "claim": "tenant_id"},
    "subdomain": BASE_DOMAIN,
    "exclude_paths": ["/health"],
}


def answer(message: str, tenant: str | None) -> dict[str, Any]:
    """The example's stand-in for an agent: echoes the message for the tenant."""
    return {"tenant": tenant, "response": f"[{tenant}] you said: {message}"}
