"""A real Redis and a real Celery worker for a test: started on a free port, waited for,
always stopped.

    python -m tests.servers.worker POOL   (span capture, then a worker of tests.celery_app)

Redis comes from Debian's ``redis-server`` package (``.ci/run`` installs it). Without it the
tests are skipped, except under CI (``CI=true``), where a missing Redis is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import spanfile
from tests.servers.process import PATIENCE, ROOT, free_port

BROKER_ENV = "TENANT_TRACE_TEST_BROKER"
LOG_ENV = "TENANT_TRACE_TEST_LOGFILE"
PROBE_ENV = "TENANT_TRACE_TEST_PROBEFILE"
READY_ENV = "TENANT_TRACE_TEST_READYFILE"


def require_redis() -> str:
    """The path of ``redis-server``; skip the test without it, or fail it under CI."""
    import pytest

    path = shutil.which("redis-server")
    if path is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason + "; CI must have it", pytrace=False)
        pytest.skip(reason)
    return path


@contextmanager
def redis_server(tmp_path: Path) -> Iterator[str]:
    """A private Redis on a free port of 127.0.0.1, without persistence; yields its URL."""
    executable = require_redis()
    port = free_port()
    process = subprocess.Popen(
        [
            *(executable, "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait(lambda: _pong(port), process, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process)


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class Worker:
    broker: str
    spanfile: Path
    probefile: Path
    process: subprocess.Popen[bytes]
    logfile: Path

    def spans(
        self, until: Callable[[list[dict[str, Any]]], bool], timeout: float = PATIENCE
    ) -> list[dict[str, Any]]:
        """The spans exported so far, once `until(spans)` holds (a task's span ends just
        after its result is stored, so a test may see the result first)."""
        return _poll(lambda: spanfile.read(str(self.spanfile)), until, timeout)

    def probes(
        self, until: Callable[[list[dict[str, Any]]], bool], timeout: float = PATIENCE
    ) -> list[dict[str, Any]]:
        """The probe lines so far (see tests.celery_app), once `until(probes)` holds."""
        return _poll(lambda: spanfile.read(str(self.probefile)), until, timeout)

    def logs(
        self, until: Callable[[list[dict[str, Any]]], bool], timeout: float = PATIENCE
    ) -> list[dict[str, Any]]:
        """The JSON log lines the tasks wrote (see tests.celery_app), once `until` holds."""
        return _poll(lambda: spanfile.read(str(self.logfile)), until, timeout)


@contextmanager
def celery_worker(
    pool: str, broker: str, tmp_path: Path, env: Mapping[str, str] | None = None
) -> Iterator[Worker]:
    """A worker of tests.celery_app with `pool` (``prefork`` or ``threads``), 2 at a time."""
    name = f"{pool}-{free_port()}"
    spans, probes, ready, logs = (
        tmp_path / f"{kind}-{name}" for kind in ("spans", "probes", "ready", "logs")
    )
    spans.touch()
    probes.touch()
    logs.touch()
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OTEL_TRACES_EXPORTER": "none",
        spanfile.ENV: str(spans),
        BROKER_ENV: broker,
        PROBE_ENV: str(probes),
        LOG_ENV: str(logs),
        READY_ENV: str(ready),
        **(env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.worker", pool, name],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,  # the banner; warnings and errors go to stderr
        start_new_session=True,
    )
    try:
        _wait(ready.exists, process, "celery worker")
        yield Worker(broker, spans, probes, process, logs)
    finally:
        _stop(process)


def _poll(
    read: Callable[[], list[dict[str, Any]]],
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if until(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _wait(
    ready: Callable[[], bool],
    process: subprocess.Popen[bytes],
    what: str,
    timeout: float = PATIENCE,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start in time")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """A warm shutdown of the main process, then whatever of its group is left is killed."""
    try:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=PATIENCE)
    except subprocess.TimeoutExpired:
        pass
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> None:
    pool, name = sys.argv[1:3]
    spanfile.install()
    from celery import signals

    from tests.celery_app import app

    @signals.worker_ready.connect(weak=False)
    def ready(**_: Any) -> None:
        Path(os.environ[READY_ENV]).touch()

    app.worker_main(
        [
            *("worker", "-P", pool, "-c", "2", "-n", f"{name}@%h", "--loglevel", "WARNING"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]
    )


if __name__ == "__main__":
    main()
