"""A real server process for a test: started on a free port, waited for, always stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import spanfile

ROOT = Path(__file__).resolve().parents[2]
# Seconds to wait for a server, a worker or what they write: generous, since a busy machine
# is slow, and a test that really hangs is stopped by the per-test timeout.
PATIENCE = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    spanfile: Path
    process: subprocess.Popen[bytes]

    def spans(
        self, roots: int = 0, traces: Collection[str] = (), timeout: float = PATIENCE
    ) -> list[dict[str, Any]]:
        """The spans exported so far, once at least `roots` ``agent.run`` spans are in, and
        one for each trace id in `traces`: a server ends a request's span just after the
        client has the whole response."""
        deadline = time.monotonic() + timeout
        while True:
            spans = spanfile.read(str(self.spanfile))
            done = [s["trace_id"] for s in spans if s["name"] == "agent.run"]
            if (len(done) >= roots and set(traces) <= set(done)) or time.monotonic() > deadline:
                return spans
            time.sleep(0.05)


@contextmanager
def serve(
    server: str, target: str, tmp_path: Path, env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """Run `target` (``module:app``) under `server` (``uvicorn`` or ``gunicorn``)."""
    port = free_port()
    spans = tmp_path / f"spans-{port}.jsonl"
    spans.touch()
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        spanfile.ENV: str(spans),
        "OTEL_TRACES_EXPORTER": "none",
        # The load checks follow each request by the traceparent it sent, as a trusted
        # gateway's would be continued (tests/test_propagation_servers.py runs a public edge).
        "TENANT_TRACE_TRUST_TRACEPARENT": "true",
        **(env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.run", server, target, str(port)],
        cwd=ROOT,
        env=full_env,
        start_new_session=True,
    )
    try:
        _wait_for(port, process)
        yield Server(f"http://127.0.0.1:{port}", spans, process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for(port: int, process: subprocess.Popen[bytes], timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start in time")
