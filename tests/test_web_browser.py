"""The web view in a real browser: Debian's chromium driven by Playwright, against
``tenant-trace serve`` running under uvicorn on a free loopback port, over a store written by
the FastAPI example app (tenant-a, tenant-b, tenant-c) and the hostile app of
test_web_view. It also writes the README's screenshot, docs/waterfall.png."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.process import PATIENCE, ROOT, _wait_for, free_port
from tests.test_cli import TENANTS
from tests.test_web_view import HOSTILE_TENANTS, SCRIPT, failed_runs, fill

pytestmark = [
    pytest.mark.real_server,
    pytest.mark.skipif(
        shutil.which("chromium") is None,
        reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)",
    ),
]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = ROOT / "docs" / "waterfall.png"
ERROR_RED = "rgb(209, 36, 47)"  # --error in style.css


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tenant_trace.local.cli", *args]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, int]]:
    """The store, the admin URL that ``serve`` printed, and its port."""
    tmp = tmp_path_factory.mktemp("browser")
    db = tmp / "traces.sqlite3"
    fill(db, tmp)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "TENANT_TRACE_UI_SECRET"}
    server = subprocess.Popen(
        cli("serve", "--db", str(db), "--port", str(port)),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        url = line.split(": ", 1)[1].strip()
        assert url.startswith(f"http://127.0.0.1:{port}/?token="), line
        _wait_for(port, server)  # type: ignore[arg-type]
        yield db, url, port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=PATIENCE)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; any dialog (an alert() that ran) fails
    the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 760})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()
    assert dialogs == [], "a script of the data ran"


def test_the_overview_lists_the_tenants(served: tuple[Path, str, int], page: Any) -> None:
    page.goto(served[1])
    names = page.locator("tr.tenant-row td.name").all_inner_texts()
    assert set(TENANTS) <= set(names)
    assert "tenant-b" in page.locator(".alerts").inner_text()


def test_the_alert_leads_to_the_failed_step_in_red(
    served: tuple[Path, str, int], page: Any
) -> None:
    """One click from tenant-b's failure-rate alert to its latest failing trace, whose
    get_account_data step is red with its message; the screenshot for the README."""
    db, url, port = served
    page.goto(url)
    alert = page.locator(".alert-link", has_text="TenantRunFailureRateHigh").filter(
        has_text="tenant-b"
    )
    alert.click()
    latest = failed_runs(db, "tenant-b")[-1]["trace_id"]
    page.wait_for_url(f"http://127.0.0.1:{port}/traces/{latest}")
    row = page.locator("tr.span", has_text="execute_tool get_account_data")
    assert row.get_attribute("class") == "span kind-tool error"
    assert row.locator("rect").evaluate("r => getComputedStyle(r).fill") == ERROR_RED
    assert row.locator("td.name a").evaluate("a => getComputedStyle(a).color") == ERROR_RED
    assert "account data is 48 hours old (cache)" in row.inner_text()
    ok = page.locator("tr.span", has_text="execute_tool lookup_order")
    assert ok.locator("rect").evaluate("r => getComputedStyle(r).fill") != ERROR_RED
    # The side panel opens on the failed step, and on any span clicked.
    assert "account.data_age_seconds" in page.locator(".panel:visible").inner_text()
    page.locator("tr.span", has_text="retrieval help-center").locator("a").click()
    assert "gen_ai.data_source.id" in page.locator(".panel:visible").inner_text()
    page.goto(f"http://127.0.0.1:{port}/traces/{latest}")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000


def test_a_tenant_a_url_shows_nothing_of_tenant_b(served: tuple[Path, str, int], page: Any) -> None:
    db, _, port = served
    done = subprocess.run(
        cli("token", "--tenant", "tenant-a", "--port", str(port), "--db", str(db)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=True,
    )
    page.goto(done.stdout.strip())
    text = page.locator("body").inner_text()
    assert "tenant-a" in text and "tenant-b" not in text and "Firing" not in text
    page.locator("a", has_text="tenant-a").click()
    assert "tenant-b" not in page.locator("body").inner_text()
    b_trace = failed_runs(db, "tenant-b")[-1]["trace_id"]
    base = f"http://127.0.0.1:{port}"
    for path in (f"/traces/{b_trace}", "/runs?tenant=tenant-b", "/failing?tenant=tenant-b"):
        assert page.goto(base + path).status == 404
        assert "tenant-b" not in page.content()
    for path in (
        f"/api/traces/{b_trace}",
        "/api/runs?tenant=tenant-b",
        "/api/failing?tenant=tenant-b",
    ):
        response = page.request.get(base + path)  # the page's cookie: tenant-a's token
        assert (response.status, response.json()) == (404, {"error": "not_found"})
    assert page.request.get(base + "/api/runs").json()["tenant"] == "tenant-a"


def test_hostile_strings_render_as_text(served: tuple[Path, str, int], page: Any) -> None:
    """Markup in tenant ids, span names and messages is shown as typed; no element, script
    or javascript: link comes of it, and no dialog opens."""
    page.goto(served[1])
    for tenant in HOSTILE_TENANTS:
        assert page.locator("tr.tenant-row td.name", has_text=tenant).count() == 1
    page.locator("tr.tenant-row td.name a", has_text=SCRIPT).click()
    page.locator("a.trace-link").first.click()
    assert page.locator("tr.span", has_text=f"step {SCRIPT}").count() == 1
    assert page.evaluate("document.scripts.length") == 0
    assert page.locator("img").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.locator("dd", has_text="javascript:alert(1)").count() == 1
