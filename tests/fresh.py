"""Code run in a fresh interpreter: the global tracer and meter providers can be set only
once per process, so tests of ``init()`` run it in a subprocess of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from tests.servers.process import ROOT


def run_fresh(source: str, **env: str) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """Run `source` in a new interpreter with no OTEL_* variables but those in `env` (and a
    local trace store in a temporary folder, never in the repository); return the JSON
    object it printed last, and the finished process."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment["TENANT_TRACE_DB"] = os.path.join(tempfile.mkdtemp(), "traces.sqlite3")
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", source],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result, done
