"""Interleaved multi-tenant traffic against a real server, and the checks that no request's
tenant leaked into another's response or spans.

Every request carries its own ``traceparent``, so each exported span can be traced back to
the request (and so the tenant) it belongs to.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from tests.servers.process import PATIENCE


@dataclass
class Sent:
    tenant: str
    trace_id: str
    status: int
    body: Any


async def _one(client: httpx.AsyncClient, path: str, tenant: str, max_delay: float) -> Sent:
    trace_id = secrets.token_hex(16)
    headers = {"X-Tenant-ID": tenant, "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    body = {"message": f"hello from {tenant}", "delay": random.uniform(0, max_delay)}
    response = await client.post(path, json=body, headers=headers)
    return Sent(tenant, trace_id, response.status_code, response.json())


async def _run(
    url: str, path: str, n: int, tenants: int, concurrency: int, max_delay: float
) -> list[Sent]:
    names = [f"tenant-{i:02d}" for i in range(tenants)]
    # A fresh connection per request: no race with a server closing an idle keep-alive one.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=PATIENCE) as client:

        async def bounded(tenant: str) -> Sent:
            async with semaphore:
                return await _one(client, path, tenant, max_delay)

        return await asyncio.gather(*(bounded(random.choice(names)) for _ in range(n)))


def interleaved(
    url: str,
    *,
    path: str = "/chat",
    n: int = 2000,
    tenants: int = 50,
    concurrency: int = 50,
    max_delay: float = 0.01,
) -> list[Sent]:
    """Send `n` POSTs from `tenants` tenants at once, each asking the app to wait a random
    delay (``{"delay": s}``) so that requests overlap."""
    return asyncio.run(_run(url, path, n, tenants, concurrency, max_delay))


def mismatches(sent: list[Sent], spans: list[dict[str, Any]]) -> list[str]:
    """Every way in which a response or span names another request's tenant (empty: none)."""
    problems = []
    expected = {s.trace_id: s.tenant for s in sent}
    for s in sent:
        if s.status != 200 or s.body.get("tenant") != s.tenant:
            problems.append(f"response for {s.tenant}: {s.status} {s.body}")
    roots = Counter()
    for span in spans:
        want = expected.get(span["trace_id"])
        if want is None:
            continue
        got = span["attributes"].get("tenant.id")
        if got != want:
            problems.append(f"span {span['name']} of {want}'s request has tenant {got!r}")
        if span["name"] == "agent.run":
            roots[span["trace_id"]] += 1
    for trace_id, tenant in expected.items():
        if roots[trace_id] != 1:
            problems.append(f"{tenant}'s request has {roots[trace_id]} agent.run spans")
    return problems
