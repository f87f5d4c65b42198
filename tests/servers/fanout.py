"""Two FastAPI services for the propagation tests, each served by uvicorn in its own process.

``tests.servers.fanout:edge``: ``POST /fanout`` fans one request out to asyncio tasks
(``create_task``, ``gather``, ``TaskGroup``), a one-thread ``ThreadPoolExecutor``,
``loop.run_in_executor`` on a one-thread default executor, a ``threading.Thread``, a Celery
task (tests.celery_app, broker ``TENANT_TRACE_TEST_BROKER``) and HTTP calls (httpx, and
requests from a pool thread) to the downstream service at ``TENANT_TRACE_TEST_DOWNSTREAM``;
it answers with what every unit of work saw. The tenant is optional (``X-Tenant-ID``), so a
request without one reuses the same pool threads. Each unit leaves a mess behind (a tenant
and a current span set and never reset), which must not reach any later unit of work.

``tests.servers.fanout:downstream``: ``POST /unit`` reports its context and the ``baggage``
it received; it trusts the internal tenant header.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import httpx
import requests
from fastapi import FastAPI, Request
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import tenant_trace
from tenant_trace.propagate.http import INTERNAL_TENANT_HEADER, propagate_httpx, propagate_requests
from tenant_trace_fastapi import TenantTraceMiddleware
from tests.celery_app import observed, whoami  # which also runs tenant_trace.init()
from tests.servers.process import PATIENCE

DOWNSTREAM = os.environ.get("TENANT_TRACE_TEST_DOWNSTREAM", "http://127.0.0.1:9")
# A span of a trace no request has: seen anywhere later, it leaked.
FOREIGN = NonRecordingSpan(SpanContext(0xF * (16**31), 0xF, False, TraceFlags(1)))

POOL = ThreadPoolExecutor(max_workers=1)  # one thread, reused by every request


def leave_a_mess() -> None:
    """What careless code does: set a tenant and a current span, and never reset them."""
    tenant_trace.set_tenant("left-behind")
    otel_context.attach(trace.set_span_in_context(FOREIGN))


def unit_sync(label: str) -> dict[str, Any]:
    with tenant_trace.tool_call(f"unit {label}"):
        seen = observed(label)
    leave_a_mess()
    return seen


async def unit_async(label: str) -> dict[str, Any]:
    with tenant_trace.tool_call(f"unit {label}"):
        await asyncio.sleep(0)
        seen = observed(label)
    leave_a_mess()
    return seen


SESSION = propagate_requests(requests.Session(), tenant_header=INTERNAL_TENANT_HEADER)


def unit_requests(label: str) -> dict[str, Any]:
    """An HTTP call with requests, from a pool thread, inside a span of its own."""
    with tenant_trace.tool_call(f"unit {label}"):
        response = SESSION.post(f"{DOWNSTREAM}/unit", json={"label": label}, timeout=PATIENCE)
    response.raise_for_status()
    seen: dict[str, Any] = response.json()
    leave_a_mess()
    return seen


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))
    async with propagate_httpx(
        httpx.AsyncClient(timeout=PATIENCE), tenant_header=INTERNAL_TENANT_HEADER
    ) as client:
        app.state.client = client
        yield


edge = FastAPI(lifespan=lifespan)
edge.add_middleware(TenantTraceMiddleware, required=False)


@edge.post("/fanout")
async def fanout(request: Request) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    units: list[dict[str, Any]] = []
    with tenant_trace.start_trace("fanout"):
        before = observed("before")
        units.append(await asyncio.create_task(unit_async("create_task")))
        units += await asyncio.gather(unit_async("gather-1"), unit_async("gather-2"))
        if sys.version_info >= (3, 11):
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(unit_async(f"taskgroup-{i}")) for i in (1, 2)]
            units += [task.result() for task in tasks]
        units.append(await asyncio.wrap_future(POOL.submit(unit_sync, "executor")))
        units.append(await loop.run_in_executor(None, unit_sync, "run_in_executor"))
        from_thread: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: from_thread.update(unit_sync("thread")))
        thread.start()
        await asyncio.to_thread(thread.join)
        units.append(from_thread)
        result = whoami.delay("celery")
        units.append(await asyncio.to_thread(result.get, timeout=PATIENCE))
        response = await request.app.state.client.post(
            f"{DOWNSTREAM}/unit", json={"label": "httpx"}
        )
        units.append(response.json())
        units.append(await asyncio.wrap_future(POOL.submit(unit_requests, "requests")))
        after = observed("after")
    return {"before": before, "units": units, "after": after}


downstream = FastAPI()
# An internal service, which only the edge reaches: it continues its callers' traces.
downstream.add_middleware(
    TenantTraceMiddleware,
    trusted_internal_header=INTERNAL_TENANT_HEADER,
    required=False,
    trust_traceparent=True,
)


@downstream.post("/unit")
async def unit(request: Request) -> dict[str, Any]:
    label = (await request.json())["label"]
    with tenant_trace.tool_call(f"unit {label}-downstream"):
        seen = observed(label)
    return {**seen, "baggage": request.headers.get("baggage")}
