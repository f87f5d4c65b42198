"""The FastAPI example: ``uvicorn examples.fastapi_app:app``.

POST /chat answers ``{"tenant", "response"}`` (tenant required), GET /stream streams chunks
that each name the tenant, GET /health is excluded from tenant resolution and tracing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

import tenant_trace
from examples.common import CHAT_BODY_ERROR, INIT_OPTIONS, TENANT_OPTIONS, answer, chat_body
from tenant_trace_fastapi import TenantTraceMiddleware, get_tenant, require_tenant

tenant_trace.init(service_name="example-fastapi", **INIT_OPTIONS)

app = FastAPI(title="tenant-trace FastAPI example")
app.add_middleware(TenantTraceMiddleware, **TENANT_OPTIONS)


@app.post("/chat")
async def chat(request: Request, tenant: str = Depends(require_tenant)) -> Any:
    # The body is checked by hand, as in the Flask and Django examples: every framework
    # answers a malformed one with the same 422.
    body = chat_body(await request.body())
    if body is None:
        return JSONResponse(CHAT_BODY_ERROR, status_code=422)
    message, wait = body
    await asyncio.sleep(wait)
    return answer(message, tenant_trace.get_current_tenant())


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
