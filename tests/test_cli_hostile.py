"""The ``tenant-trace`` command over hostile data: tenant ids that are rich markup, span names,
attributes and failure messages holding terminal escape sequences, a 24 MB attribute, and
files that are not a store. Data is shown literally and exit codes stay distinct."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

import tenant_trace
from tenant_trace.export.store import SQLiteSpanExporter
from tenant_trace_fastapi import TenantTraceMiddleware
from tests.servers.process import ROOT

MARKUP_TENANTS = (
    "[/]",
    "[b]globex[/b]",
    "[link=https://evil.example/]acme[/link]",
    "[red]FIRING[/red]",
    ":smile:",
)
CLEAR_SCREEN = "\x1b[2J"
WINDOW_TITLE = "\x1b]0;owned\x07"
CLIPBOARD = "\x1b]52;c;ZWNobyBvd25lZA==\x07"
HYPERLINK = "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"
CSI_8BIT = "\x9b2J"
BIDI = "user\u202eexe.txt"
ESCAPES = (CLEAR_SCREEN, WINDOW_TITLE, CLIPBOARD, HYPERLINK, CSI_8BIT, BIDI)
HUGE = 24 * 1024 * 1024


def hostile_app(provider: TracerProvider) -> FastAPI:
    """A real app whose agent steps name, describe and fail with escape sequences."""
    app = FastAPI()
    app.add_middleware(TenantTraceMiddleware, tracer_provider=provider)
    tracer = provider.get_tracer("tests.hostile")

    @app.get("/run")
    def run(huge: bool = False) -> dict[str, Any]:
        for index, escape in enumerate(ESCAPES):
            with tracer.start_as_current_span(f"step {index} {escape}") as span:
                span.set_attribute("note", f"before {escape} after")
        if tenant_trace.get_current_tenant() == "[/]":
            raise RuntimeError("a failing run of a tenant whose id is markup")
        with tracer.start_as_current_span("tool") as span:
            span.set_status(Status(StatusCode.ERROR, f"stale data {CLIPBOARD}"))
            if huge:
                span.set_attribute("blob", "x" * HUGE)
        return {"tenant": tenant_trace.get_current_tenant()}

    return app


def cli(*args: str, color: bool = False) -> tuple[int, str, str]:
    # FORCE_COLOR makes rich write its own styles as a terminal would get them.
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    env["FORCE_COLOR" if color else "NO_COLOR"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "tenant_trace.local.cli", *args],
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store written by the app: one run per markup tenant, one run with the escapes."""
    db = tmp_path_factory.mktemp("hostile") / "traces.sqlite3"
    provider = TracerProvider()
    provider.add_span_processor(tenant_trace.TenantSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(db)))
    client = TestClient(hostile_app(provider), raise_server_exceptions=False)
    for tenant in (*MARKUP_TENANTS, "escapes"):
        response = client.get("/run", headers={"X-Tenant-ID": tenant})
        assert (
            response.status_code == 500
            if tenant == "[/]"
            else response.json() == {"tenant": tenant}
        )
    for _ in range(25):  # enough failed runs for its failure-rate alert to fire
        assert client.get("/run", headers={"X-Tenant-ID": "[/]"}).status_code == 500
    provider.shutdown()
    return db


def assert_no_escapes(text: str) -> None:
    """None of the stored sequences reaches the terminal raw."""
    for escape in ESCAPES:
        assert escape not in text
    assert "\x1b]" not in text  # no OSC at all: title, clipboard, hyperlink
    assert "\x9b" not in text


@pytest.mark.parametrize("color", [False, True], ids=["piped", "terminal-colours"])
def test_markup_tenant_ids_are_shown_literally(store: Path, color: bool) -> None:
    """`[/]` no longer crashes the table, and no tenant id turns into style or a link."""
    code, out, err = cli("tenants", "--since", "1d", "--db", str(store), color=color)
    assert code == 0, err
    for tenant in MARKUP_TENANTS:
        assert tenant in out
    assert_no_escapes(out)


def test_an_alert_for_a_markup_tenant_prints(store: Path) -> None:
    """The `[/]` tenant's failure-rate alert fires: exit 1 with the alert printed, not the
    exit 1 of a crash (which hid every real alert)."""
    code, out, err = cli("alerts", "--db", str(store))
    assert (code, err) == (1, "")
    assert "FIRING TenantRunFailureRateHigh  tenant=[/]" in out


@pytest.mark.parametrize("color", [False, True], ids=["piped", "terminal-colours"])
def test_show_makes_escape_sequences_visible(store: Path, color: bool) -> None:
    """Span names, attributes and the failure message keep their text, escapes visible."""
    (run,) = json.loads(
        cli("traces", "--tenant", "escapes", "--since", "1d", "--db", str(store), "--json")[1]
    )
    code, out, err = cli("show", run["trace_id"], "--db", str(store), color=color)
    assert code == 0, err
    assert_no_escapes(out)
    assert "\\x1b[2J" in out
    assert "\\x1b]52;c;ZWNobyBvd25lZA==\\x07" in out
    assert "\\x9b2J" in out
    assert "user\\u202eexe.txt" in out
    assert "before \\x1b]0;owned\\x07 after" in out


def test_markup_in_a_traces_title_is_literal(store: Path) -> None:
    code, out, err = cli(
        "traces", "--tenant", "[red]FIRING[/red]", "--since", "1d", "--db", str(store)
    )
    assert code == 0, err
    assert "[red]FIRING[/red]" in out


def test_a_huge_attribute_is_cut_in_views_and_whole_in_json(tmp_path: Path) -> None:
    """A 24 MB attribute: `show` prints a cut value with its size, `--json` the whole."""
    db = tmp_path / "huge.sqlite3"
    provider = TracerProvider()
    provider.add_span_processor(tenant_trace.TenantSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(db)))
    TestClient(hostile_app(provider)).get("/run?huge=true", headers={"X-Tenant-ID": "big"})
    provider.shutdown()
    (run,) = json.loads(
        cli("traces", "--tenant", "big", "--since", "1d", "--db", str(db), "--json")[1]
    )
    code, out, err = cli("show", run["trace_id"], "--db", str(db))
    assert code == 0, err
    assert len(out) < 100_000
    assert f"(+{HUGE - 300:,} characters)" in out
    code, out, err = cli("show", run["trace_id"], "--db", str(db), "--json")
    assert code == 0, err
    (tool,) = [s for s in json.loads(out) if s["name"] == "tool"]
    assert len(tool["attributes"]["blob"]) == HUGE


@pytest.mark.parametrize("kind", ["not-a-database", "directory", "truncated", "path-with-?#"])
def test_a_file_that_is_no_store_is_a_one_line_error(
    tmp_path: Path, store: Path, kind: str
) -> None:
    """Exit 2 and one line on stderr that names the file; never a traceback."""
    if kind == "not-a-database":
        db = tmp_path / "notes.txt"
        db.write_text("hello, not sqlite\n" * 100)
    elif kind == "directory":
        db = tmp_path / "a-dir"
        db.mkdir()
    elif kind == "truncated":
        db = tmp_path / "cut.sqlite3"
        db.write_bytes(store.read_bytes()[: 4096 + 100])
    else:
        db = tmp_path / "odd?name#1.sqlite3"
        db.write_bytes(store.read_bytes())
        wal = store.with_name(store.name + "-wal")
        if wal.exists():  # pragma: no cover - the store was shut down, so checkpointed
            db.with_name(db.name + "-wal").write_bytes(wal.read_bytes())
    for command in ("tenants", "alerts"):
        code, out, err = cli(command, "--db", str(db))
        if kind == "path-with-?#":  # a store after all, read as itself despite its name
            assert code == (1 if command == "alerts" else 0), err
            assert "[/]" in out
            continue
        assert code == 2, (out, err)
        assert err.count("\n") == 1 and err.startswith("tenant-trace: "), err
        assert "Traceback" not in err
        assert str(db) in err


def test_the_store_is_read_only_to_the_command(store: Path) -> None:
    """The views never write: the file's rows stay the same."""
    before = sqlite3.connect(store).execute("SELECT COUNT(*) FROM spans").fetchone()[0]
    cli("tenants", "--db", str(store))
    after = sqlite3.connect(store).execute("SELECT COUNT(*) FROM spans").fetchone()[0]
    assert before == after > 0
