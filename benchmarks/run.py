"""One command for every measurement, in one run (ratios count; these machines are noisy):

    python -m benchmarks.run            (or: make bench)

1. In-process cost per request, ASGI (Starlette) and WSGI (Flask): bare app, peers
   (asgi-correlation-id, OpenTelemetry's ASGI/WSGI instrumentation), the floor (a contextvar
   and one SDK span), tenant-trace with tracing off, full, and with JWTs.
2. Real servers driven by wrk on loopback: uvicorn and gunicorn, bare against tenant-trace
   (tracing on, spans to the local store): requests per second, p99 latency, peak RSS.
3. Memory: RSS growth over 200,000 requests from 10,000 tenants.

Prints tables and writes benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FLOOR = "floor (contextvar + 1 span)"
FLOOR_SIX = "floor + the same 6 span attributes"
TARGETS = (
    "full overhead <= 1.3x the floor's and <= 0.25x OpenTelemetry's own; context-only <= "
    "asgi-correlation-id's; repeated JWT <= 1.2x header; real-server throughput >= 0.85x bare; "
    "RSS growth < 10 MB over 200,000 requests from 10,000 tenants"
)


def in_process(n: int, rounds: int) -> dict[str, Any]:
    from benchmarks.inprocess import measure

    result: dict[str, Any] = {}
    for kind in ("asgi", "wsgi"):
        us = measure(kind, n=n, rounds=rounds)
        bare = us["bare"]
        overhead = {name: value - bare for name, value in us.items()}
        peers = {
            p: overhead[p]
            for p in ("asgi-correlation-id", "opentelemetry-asgi", "opentelemetry-wsgi", FLOOR)
            if p in overhead
        }
        result[kind] = {
            "us_per_request": us,
            "overhead_us": overhead,
            "ratio_to_bare": {name: value / bare for name, value in us.items()},
            "overhead_ratio_to": {
                peer: {
                    name: value / peer_value
                    for name, value in overhead.items()
                    if name.startswith("tenant-trace")
                }
                for peer, peer_value in peers.items()
                if peer_value > 0
            },
        }
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def _rss_peak_kb(pid: int) -> int:
    """Peak RSS of a process and its children (gunicorn's workers), in kB."""
    total = 0
    pids = [pid]
    with contextlib.suppress(FileNotFoundError):
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        pids += [int(p) for p in children.stdout.split()]
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        total += int(match[1]) if match else 0
    return total


_WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/chat", {["X-Tenant-ID"] = "tenant-" .. (counter % 100)})
end
"""


def _wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    factor = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99[2]] if p99 else 0.0  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p99_ms": float(p99[1]) * factor if p99 else float("nan"),
        "non_2xx": int(errors[1]) if errors else 0,
    }


def real_servers(seconds: int, connections: int) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    servers = {
        "uvicorn": lambda app, port: [
            sys.executable,
            "-m",
            "uvicorn",
            f"benchmarks.{app}:asgi_app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        "gunicorn": lambda app, port: [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "gthread",
            "--threads",
            "8",
            "-w",
            "1",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            f"benchmarks.{app}:wsgi_app",
        ],
    }
    result: dict[str, Any] = {}
    store = Path(tempfile.mkdtemp()) / "bench.sqlite3"
    for server, command in servers.items():
        result[server] = {}
        for _ in range(2):  # bare, traced, bare, traced: drift hits both alike
            for app in ("bare", "traced"):
                port = _free_port()
                env = {**os.environ, "PYTHONPATH": str(ROOT), "TENANT_TRACE_DB": str(store)}
                env.pop("OTEL_TRACES_EXPORTER", None)
                process = subprocess.Popen(command(app, port), cwd=ROOT, env=env)
                try:
                    _wait(port, process)
                    _wrk(f"http://127.0.0.1:{port}/chat", 2, connections)  # warm-up
                    measured = _wrk(f"http://127.0.0.1:{port}/chat", seconds, connections)
                    measured["peak_rss_mb"] = _rss_peak_kb(process.pid) / 1024
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=30)
                runs = result[server].setdefault(app, [])
                runs.append(measured)
        for app in ("bare", "traced"):
            runs = result[server][app]
            result[server][app] = {
                k: max(r[k] for r in runs) if k == "rps" else min(r[k] for r in runs)
                for k in runs[0]
            }
        result[server]["throughput_ratio"] = (
            result[server]["traced"]["rps"] / result[server]["bare"]["rps"]
        )
    return result


def memory(requests: int, tenants: int) -> dict[str, Any]:
    """RSS growth of a process serving `requests` requests from `tenants` tenants in-process."""
    code = f"""
import asyncio, json, resource
from benchmarks.inprocess import provider, starlette_app
from tenant_trace.server.asgi import TenantTraceASGIMiddleware
app = TenantTraceASGIMiddleware(starlette_app(), tracer_provider=provider(tenant=True))
def rss():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])
async def send(m): pass
async def receive(): return {{"type": "http.request", "body": b""}}
async def run(start, stop):
    for i in range(start, stop):
        scope = {{"type": "http", "method": "GET", "path": "/chat", "query_string": b"",
                  "headers": [(b"x-tenant-id", f"tenant-{{i % {tenants}}}".encode())]}}
        await app(scope, receive, send)
loop = asyncio.new_event_loop()
loop.run_until_complete(run(0, {tenants}))   # every tenant seen once: caches warm
before = rss()
loop.run_until_complete(run({tenants}, {requests}))
after = rss()
print(json.dumps({{"before_mb": before / 1024, "after_mb": after / 1024, "growth_mb": (after - before) / 1024}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result.update(requests=requests, tenants=tenants)
    return result


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    parts = []
    for kind in ("asgi", "wsgi"):
        data = results["in_process"][kind]
        floor = data["overhead_us"][FLOOR]
        floor_six = data["overhead_us"][FLOOR_SIX]
        otel = data["overhead_us"].get(f"opentelemetry-{kind}")
        rows = []
        for name, us in data["us_per_request"].items():
            overhead = data["overhead_us"][name]
            rows.append(
                [
                    name,
                    f"{us:.1f}",
                    f"{overhead:+.1f}",
                    f"{data['ratio_to_bare'][name]:.2f}x",
                    f"{overhead / floor:.2f}x" if floor > 0 else "-",
                    f"{overhead / floor_six:.2f}x" if floor_six > 0 else "-",
                    f"{overhead / otel:.2f}x" if otel else "-",
                ]
            )
        parts.append(
            _table(
                f"\n{kind.upper()} in-process (median us per request)",
                [
                    "variant",
                    "us/req",
                    "overhead",
                    "vs bare",
                    "/ floor",
                    "/ floor+6 attrs",
                    f"/ otel-{kind}",
                ],
                rows,
            )
        )
    servers = results["real_servers"]
    if "skipped" not in servers:
        rows = []
        for server, data in servers.items():
            for app in ("bare", "traced"):
                d = data[app]
                rows.append(
                    [
                        server,
                        app,
                        f"{d['rps']:.0f}",
                        f"{d['p99_ms']:.2f}",
                        f"{d['peak_rss_mb']:.1f}",
                        f"{d['non_2xx']}",
                    ]
                )
            rows.append([server, "traced / bare", f"{data['throughput_ratio']:.2f}x", "", "", ""])
        parts.append(
            _table(
                "\nReal servers (wrk on loopback, 1 worker)",
                ["server", "app", "req/s", "p99 ms", "peak RSS MB", "non-2xx"],
                rows,
            )
        )
    mem = results["memory"]
    parts.append(
        f"\nMemory: RSS {mem['before_mb']:.1f} -> {mem['after_mb']:.1f} MB (+{mem['growth_mb']:.1f} MB) over {mem['requests']:,} requests from {mem['tenants']:,} tenants"
    )
    parts.append(f"\nTargets: {TARGETS}")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    args = parser.parse_args()
    n, rounds, seconds = (500, 3, 3) if args.quick else (3000, 7, 10)
    requests, tenants = (20_000, 2_000) if args.quick else (200_000, 10_000)
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "in_process": in_process(n, rounds),
        "real_servers": real_servers(seconds, 50),
        "memory": memory(requests, tenants),
    }
    text = report(results)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("quick.json" if args.quick else "latest.json")).write_text(
        json.dumps(results, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
