"""Export and purge over stores written by several processes at once: the example apps under
uvicorn and two gunicorn workers (test_cli's store), and writer processes that keep writing
while a purge runs."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.otlp import eventually
from tests.servers.process import ROOT
from tests.test_cli import TENANTS, filled, run_cli  # noqa: F401  (the module's fixture)

pytestmark = pytest.mark.real_server


def rows(db: Path, tenant: str) -> set[tuple[str, str]]:
    with sqlite3.connect(db) as connection:
        found = connection.execute(
            "SELECT trace_id, span_id FROM spans WHERE tenant_id = ?", (tenant,)
        )
        return set(found.fetchall())


def written_so_far(db: Path, tenant: str) -> set[tuple[str, str]]:
    """`rows`, or none while a writer has not yet made the file or its tables."""
    try:
        return rows(db, tenant) if db.exists() else set()
    except sqlite3.OperationalError:
        return set()


def copy(db: Path, to: Path) -> Path:
    with sqlite3.connect(db) as source, sqlite3.connect(to) as target:
        source.backup(target)
    return to


@pytest.mark.parametrize("tenant", TENANTS)
def test_export_writes_exactly_one_tenants_spans(
    filled: tuple[Path, dict[str, str]],  # noqa: F811
    tenant: str,
) -> None:
    """Both formats hold every span of the tenant in the store, of its own requests only,
    and its usage ledger rows, none of another tenant's."""
    db, sent = filled
    code, out = run_cli("export", "--tenant", tenant, "--db", str(db))
    assert code == 0
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    lines = [r for r in records if "ledger" not in r]
    assert {(s["trace_id"], s["span_id"]) for s in lines} == rows(db, tenant)
    assert {s["trace_id"] for s in lines} == {t for t, owner in sent.items() if owner == tenant}
    ledger = [r["ledger"] for r in records if "ledger" in r]
    assert ledger and {r["tenant_id"] for r in ledger} == {tenant}
    code, out = run_cli("export", "--tenant", tenant, "--format", "otlp-json", "--db", str(db))
    assert code == 0
    spans = [
        (span["traceId"], span["spanId"], {a["key"]: a["value"] for a in span["attributes"]})
        for line in out.splitlines()
        if line.startswith('{"resourceSpans"')
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]
    assert {(t, s) for t, s, _ in spans} == rows(db, tenant)
    assert {a["tenant.id"]["stringValue"] for _, _, a in spans} == {tenant}


def test_purge_erases_one_tenant_of_a_shared_store(
    filled: tuple[Path, dict[str, str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    """On a copy of the store the three servers wrote: tenant-b is counted, then erased;
    tenant-a and tenant-c keep every span; the audit says what went."""
    db = copy(filled[0], tmp_path / "copy.sqlite3")
    before = {tenant: rows(db, tenant) for tenant in TENANTS}
    code, out = run_cli("purge", "--tenant", "tenant-b", "--db", str(db), "--json")
    assert code == 0
    counts = json.loads(out)["counts"]
    assert counts["spans"] == len(before["tenant-b"])
    assert counts["ledger"] > 0  # the usage of its LLM calls, per model and hour
    assert rows(db, "tenant-b") == before["tenant-b"]
    code, out = run_cli("purge", "--tenant", "tenant-b", "--yes", "--db", str(db), "--json")
    assert code == 0
    assert json.loads(out)["total"] == sum(counts.values()) > 0
    assert rows(db, "tenant-b") == set()
    assert rows(db, "tenant-a") == before["tenant-a"]
    assert rows(db, "tenant-c") == before["tenant-c"]
    code, out = run_cli("audit", "--db", str(db), "--json")
    assert [(a["tenant_id"], a["total"]) for a in json.loads(out)] == [
        ("tenant-b", sum(counts.values()))
    ]


def test_writers_never_resurrect_what_a_purge_erased(tmp_path: Path) -> None:
    """Two processes keep writing batches of acme and globex spans, each batch in flight for
    a moment, while acme is purged: afterwards no acme span that started before the purge's
    cut-off is in the store, whichever writer and batch it came in, and no globex span is
    missing."""
    db = tmp_path / "store.sqlite3"
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.servers.writer", str(db), "100"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        assert eventually(lambda: len(written_so_far(db, "acme")) >= 100)
        code, out = run_cli("purge", "--tenant", "acme", "--yes", "--db", str(db), "--json")
        assert code == 0, out
        cutoff = json.loads(out)["before_ns"]
        written = sum(int(w.communicate(timeout=120)[0]) for w in writers)
    finally:
        for writer in writers:
            writer.kill()
    with sqlite3.connect(db) as connection:
        resurrected = connection.execute(
            "SELECT COUNT(*) FROM spans WHERE tenant_id = 'acme' AND start_ns < ?", (cutoff,)
        ).fetchone()[0]
        later = connection.execute(
            "SELECT COUNT(*) FROM spans WHERE tenant_id = 'acme' AND start_ns >= ?", (cutoff,)
        ).fetchone()[0]
    assert json.loads(out)["total"] >= 100
    assert resurrected == 0
    assert later > 0  # the writers went on after the purge
    assert len(rows(db, "globex")) == written == 1000
