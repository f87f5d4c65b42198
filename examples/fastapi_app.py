"""The FastAPI example: ``uvicorn examples.fastapi_app:app``.

POST /chat answers ``{"tenant", "response"}`` (tenant required), GET /stream streams chunks
that each name the tenant, GET /health is excluded from tenant resolution and tracing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

import tenant_trace
from examples.common import INIT_OPTIONS, MAX_DELAY, TENANT_OPTIONS, answer
from tenant_trace_fastapi import TenantTraceMiddleware, get_tenant, require_tenant

tenant_trace.init(service_name="example-fastapi", **INIT_OPTIONS)

app = FastAPI(title="tenant-trace FastAPI example")
app.add_middleware(TenantTraceMiddleware, **TENANT_OPTIONS)


class Chat(BaseModel):
    message: str
    delay: float = 0.0


@app.post("/chat")
async def chat(body: Chat, tenant: str = Depends(require_tenant)) -> dict[str, Any]:
    await asyncio.sleep(max(0.0, min(body.delay, MAX_DELAY)))
    return answer(body.message, tenant_trace.get_current_tenant())


@app.get("/stream")
async def stream(tenant: str | None = Depends(get_tenant)) -> StreamingResponse:
    async def chunks() -> AsyncIterator[str]:
        for i in range(5):
            await asyncio.sleep(0)
            yield f"chunk {i} for {tenant_trace.get_current_tenant()}\n"

    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
