"""The demo: from "tenant-b is failing" to tenant-b's failing run, with no backend at all.

    make demo        (or: python -m examples.demo)

It starts the FastAPI example agent app under uvicorn, with spans going to the embedded
local store (a SQLite file), and sends traffic from three tenants. tenant-b's
``get_account_data`` tool returns 48-hour-old cached data on a share of its runs, so its
freshness check fails. Then it prints what the ``tenant-trace`` command shows: the per-tenant
table, the alerts (tenant-b only), and one of tenant-b's failing runs as a span tree; last,
the command that opens the same store in the web view (``tenant-trace serve``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tenant_trace.local.cli import main as tenant_trace_cli
from tenant_trace.local.store import SpanStore

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / ".tenant-trace" / "demo.sqlite3"
TENANTS = ("tenant-a", "tenant-b", "tenant-c")
RUNS_PER_TENANT = 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TENANT_TRACE_DB": str(STORE),
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export every 0.2 s, so the demo need not wait
        "EXAMPLE_STALE_TENANT": "tenant-b",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("OTEL_TRACES_EXPORTER", None)
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "examples.fastapi_app:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the example app did not start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the example app did not start in 30 s")


async def send_traffic(url: str) -> dict[str, int]:
    """Each tenant asks RUNS_PER_TENANT questions, a few at a time; returns status counts."""
    counts: dict[str, int] = {}
    semaphore = asyncio.Semaphore(12)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def ask(tenant: str, i: int) -> None:
            async with semaphore:
                response = await client.post(
                    "/chat",
                    json={"message": f"Where is my order #{i}?", "delay": 0.01},
                    headers={"X-Tenant-ID": tenant},
                )
            counts[f"{tenant} {response.status_code}"] = (
                counts.get(f"{tenant} {response.status_code}", 0) + 1
            )

        await asyncio.gather(*(ask(t, i) for i in range(RUNS_PER_TENANT) for t in TENANTS))
    return counts


def heading(text: str) -> None:
    print(f"\n\033[1m$ {text}\033[0m", flush=True)


def main() -> int:
    STORE.parent.mkdir(exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{STORE}{suffix}").unlink(missing_ok=True)
    port = free_port()
    print(
        f"Starting the FastAPI example agent app on 127.0.0.1:{port} (spans -> {STORE.relative_to(ROOT)})"
    )
    server = start_server(port)
    try:
        counts = asyncio.run(send_traffic(f"http://127.0.0.1:{port}"))
        print("Sent", ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    finally:
        server.send_signal(signal.SIGINT)  # a graceful stop flushes the last spans
        server.wait(timeout=30)

    db = ["--db", str(STORE)]
    heading("tenant-trace tenants")
    tenant_trace_cli(["tenants", *db])
    heading("tenant-trace alerts")
    fired = tenant_trace_cli(["alerts", *db])
    store = SpanStore(STORE)
    failed = [run for run in store.runs(since_ns=0, tenant="tenant-b") if run["failed"]]
    store.close()
    if not failed:
        print("tenant-b had no failing run this time.")
        return 1
    heading("tenant-trace traces --tenant tenant-b --failed --limit 5")
    tenant_trace_cli(["traces", "--tenant", "tenant-b", "--failed", "--limit", "5", *db])
    heading(f"tenant-trace show {failed[-1]['trace_id']}")
    tenant_trace_cli(["show", failed[-1]["trace_id"], *db])
    print(
        "\nThe tree shows the root cause: get_account_data returned account data 48 hours old"
        " (cache), its freshness check failed, and so did the run."
    )
    serve = Path(sys.executable).with_name("tenant-trace")
    print("\nThe same store in the web view (click tenant-b's alert):")
    print(
        f"  {serve.relative_to(ROOT) if serve.is_relative_to(ROOT) else serve} serve --db {STORE.relative_to(ROOT)}"
    )
    return 0 if fired == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
