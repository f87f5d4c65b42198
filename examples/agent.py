"""A small fake support agent, with no network, instrumented with tenant-trace.

Each run reads the conversation memory, retrieves help-center articles, plans with one LLM
call, calls two tools and answers with a second LLM call. For the tenant named by
``EXAMPLE_STALE_TENANT`` (default ``tenant-b``) the ``get_account_data`` tool returns cached
data 48 hours old on a share of runs (``EXAMPLE_STALE_PERCENT``, default 30, chosen by a hash
of the message so that it is repeatable): its freshness check fails and so does the run.
"""

from __future__ import annotations

import os
import time
import zlib
from typing import Any

import tenant_trace

STALE_TENANT = os.environ.get("EXAMPLE_STALE_TENANT", "tenant-b")
STALE_PERCENT = int(os.environ.get("EXAMPLE_STALE_PERCENT", "30"))
FRESHNESS_SECONDS = 15 * 60
MODEL = "demo-model-small"
# USD per million tokens (input, output): the run's estimated cost rolls up from these.
PRICES = {MODEL: (0.15, 0.60)}

ARTICLES = ["Resetting your password", "Understanding your invoice", "Changing your plan"]


def is_stale(tenant: str, message: str) -> bool:
    """Whether this run of `tenant` gets the 48-hour-old cached account data."""
    return tenant == STALE_TENANT and zlib.crc32(message.encode()) % 100 < STALE_PERCENT


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


@tenant_trace.tool_call("lookup_order", call_id="call_lookup_order")
def lookup_order(tenant: str) -> dict[str, Any]:
    return {"order": f"{tenant}-1042", "status": "shipped"}


def get_account_data(tenant: str, message: str) -> dict[str, Any]:
    with tenant_trace.tool_call("get_account_data", call_id="call_get_account_data") as tool:
        age = 48 * 3600 if is_stale(tenant, message) else 60
        tool.set_attribute("account.data_age_seconds", age)
        if age > FRESHNESS_SECONDS:
            tool.fail(f"account data is {age // 3600} hours old (cache)", error_type="StaleData")
        return {"tenant": tenant, "plan": "pro", "fetched_at": time.time() - age}


def run_agent(message: str, tenant: str) -> dict[str, Any]:
    """Answer `message` for `tenant`; the run's spans form one tree under the request."""
    with tenant_trace.start_trace(agent_name="support-agent", version="1.4.0") as run:
        run.record_input(message)
        with tenant_trace.memory("read", store="conversation-memory", key=f"{tenant}:history"):
            history = ["(earlier conversation)"]
        with tenant_trace.retrieval("help-center", top_k=3) as search:
            search.record_query(message)
            articles = ARTICLES[: 1 + len(message) % 3]
            search.set_results(len(articles))
        with tenant_trace.llm_call(MODEL, provider="demo") as plan:
            prompt = f"{history} {articles} {message}"
            plan.record_prompt(prompt)
            plan.record_usage(_tokens(prompt) + 200, 40)
            plan.set_response(model=MODEL, finish_reasons=["tool_calls"])
        order = lookup_order(tenant)
        account = get_account_data(tenant, message)
        stale = time.time() - account["fetched_at"] > FRESHNESS_SECONDS
        if stale:
            run.fail("get_account_data returned stale data", error_type="StaleData")
        with tenant_trace.llm_call(MODEL, provider="demo") as reply:
            text = (
                f"[{tenant}] Your order {order['order']} has {order['status']}."
                if not stale
                else f"[{tenant}] Sorry, I could not verify your account right now."
            )
            reply.record_usage(_tokens(message) + 300, _tokens(text))
            reply.set_response(model=MODEL, finish_reasons=["stop"])
            reply.record_completion(text)
        run.record_output(text)
    return {"tenant": tenant, "response": f"{text} (you said: {message})"}
