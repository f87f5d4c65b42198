"""Tenant options shared by the three example apps.

A request names its tenant by the ``X-Tenant-ID`` header, by the ``tenant_id`` claim of a
Bearer JWT signed (HS256) with ``EXAMPLE_JWT_SECRET``, or by its subdomain under
``EXAMPLE_BASE_DOMAIN``; when several are present they must agree (else 403).
"""

from __future__ import annotations

import json
import os
from typing import Any

from examples.agent import PRICES, run_agent

JWT_SECRET = os.environ.get("EXAMPLE_JWT_SECRET", "example-secret-for-local-use-only-32b")
BASE_DOMAIN = os.environ.get("EXAMPLE_BASE_DOMAIN", "example.com")

# What every example passes to tenant_trace.init(): the agent's model prices, for the
# estimated cost of each run.
INIT_OPTIONS: dict[str, Any] = {"prices": PRICES}

# /chat may be asked to wait (an agent "thinking"), so that concurrent requests interleave.
MAX_DELAY = 0.1

TENANT_OPTIONS: dict[str, Any] = {
    "header": "X-Tenant-ID",
    "jwt": {"key": JWT_SECRET, "algorithms": ["HS256"], "claim": "tenant_id"},
    "subdomain": BASE_DOMAIN,
    "exclude_paths": ["/health"],
}


CHAT_BODY_ERROR = {
    "error": "invalid_body",
    "detail": 'expected a JSON object {"message": string, "delay": number (optional)}',
}


def chat_body(body: object) -> tuple[str, float] | None:
    """``(message, seconds to wait)`` from a /chat body (raw bytes or parsed JSON), or
    ``None`` when malformed. The wait is kept within [0, MAX_DELAY] (NaN and negatives: 0)."""
    if isinstance(body, bytes):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    if not isinstance(body, dict):
        return None
    message, delay = body.get("message"), body.get("delay", 0.0)
    if (
        not isinstance(message, str)
        or isinstance(delay, bool)
        or not isinstance(delay, (int, float))
    ):
        return None
    return message, max(0.0, min(float(delay), MAX_DELAY))


def answer(message: str, tenant: str | None) -> dict[str, Any]:
    """The example's agent: a fake support agent run for the tenant (see examples/agent.py)."""
    if tenant is None:
        return {"tenant": None, "response": f"you said: {message}"}
    return run_agent(message, tenant)
