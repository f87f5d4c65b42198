"""The web view of ``tenant-trace serve`` through Starlette's TestClient, over a store written
by the FastAPI example app under uvicorn (tenant-a, tenant-b whose get_account_data returns
stale data, tenant-c) and by an app whose tenants, span names, attributes and failure
messages are hostile: who may see what (404 for another tenant's data exactly as for what
does not exist, 401 without a valid token), hostile strings escaped, the security headers,
GET only."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode
from starlette.testclient import TestClient

import tenant_trace
from examples.agent import is_stale
from tenant_trace.errors import ConfigurationError
from tenant_trace.export.store import SQLiteSpanExporter
from tenant_trace.local.cli import main as cli
from tenant_trace.local.store import SpanStore, summarize
from tenant_trace.local.web.access import SECRET_ENV, Verifier, load_secret, sign
from tenant_trace.local.web.app import COOKIE, create_app
from tenant_trace_fastapi import TenantTraceMiddleware
from tests.conftest import FakeClock
from tests.servers import spanfile
from tests.servers.process import PATIENCE, serve
from tests.test_cli import TENANTS, send
from tests.test_cli_hostile import BIDI, CLIPBOARD, ESCAPES

pytestmark = pytest.mark.real_server

RUNS = 25  # per tenant: over the alert rules' 20
ADMIN = "admin-token-for-tests"
SECRET = b"a secret of the store, for tests"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
JS_URL = "javascript:alert(1)"
HOSTILE_TENANTS = (SCRIPT, IMG, JS_URL)


def hostile_app(provider: TracerProvider) -> FastAPI:
    """A real app whose steps are named, described and failed with markup and escapes."""
    app = FastAPI()
    app.add_middleware(TenantTraceMiddleware, tracer_provider=provider)
    tracer = provider.get_tracer("tests.web")

    @app.get("/run")
    def run() -> dict[str, Any]:
        with tracer.start_as_current_span(f"step {SCRIPT}") as span:
            span.set_attribute("link", JS_URL)
            span.set_attribute(IMG, f"clip {CLIPBOARD} bidi {BIDI}")
            for index, escape in enumerate(ESCAPES):
                span.add_event(f"event {index} {escape}", {"note": escape})
        with tracer.start_as_current_span("tool") as span:
            span.set_status(Status(StatusCode.ERROR, f"stale {IMG} {CLIPBOARD}"))
        return {"tenant": tenant_trace.get_current_tenant()}

    return app


def fill(db: Path, tmp: Path) -> dict[str, str]:
    """Write the store: RUNS requests of each tenant to the FastAPI example under uvicorn,
    then one run of each hostile tenant; returns {trace_id: tenant} of the example's."""
    env = {
        "TENANT_TRACE_DB": str(db),
        "OTEL_TRACES_EXPORTER": "local",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        spanfile.ENV: "",
    }
    sent = {}
    with (
        serve("uvicorn", "examples.fastapi_app:app", tmp, env=env) as app,
        httpx.Client(timeout=PATIENCE) as client,
    ):
        for i in range(RUNS):
            for tenant in TENANTS:
                sent[send(client, app.url, tenant, f"question {i} from {tenant}")] = tenant
    provider = TracerProvider()
    provider.add_span_processor(tenant_trace.TenantSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(db)))
    client = TestClient(hostile_app(provider))
    for tenant in HOSTILE_TENANTS:
        assert client.get("/run", headers={"X-Tenant-ID": tenant}).json() == {"tenant": tenant}
    provider.shutdown()
    return sent


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("web")
    db = tmp / "traces.sqlite3"
    return db, fill(db, tmp)


@pytest.fixture
def clock(store: tuple[Path, dict[str, str]]) -> FakeClock:
    """One second after the last run: the runs are recent, the alerts' window holds them."""
    with sqlite3.connect(store[0]) as connection:
        (last,) = connection.execute("SELECT MAX(end_ns) FROM spans").fetchone()
    return FakeClock(last / 1e9 + 1)


@pytest.fixture
def app(store: tuple[Path, dict[str, str]], clock: FakeClock) -> Any:
    return create_app(store[0], verifier=Verifier(ADMIN, SECRET, clock), clock=clock)


def client(app: Any, token: str | None = ADMIN) -> TestClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return TestClient(app, headers=headers, follow_redirects=False)


def scoped(app: Any, clock: FakeClock, tenant: str) -> TestClient:
    return client(app, sign(SECRET, tenant, expires=clock() + 3600))


def failed_runs(db: Path, tenant: str) -> list[dict[str, Any]]:
    store = SpanStore(db)
    try:
        return [run for run in store.runs(since_ns=0, tenant=tenant) if run["failed"]]
    finally:
        store.close()


def test_the_overview_lists_the_tenants_and_tenant_b_alerts(app: Any) -> None:
    """Admin: one row per tenant with its runs and failures; tenant-b's alert fires."""
    body = client(app).get("/api/tenants").json()
    rows = {row["tenant"]: row for row in body["tenants"]}
    assert set(rows) == {*TENANTS, *HOSTILE_TENANTS}
    for tenant in TENANTS:
        stale = sum(is_stale(tenant, f"question {i} from {tenant}") for i in range(RUNS))
        assert (rows[tenant]["runs"], rows[tenant]["failures"]) == (RUNS, stale)
        assert rows[tenant]["tokens"] > 0 and rows[tenant]["cost_usd"] > 0
    assert rows["tenant-b"]["failures"] > 1
    # The latency rule compares real run durations under uvicorn, which a busy machine
    # makes uneven: it is left out here (test_rules checks it on made-up durations).
    firing = {
        (a["rule"], a["tenant"]) for a in body["alerts"] if a["rule"] != "TenantRunLatencyHigh"
    }
    assert ("TenantRunFailureRateHigh", "tenant-b") in firing
    assert {tenant for _, tenant in firing} == {"tenant-b"}


def test_an_alert_leads_to_the_latest_failing_trace(
    app: Any, store: tuple[Path, dict[str, str]]
) -> None:
    """The alert's link redirects to tenant-b's latest failed run, whose waterfall shows the
    failed get_account_data tool step, red, with its message, and opens on it."""
    admin = client(app)
    page = admin.get("/").text
    assert 'href="/failing?tenant=tenant-b"' in page
    response = admin.get("/failing?tenant=tenant-b")
    latest = failed_runs(store[0], "tenant-b")[-1]["trace_id"]
    assert (response.status_code, response.headers["location"]) == (303, f"/traces/{latest}")
    trace = admin.get(f"/api/traces/{latest}").json()
    (tool,) = [s for s in trace["spans"] if s["name"] == "execute_tool get_account_data"]
    assert (tool["kind"], tool["failed"], trace["focus"]) == ("tool", True, tool["span_id"])
    assert tool["message"] == "account data is 48 hours old (cache)"
    html = admin.get(response.headers["location"]).text
    assert f'<tr class="span kind-tool error" data-span-id="{tool["span_id"]}">' in html
    assert "account data is 48 hours old (cache)" in html


def test_the_waterfall_is_to_scale_and_tells_kinds_apart(
    app: Any, store: tuple[Path, dict[str, str]]
) -> None:
    """Bars in percent of the trace's time; LLM, tool, memory and retrieval steps each have
    their kind; the framework's spans are in the same tree."""
    trace_id = next(t for t, tenant in store[1].items() if tenant == "tenant-a")
    trace = client(app).get(f"/api/traces/{trace_id}").json()
    spans = trace["spans"]
    assert (spans[0]["depth"], spans[0]["offset"]) == (0, 0)
    assert 99.99 <= max(span["offset"] + span["width"] for span in spans) <= 100.3
    for span in spans:
        assert 0 <= span["offset"] <= 100
    kinds = {span["name"]: span["kind"] for span in spans}
    assert kinds["agent.run"] == "run"
    assert kinds["invoke_agent support-agent"] == "agent"
    assert kinds["chat demo-model-small"] == "llm"
    assert kinds["execute_tool lookup_order"] == "tool"
    assert kinds["memory.read conversation-memory"] == "memory"
    assert kinds["retrieval help-center"] == "retrieval"
    assert "other" in kinds.values()
    assert not any(span["failed"] for span in spans)


def test_a_tenant_token_shows_its_own_tenant_only(app: Any, clock: FakeClock) -> None:
    """tenant-a's overview: its row, none of tenant-b's alerts, no other tenant's name."""
    viewer = scoped(app, clock, "tenant-a")
    body = viewer.get("/api/tenants").json()
    assert [row["tenant"] for row in body["tenants"]] == ["tenant-a"]
    assert body["alerts"] == []
    page = viewer.get("/").text
    assert "tenant-a" in page
    for other in ("tenant-b", "tenant-c", "&lt;script&gt;"):
        assert other not in page
    runs = viewer.get("/api/runs").json()
    assert runs["tenant"] == "tenant-a" and runs["total"] == RUNS
    assert {run["tenant_id"] for run in runs["runs"]} == {"tenant-a"}


def test_another_tenants_data_is_not_found_as_if_it_did_not_exist(
    app: Any, clock: FakeClock, store: tuple[Path, dict[str, str]]
) -> None:
    """tenant-a asking for tenant-b by page, API or trace id gets the same 404 as for a
    tenant or trace that does not exist."""
    viewer = scoped(app, clock, "tenant-a")
    b_trace = failed_runs(store[0], "tenant-b")[-1]["trace_id"]
    nobody = "0" * 32
    pairs = [
        ("/runs?tenant=tenant-b", "/runs?tenant=no-such-tenant"),
        ("/api/runs?tenant=tenant-b", "/api/runs?tenant=no-such-tenant"),
        ("/failing?tenant=tenant-b", "/failing?tenant=no-such-tenant"),
        ("/api/failing?tenant=tenant-b", "/api/failing?tenant=no-such-tenant"),
        (f"/traces/{b_trace}", f"/traces/{nobody}"),
        (f"/api/traces/{b_trace}", f"/api/traces/{nobody}"),
        (f"/api/traces/{b_trace.upper()}", "/api/traces/not-a-trace-id"),
    ]
    for theirs, missing in pairs:
        a, b = viewer.get(theirs), viewer.get(missing)
        assert (
            (a.status_code, a.content)
            == (b.status_code, b.content)
            == (404, b'{"error":"not_found"}')
        )
    assert client(app).get(f"/api/traces/{b_trace}").status_code == 200  # the admin sees it


@pytest.mark.parametrize(
    "path", ["/", "/api/tenants", "/runs?tenant=tenant-a", "/static/style.css"]
)
def test_no_token_is_401_json(app: Any, path: str) -> None:
    response = client(app, None).get(path)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def _tampered(clock: FakeClock) -> dict[str, str]:
    token = sign(SECRET, "tenant-a", expires=clock() + 3600)
    payload, signature = token.split(".")
    as_b = base64.urlsafe_b64encode(
        json.dumps({"tenant": "tenant-b", "exp": int(clock() + 3600)}).encode()
    ).rstrip(b"=")
    return {
        "signature changed": f"{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}",
        "payload changed": f"{as_b.decode()}.{signature}",
        "another secret": sign(
            b"another store's secret, not ours", "tenant-a", expires=clock() + 3600
        ),
        "no signature": payload,
        "garbage": "..",
        "admin's with a suffix": ADMIN + "x",
    }


@pytest.mark.parametrize(
    "kind",
    [
        "signature changed",
        "payload changed",
        "another secret",
        "no signature",
        "garbage",
        "admin's with a suffix",
    ],
)
def test_a_tampered_token_is_401(app: Any, clock: FakeClock, kind: str) -> None:
    response = client(app, _tampered(clock)[kind]).get("/api/runs?tenant=tenant-a")
    assert (response.status_code, response.json()["error"]) == (401, "unauthorized")


def test_an_expired_token_is_401(app: Any, clock: FakeClock) -> None:
    viewer = client(app, sign(SECRET, "tenant-a", expires=clock() + 60))
    assert viewer.get("/api/runs").status_code == 200
    clock.advance(59)
    assert viewer.get("/api/runs").status_code == 200
    clock.advance(1)
    response = viewer.get("/api/runs")
    assert (response.status_code, response.json()["detail"]) == (401, "expired token")


def test_a_token_in_the_url_is_kept_in_a_strict_cookie(app: Any, clock: FakeClock) -> None:
    """?token= once; then the HttpOnly SameSite=Strict cookie is enough."""
    browser = client(app, None)
    token = sign(SECRET, "tenant-a", expires=clock() + 3600)
    response = browser.get(f"/?token={token}")
    assert response.status_code == 200
    assert response.headers["set-cookie"] == f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
    assert browser.get("/api/runs").json()["tenant"] == "tenant-a"
    # A bad token in the URL is refused even with a good cookie.
    assert browser.get("/api/runs?token=nope").status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "token", "status"),
    [
        ("GET", "/", ADMIN, 200),
        ("GET", "/", None, 401),
        ("GET", "/traces/" + "0" * 32, ADMIN, 404),
        ("POST", "/api/runs?tenant=tenant-a", ADMIN, 405),
        ("GET", "/static/style.css", ADMIN, 200),
    ],
)
def test_every_response_has_the_security_headers(
    app: Any, method: str, path: str, token: str | None, status: int
) -> None:
    response = client(app, token).request(method, path)
    assert response.status_code == status
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "path", ["/", "/api/tenants", "/runs", "/traces/" + "0" * 32, "/static/style.css"]
)
def test_nothing_but_get(
    app: Any, store: tuple[Path, dict[str, str]], method: str, path: str
) -> None:
    """The view is read-only: any other method is 405, and the store is unchanged."""
    count = "SELECT COUNT(*) FROM spans"
    with sqlite3.connect(store[0]) as connection:
        before = connection.execute(count).fetchone()
    assert client(app).request(method, path).status_code == 405
    with sqlite3.connect(store[0]) as connection:
        assert connection.execute(count).fetchone() == before


def test_hostile_strings_are_text_in_every_page(app: Any) -> None:
    """Tenant ids, span names, attribute keys and values, event names and failure messages
    that are markup or escapes: escaped, hidden characters made visible, no raw tag, no
    javascript: link, no terminal escape in the HTML."""
    admin = client(app)
    pages = [admin.get("/").text]
    for tenant in HOSTILE_TENANTS:
        runs = admin.get("/api/runs", params={"tenant": tenant}).json()["runs"]
        assert len(runs) == 1
        pages.append(admin.get("/runs", params={"tenant": tenant}).text)
        pages.append(admin.get(f"/traces/{runs[0]['trace_id']}").text)
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page
        assert 'href="javascript:' not in page and "href='javascript:" not in page
        assert not any(char in page for char in ("\x1b", "\x07", "\x9b", "\u202e"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in pages[0]
    trace = pages[-1]
    assert "step &lt;script&gt;alert(1)&lt;/script&gt;" in trace
    assert "\\x1b]52;c;ZWNobyBvd25lZA==\\x07" in trace
    assert "bidi user\\u202eexe.txt" in trace
    assert "stale &#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in trace
    assert f"<dd>{JS_URL}</dd>" in trace  # text, never an href


def test_the_json_keeps_hostile_strings_whole(app: Any) -> None:
    """The API returns the data as stored, as JSON (nosniff): nothing to execute."""
    admin = client(app)
    (run,) = admin.get("/api/runs", params={"tenant": SCRIPT}).json()["runs"]
    response = admin.get(f"/api/traces/{run['trace_id']}")
    assert response.headers["content-type"] == "application/json"
    (step,) = [s for s in response.json()["spans"] if s["name"] == f"step {SCRIPT}"]
    assert step["attributes"][IMG] == f"clip {CLIPBOARD} bidi {BIDI}"


def test_runs_filters_and_pages(app: Any, store: tuple[Path, dict[str, str]]) -> None:
    admin = client(app)

    def runs(**params: Any) -> dict[str, Any]:
        response = admin.get("/api/runs", params={"tenant": "tenant-b", **params})
        assert response.status_code == 200, response.text
        return dict(response.json())

    failed = {run["trace_id"] for run in failed_runs(store[0], "tenant-b")}
    assert {run["trace_id"] for run in runs(failed=1)["runs"]} == failed
    assert runs()["total"] == RUNS
    assert runs(route="/chat")["total"] == RUNS and runs(route="/other")["total"] == 0
    assert runs(agent="support-agent")["total"] == RUNS and runs(agent="x")["total"] == 0
    assert runs()["agents"] == ["support-agent"] and runs()["routes"] == ["/chat"]
    assert runs(slow_ms=10**9)["total"] == 0 and runs(min_cost=1000)["total"] == 0
    assert runs(since="1s")["total"] < RUNS
    pages = [runs(per_page=10, page=page) for page in (1, 2, 3)]
    assert [(p["page"], p["pages"], len(p["runs"])) for p in pages] == [
        (1, 3, 10),
        (2, 3, 10),
        (3, 3, 5),
    ]
    seen = [run["trace_id"] for page in pages for run in page["runs"]]
    assert len(set(seen)) == RUNS
    starts = [run["start_ns"] for page in pages for run in page["runs"]]
    assert starts == sorted(starts, reverse=True)  # newest first
    html = admin.get("/runs", params={"tenant": "tenant-b", "per_page": 10, "page": 2}).text
    assert 'rel="next" href="/runs?tenant=tenant-b&amp;per_page=10&amp;page=3"' in html


@pytest.mark.parametrize("query", ["since=yesterday", "slow_ms=fast", "min_cost=-1", "page=inf"])
def test_a_malformed_parameter_is_400(app: Any, query: str) -> None:
    response = client(app).get(f"/api/runs?tenant=tenant-b&{query}")
    assert (response.status_code, response.json()["error"]) == (400, "bad_request")


def test_the_token_command_signs_with_the_stores_secret(
    store: tuple[Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A secret made beside the store, 0600; the URL's token shows tenant-a to a view over
    that store; TENANT_TRACE_UI_SECRET replaces the file."""
    monkeypatch.delenv(SECRET_ENV, raising=False)
    db = tmp_path / "copy.sqlite3"
    with sqlite3.connect(store[0]) as source, sqlite3.connect(db) as target:
        source.backup(target)
    assert (
        cli(
            [
                "token",
                "--tenant",
                "tenant-a",
                "--ttl",
                "10m",
                "--port",
                "9999",
                "--db",
                str(db),
                "--json",
            ]
        )
        == 0
    )
    made = json.loads(capsys.readouterr().out)
    assert made["url"] == f"http://127.0.0.1:9999/?token={made['token']}"
    secret_file = db.with_name(db.name + ".ui-secret")
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    clock = FakeClock(made["expires"] - 1)
    view = create_app(db, verifier=Verifier("x" * 32, load_secret(db), clock), clock=clock)
    assert client(view, made["token"]).get("/api/runs").json()["tenant"] == "tenant-a"
    monkeypatch.setenv(SECRET_ENV, "s" * 32)
    view = create_app(db, verifier=Verifier("x" * 32, load_secret(db), clock), clock=clock)
    assert (
        client(view, sign(b"s" * 32, "tenant-a", expires=clock() + 5)).get("/").status_code == 200
    )
    assert client(view, made["token"]).get("/").status_code == 401


def test_a_secret_others_can_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    db = tmp_path / "traces.sqlite3"
    load_secret(db)
    os.chmod(db.with_name(db.name + ".ui-secret"), 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_secret(db)
    monkeypatch.setenv(SECRET_ENV, "short")
    with pytest.raises(ConfigurationError, match="at least 16"):
        load_secret(db)


def test_token_refuses_an_invalid_tenant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["token", "--tenant", "bad\x1bid", "--db", str(tmp_path / "t.sqlite3")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tenant-trace: invalid --tenant") and "\x1b" not in err


@pytest.mark.parametrize("since_ns", [0, None])
def test_the_sums_in_sql_are_summarize_of_the_runs(
    store: tuple[Path, dict[str, str]], since_ns: int | None
) -> None:
    """`SpanStore.tenants` (summed in SQL) gives what `summarize` gives over `runs`, for the
    whole store and for a window that holds only some runs."""
    spans = SpanStore(store[0])
    try:
        every = spans.runs(since_ns=0)
        since = every[len(every) // 2]["start_ns"] if since_ns is None else since_ns
        runs = spans.runs(since_ns=since)
        expected = [
            summarize(tenant, [r for r in runs if r["tenant_id"] == tenant])
            for tenant in sorted({str(r["tenant_id"]) for r in runs})
        ]
        assert spans.tenants(since_ns=since) == expected
        assert spans.tenants(since_ns=since, tenant="tenant-b") == [
            row for row in expected if row["tenant"] == "tenant-b"
        ]
        assert spans.tokens(TENANTS, since_ns=since, until_ns=2**62) == {
            row["tenant"]: row["tokens"] for row in expected if row["tenant"] in TENANTS
        }
    finally:
        spans.close()


def test_serve_without_a_store_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["serve", "--db", str(tmp_path / "none.sqlite3")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tenant-trace: no trace store at ") and err.count("\n") == 1
