"""The Flask example: ``gunicorn -k gthread --threads 8 examples.flask_app:app``.

POST /chat answers ``{"tenant", "response"}`` (tenant required), GET /stream streams chunks
that each name the tenant, GET /health is excluded from tenant resolution and tracing.
Other tenant-trace settings come from ``FLASK_TENANT_TRACE_*`` environment variables
(Flask's ``from_prefixed_env``), e.g. ``FLASK_TENANT_TRACE_REQUIRED=false``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Flask, Response, request
from flask.typing import ResponseReturnValue

import tenant_trace
from examples.common import CHAT_BODY_ERROR, INIT_OPTIONS, TENANT_OPTIONS, answer, chat_body
from tenant_trace_flask import TenantTrace, require_tenant

tenant_trace.init(service_name="example-flask", **INIT_OPTIONS)

app = Flask(__name__)
app.config.from_prefixed_env()
TenantTrace(app, **TENANT_OPTIONS)


@app.post("/chat")
def chat() -> ResponseReturnValue:
    require_tenant()
    body = chat_body(request.get_json(silent=True))
    if body is None:
        return CHAT_BODY_ERROR, 422
    message, wait = body
    time.sleep(wait)
    return answer(message, tenant_trace.get_current_tenant())


@app.get("/stream")
def stream() -> Response:
    def chunks() -> Iterator[str]:
        for i in range(5):
            yield f"chunk {i} for {tenant_trace.get_current_tenant()}\n"

    return Response(chunks(), mimetype="text/plain")


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
