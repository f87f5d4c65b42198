"""Time to the first byte of each page of the web view (``tenant-trace serve``) over a big
store: 100,000 runs from 1,000 tenants, over the last 24 hours, each run a request root with
an LLM call and a tool call (300,000 spans), written with the store's own writer.

The view runs as ``tenant-trace serve`` does (uvicorn, on a free loopback port, in a thread);
each page is asked `ROUNDS` times by one client and the time from sending the request to the
first byte of the body is kept: the first (a cold page cache of the file) and the median.

    python -m benchmarks.ui_ttfb [RUNS [TENANTS]]

Prints a table and writes benchmarks/results/ui_ttfb.json.
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tenant_trace.export.store import SQLiteSpanExporter
from tenant_trace.local.web.access import Verifier, sign
from tenant_trace.local.web.app import create_app

RUNS = 100_000
TENANTS = 1_000
ROUNDS = 7
BATCH = 3_000
ADMIN = "benchmark-admin-token"
SECRET = b"benchmark secret, not for real use"
RESULTS = Path(__file__).resolve().parent / "results" / "ui_ttfb.json"


def fill(db: Path, runs: int, tenants: int, now_ns: int) -> dict[str, str]:
    """Write the store; returns a tenant with failed runs and one of its failed traces."""
    store = SQLiteSpanExporter(db, max_bytes=1 << 40)
    captured = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(captured))
    tracer = provider.get_tracer("benchmark")
    rng = random.Random(18)
    day = 24 * 3600 * 10**9
    failed: dict[str, str] = {}
    for i in range(runs):
        tenant = f"tenant-{i % tenants}"
        start = now_ns - rng.randrange(day)
        fails = rng.random() < 0.05
        root = tracer.start_span("agent.run", start_time=start)
        root.set_attributes(
            {
                "tenant.id": tenant,
                "http.route": "/chat",
                "tenant_trace.usage.input_tokens": 500,
                "tenant_trace.usage.output_tokens": 50,
                "tenant_trace.run.tool_calls": 1,
                "tenant_trace.run.tool_errors": int(fails),
                "tenant_trace.usage.cost_usd": 0.0001,
            }
        )
        with trace.use_span(root, end_on_exit=False):
            llm = tracer.start_span("chat demo-model", start_time=start + 1_000_000)
            llm.set_attributes({"tenant.id": tenant, "gen_ai.operation.name": "chat"})
            llm.end(end_time=start + 9_000_000)
            tool = tracer.start_span("execute_tool lookup", start_time=start + 9_500_000)
            tool.set_attributes({"tenant.id": tenant, "gen_ai.operation.name": "execute_tool"})
            if fails:
                tool.set_status(Status(StatusCode.ERROR, "stale data"))
                root.set_status(Status(StatusCode.ERROR, "StaleData"))
                failed[tenant] = format(root.get_span_context().trace_id, "032x")
            tool.end(end_time=start + 12_000_000)
        root.end(end_time=start + 13_000_000)
        if len(captured.get_finished_spans()) >= BATCH:
            store.export(captured.get_finished_spans())
            captured.clear()
    store.export(captured.get_finished_spans())
    store.shutdown()
    tenant = "tenant-0" if "tenant-0" in failed else next(iter(failed))
    return {"tenant": tenant, "trace": failed[tenant]}


def first_byte(client: httpx.Client, url: str) -> float:
    """Milliseconds from sending a GET to the first byte of its body."""
    started = time.perf_counter()
    with client.stream("GET", url) as response:
        assert response.status_code in (200, 303), (url, response.status_code)
        next(response.iter_raw(), b"")
        return (time.perf_counter() - started) * 1000


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    tenants = int(sys.argv[2]) if len(sys.argv) > 2 else TENANTS
    now_ns = time.time_ns()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "traces.sqlite3"
        began = time.perf_counter()
        ids = fill(db, runs, tenants, now_ns)
        written = time.perf_counter() - began
        app = create_app(db, verifier=Verifier(ADMIN, SECRET, time.time))
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        tenant = ids["tenant"]
        tenant_token = sign(SECRET, tenant, expires=time.time() + 3600)
        pages = {
            "overview (1h)": ("/", ADMIN),
            "overview (24h)": ("/?since=24h", ADMIN),
            "overview, one tenant's token": ("/?since=24h", tenant_token),
            "runs of one tenant (24h)": (f"/runs?tenant={tenant}", ADMIN),
            "failed runs of one tenant": (f"/runs?tenant={tenant}&failed=1", ADMIN),
            "trace waterfall": (f"/traces/{ids['trace']}", ADMIN),
            "alert -> latest failing trace": (f"/failing?tenant={tenant}", ADMIN),
            "API: overview (24h)": ("/api/tenants?since=24h", ADMIN),
            "API: trace": (f"/api/traces/{ids['trace']}", ADMIN),
        }
        results: dict[str, Any] = {}
        try:
            for name, (path, token) in pages.items():
                with httpx.Client(
                    base_url=f"http://127.0.0.1:{port}",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=600,
                ) as client:
                    times = [first_byte(client, path) for _ in range(ROUNDS)]
                results[name] = {
                    "path": path.split("?")[0],
                    "first_ms": round(times[0], 1),
                    "median_ms": round(statistics.median(times), 1),
                }
                print(
                    f"{name:32} first {times[0]:9.1f} ms   median {statistics.median(times):9.1f} ms"
                )
        finally:
            server.should_exit = True
            thread.join()
        size = db.stat().st_size
    report = {
        "runs": runs,
        "tenants": tenants,
        "spans": runs * 3,
        "store_bytes": size,
        "write_seconds": round(written, 1),
        "rounds": ROUNDS,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.system()}",
        "pages": results,
    }
    print(
        f"store: {runs:,} runs of {tenants:,} tenants, {size / 1e6:.0f} MB, written in {written:.0f} s"
    )
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
