"""The user, session and conversation beside the tenant: stamped on every span of the block
(other libraries' too) and its log lines, user.id as a per-tenant pseudonym, never on a
metric; ``tenant-trace traces`` filters by them."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from opentelemetry import trace

import tenant_trace
from tenant_trace.config import settings
from tenant_trace.export.store import SQLiteSpanExporter
from tenant_trace_fastapi import TenantTraceMiddleware
from tests.conftest import Spans
from tests.test_cli import as_json
from tests.test_metrics import Points, points  # noqa: F401 (a fixture)

IDENTITY = ("user.id", "session.id", "gen_ai.conversation.id")


def make_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(TenantTraceMiddleware)

    @app.post("/chat")
    def chat(request: Request) -> dict[str, str]:
        with tenant_trace.identity(
            user_id=request.headers["X-User-ID"],
            session_id=request.headers["X-Session-ID"],
            conversation_id=request.headers.get("X-Conversation-ID"),
        ):
            with (
                trace.get_tracer("some.framework").start_as_current_span("chain"),
                tenant_trace.llm_call("m") as llm,
            ):
                llm.record_usage(3, 1)
            logging.getLogger("tests.identity").info("answered")
        return {"ok": "yes"}

    return app


def ask(client: TestClient, tenant: str, user: str, session: str = "s-1") -> None:
    headers = {"X-Tenant-ID": tenant, "X-User-ID": user, "X-Session-ID": session}
    headers["X-Conversation-ID"] = f"conv-{session}"
    assert client.post("/chat", headers=headers).status_code == 200


def by_trace(spans: Spans) -> list[list[Any]]:
    traces: dict[int, list[Any]] = {}
    for span in spans.all():
        traces.setdefault(span.context.trace_id, []).append(span)
    return sorted(traces.values(), key=lambda t: min(s.start_time for s in t))


def test_every_span_of_the_block_carries_the_identity(
    spans: Spans,
    points: Points,  # noqa: F811 (the fixture imported above)
) -> None:
    """The run, the framework's span and the LLM call carry the pseudonymous user, the
    session and the conversation; the raw user id is nowhere; metrics carry none of them."""
    client = TestClient(make_app())
    ask(client, "acme", "alice@example.com")
    (trace_spans,) = by_trace(spans)
    names = {s.name for s in trace_spans if "user.id" in (s.attributes or {})}
    assert {"agent.run", "chain", "chat m"} <= names
    (user,) = {(s.attributes or {})["user.id"] for s in trace_spans if s.name in names}
    assert user.startswith("<USER:") and "alice" not in user
    for span in trace_spans:
        if span.name in ("chain", "chat m"):
            attributes = span.attributes or {}
            assert attributes["session.id"] == "s-1"
            assert attributes["gen_ai.conversation.id"] == "conv-s-1"
    assert not any("alice" in repr(dict(s.attributes or {})) for s in trace_spans)
    for name in ("tenant_trace.usage.tokens", "tenant_trace.run.duration"):
        assert points.of(name)
        assert not any(set(IDENTITY) & set(p.attributes) for p in points.of(name))


def test_pseudonyms_are_per_tenant_and_stable(spans: Spans) -> None:
    """One user of two tenants has two unlinkable pseudonyms; within a tenant it is one."""
    client = TestClient(make_app())
    for tenant in ("acme", "acme", "globex"):
        ask(client, tenant, "alice")
    users = [
        {(s.attributes or {}).get("user.id") for s in t if s.name == "chat m"}.pop()
        for t in by_trace(spans)
    ]
    assert users[0] == users[1] != users[2]


def test_pseudonymization_can_be_switched_off(spans: Spans) -> None:
    saved = settings.pseudonymize_users
    settings.pseudonymize_users = False
    try:
        with tenant_trace.tenant_context("acme"), tenant_trace.identity(user_id="u-42"):
            trace.get_tracer("t").start_span("x").end()
    finally:
        settings.pseudonymize_users = saved
    assert (spans.one("x").attributes or {})["user.id"] == "u-42"


def test_nested_blocks_merge_and_restore() -> None:
    with tenant_trace.identity(user_id="u", session_id="s"):
        with tenant_trace.identity(conversation_id="c") as inner:
            assert inner == tenant_trace.Identity("u", "s", "c")
        assert tenant_trace.get_current_identity() == tenant_trace.Identity("u", "s", None)
    assert tenant_trace.get_current_identity() is None


@pytest.mark.parametrize(
    "kwargs",
    [{"user_id": ""}, {"session_id": "a\nb"}, {"conversation_id": 7}, {"user_id": "x" * 256}],
)
def test_bad_ids_are_refused_without_echoing_them(kwargs: dict[str, Any]) -> None:
    with pytest.raises(tenant_trace.ConfigurationError) as refused:
        tenant_trace.identity(**kwargs)
    assert next(iter(kwargs)) in str(refused.value)
    assert "a\nb" not in str(refused.value)


def test_log_lines_carry_the_identity() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.identity.lines")
    handlers = tenant_trace.configure_logging(logging.INFO, stream=stream, logger=logger)
    logger.propagate = False
    try:
        with (
            tenant_trace.tenant_context("acme"),
            tenant_trace.identity(user_id="alice", session_id="s-9"),
        ):
            logger.info("inside")
        logger.info("outside")
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.propagate = True
    import json

    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["user_id"].startswith("<USER:") and inside["session_id"] == "s-9"
    assert "user_id" not in outside and "session_id" not in outside


def test_traces_filter_by_user_session_and_conversation(spans: Spans, tmp_path: Path) -> None:
    client = TestClient(make_app())
    ask(client, "acme", "alice", session="s-1")
    ask(client, "acme", "bob", session="s-2")
    ask(client, "acme", "alice", session="s-3")
    db = tmp_path / "traces.sqlite3"
    exporter = SQLiteSpanExporter(db)
    exporter.export(spans.all())
    exporter.shutdown()
    alice = next(
        (s.attributes or {})["user.id"]
        for t in by_trace(spans)[:1]
        for s in t
        if s.name == "chat m"
    )
    common = ("traces", "--tenant", "acme", "--db", str(db))
    assert len(as_json(*common)) == 3
    assert len(as_json(*common, "--user", alice)) == 2
    assert len(as_json(*common, "--user", "alice")) == 0  # the raw id was never recorded
    assert len(as_json(*common, "--session", "s-2")) == 1
    assert len(as_json(*common, "--conversation", "conv-s-3", "--user", alice)) == 1
    assert as_json("traces", "--tenant", "globex", "--db", str(db), "--user", alice) == []


# --- identity from the request: JWT claims and headers ------------------------------------


def request_app(**options: Any) -> TestClient:
    from examples.common import JWT_SECRET

    app = FastAPI()
    app.add_middleware(
        TenantTraceMiddleware,
        jwt={"key": JWT_SECRET, "algorithms": ["HS256"], "user_claim": "sub"},
        identity_headers={"session_id": "X-Session-ID", "conversation_id": "X-Conversation-ID"},
        **options,
    )

    @app.get("/ask")
    async def ask_route() -> dict[str, Any]:
        with trace.get_tracer("some.framework").start_as_current_span("chain"):
            return {"who": tenant_trace.get_current_identity()}

    return TestClient(app)


def bearer(tenant: str, sub: str) -> dict[str, str]:
    import jwt

    from examples.common import JWT_SECRET
    from tests.conftest import FAR_EXP

    token = jwt.encode({"tenant_id": tenant, "sub": sub, "exp": FAR_EXP}, JWT_SECRET, "HS256")
    return {"Authorization": f"Bearer {token}"}


def test_the_identity_comes_from_jwt_claims_and_headers(spans: Spans) -> None:
    client = request_app()
    headers = {**bearer("acme", "user-42"), "X-Session-ID": "s-9", "X-Conversation-ID": "c-1"}
    for _ in range(2):  # the second time from the verified-token cache
        response = client.get("/ask", headers=headers)
        assert response.json() == {"who": ["user-42", "s-9", "c-1"]}
    runs = spans.named("agent.run")
    chains = spans.named("chain")
    assert len(runs) == len(chains) == 2
    for span in (*runs, *chains):
        attributes = dict(span.attributes or {})
        assert attributes["session.id"] == "s-9"
        assert attributes["gen_ai.conversation.id"] == "c-1"
        assert attributes["user.id"] != "user-42", "pseudonymized"
    assert len({s.attributes["user.id"] for s in (*runs, *chains)}) == 1  # type: ignore[index]
    # The same user id in another tenant is another pseudonym.
    client.get("/ask", headers=bearer("globex", "user-42"))
    other = [s for s in spans.named("agent.run") if s.attributes["tenant.id"] == "globex"]  # type: ignore[index]
    assert other[0].attributes["user.id"] != runs[0].attributes["user.id"]  # type: ignore[index]
    assert "session.id" not in other[0].attributes  # type: ignore[operator]


def test_a_request_without_identity_has_none_and_nothing_leaks(spans: Spans) -> None:
    client = request_app()
    client.get("/ask", headers={**bearer("acme", "user-42"), "X-Session-ID": "s-9"})
    assert client.get("/ask").status_code == 401  # no credentials: refused, as before
    response = client.get("/ask", headers=bearer("acme", "user-7"))
    assert response.json() == {"who": ["user-7", None, None]}, "no session of the last request"
    assert tenant_trace.get_current_identity() is None


def test_an_invalid_identity_header_is_left_out(spans: Spans) -> None:
    client = request_app()
    response = client.get("/ask", headers={**bearer("acme", "u"), "X-Session-ID": "a\x7fb"})
    assert response.status_code == 200
    assert response.json()["who"][1] is None
    (run,) = spans.named("agent.run")
    assert "session.id" not in (run.attributes or {})


def test_unknown_identity_header_keys_are_configuration_errors() -> None:
    with pytest.raises(tenant_trace.ConfigurationError, match="identity_headers"):
        TenantTraceMiddleware(FastAPI(), identity_headers={"user": "X-User-ID"})
