"""JSON log lines under real servers: uvicorn (FastAPI, one event loop) and gunicorn's gthread
worker (Flask, two processes of eight threads). Many interleaved requests from many tenants:
every line carries its own request's tenant and trace, and names a span of that request.

This module is also the servers' target: with ``TENANT_TRACE_TEST_LOGFILE`` set (only in the
server process) it configures tenant-trace and JSON logs into that file.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from flask import Flask, request
from pydantic import BaseModel

import tenant_trace
from tenant_trace_fastapi import TenantTraceMiddleware
from tenant_trace_flask import TenantTrace
from tests.servers.load import Sent, interleaved, mismatches
from tests.servers.process import PATIENCE, Server, serve

pytestmark = pytest.mark.real_server

LOGFILE = "TENANT_TRACE_TEST_LOGFILE"
log = logging.getLogger("tests.logs.server")

if os.environ.get(LOGFILE):  # in the server process only
    tenant_trace.init(service_name="logs-test")
    tenant_trace.configure_logging(stream=open(os.environ[LOGFILE], "a", buffering=1))  # noqa: SIM115


def agent_work(message: str) -> None:
    with tenant_trace.start_trace(agent_name="support-agent"), tenant_trace.tool_call("lookup"):
        log.info("tool called", extra={"chars": len(message)})


fastapi_app = FastAPI()
fastapi_app.add_middleware(TenantTraceMiddleware, header="X-Tenant-ID")


class Chat(BaseModel):
    message: str
    delay: float = 0.0


@fastapi_app.post("/chat")
async def fastapi_chat(body: Chat) -> dict[str, Any]:
    log.info("chat received")
    await asyncio.sleep(min(body.delay, 0.05))
    agent_work(body.message)
    await asyncio.to_thread(log.info, "in a worker thread")
    return {"tenant": tenant_trace.get_current_tenant()}


flask_app = Flask(__name__)
TenantTrace(flask_app, header="X-Tenant-ID")


@flask_app.post("/chat")
def flask_chat() -> dict[str, Any]:
    body = request.get_json()
    log.info("chat received")
    time.sleep(min(float(body.get("delay", 0.0)), 0.05))
    agent_work(body["message"])
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(contextvars.copy_context().run, log.info, "in a worker thread").result()
    return {"tenant": tenant_trace.get_current_tenant()}


SERVERS = [
    pytest.param(("uvicorn", "tests.test_logs_servers:fastapi_app"), id="uvicorn-fastapi"),
    pytest.param(("gunicorn", "tests.test_logs_servers:flask_app"), id="gunicorn-gthread-flask"),
]
MESSAGES = ["chat received", "tool called", "in a worker thread"]


@pytest.fixture(scope="module", params=SERVERS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path]]:
    kind, target = request.param
    tmp = tmp_path_factory.mktemp(kind)
    logfile = tmp / "lines.jsonl"
    logfile.touch()
    with serve(kind, target, tmp, env={LOGFILE: str(logfile)}) as running:
        yield running, logfile


def read_lines(logfile: Path, expected: int, timeout: float = PATIENCE) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        with logfile.open() as f:
            lines = [json.loads(line) for line in f if line.strip()]
        ours = [line for line in lines if line["logger"] == "tests.logs.server"]
        if len(ours) >= expected or time.monotonic() > deadline:
            return ours
        time.sleep(0.05)


def test_interleaved_requests_log_their_own_tenant_and_trace(server: tuple[Server, Path]) -> None:
    """300 overlapping requests of 20 tenants: each request's three lines carry its tenant and
    trace id, the agent line its agent, and each names a span of that request that carries
    the same tenant."""
    running, logfile = server
    sent: list[Sent] = interleaved(running.url, n=300, tenants=20, concurrency=30, max_delay=0.02)
    spans = running.spans(roots=300)
    assert mismatches(sent, spans) == []
    lines = read_lines(logfile, expected=3 * len(sent))
    assert len(lines) == 3 * len(sent)
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        by_trace[line["trace_id"]].append(line)
    span_tenant = {(s["trace_id"], s["span_id"]): s["attributes"].get("tenant.id") for s in spans}
    for s in sent:
        mine = by_trace.pop(s.trace_id, [])
        assert sorted(line["message"] for line in mine) == sorted(MESSAGES), s
        for line in mine:
            assert line["tenant_id"] == s.tenant, line
            assert span_tenant[(line["trace_id"], line["span_id"])] == s.tenant, line
            want_agent = "support-agent" if line["message"] == "tool called" else None
            assert line["agent_id"] == want_agent, line
    assert by_trace == {}  # no line outside the requests sent
