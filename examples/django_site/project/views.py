"""Views of the Django example site: the endpoints of every example app.

POST /chat answers ``{"tenant", "response"}`` (tenant required), GET /stream streams chunks
that each name the tenant, GET /health is excluded from tenant resolution and tracing.
The views are async, so that under ASGI concurrent requests do not queue for Django's one
thread for sync views.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

import tenant_trace
from examples.common import CHAT_BODY_ERROR, answer, chat_body
from tenant_trace_django import require_tenant


@csrf_exempt  # a JSON API for agents, not a browser form
@require_POST
async def chat(request: HttpRequest) -> JsonResponse:
    require_tenant()
    body = chat_body(request.body)
    if body is None:
        return JsonResponse(CHAT_BODY_ERROR, status=422)
    message, wait = body
    await asyncio.sleep(wait)
    return JsonResponse(answer(message, tenant_trace.get_current_tenant()))


@require_GET
async def stream(request: HttpRequest) -> StreamingHttpResponse:
    # Django streams an async iterator under ASGI and a sync one under WSGI; given the other
    # kind, it reads the whole body first (with a warning) and nothing is streamed.
    chunks = _achunks() if isinstance(request, ASGIRequest) else _chunks()
    return StreamingHttpResponse(chunks, content_type="text/plain")


async def _achunks() -> AsyncIterator[str]:
    for i in range(5):
        await asyncio.sleep(0)
        yield f"chunk {i} for {tenant_trace.get_current_tenant()}\n"


def _chunks() -> Iterator[str]:
    for i in range(5):
        yield f"chunk {i} for {tenant_trace.get_current_tenant()}\n"


@require_GET
async def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
