"""The benchmark compares like with like: the hand-made twin of the agent request, behind the
honest floor, makes the same spans (names, kinds, attributes) and records the same metric
points (instrument type, attributes, values) as the agent API behind the middleware. A
feature that adds an attribute or a metric point to tenant-trace's side shows here, so that
`make bench` is never flattered by a twin that does less."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.servers.process import ROOT


def test_the_hand_made_agent_request_does_the_same_work_as_the_agent_api() -> None:
    # A process of its own: the agent API records on the global tracer provider.
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.agent", "twins"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    recorded = json.loads(out.strip().splitlines()[-1])
    ours, theirs = recorded["tenant-trace"], recorded["hand-made"]
    assert [name for name, _, _ in ours["spans"]] == [
        "agent.run",
        "chat gpt-4o",
        "chat gpt-4o",
        "execute_tool lookup",
        "invoke_agent support",
        "memory.read redis",
        "retrieval kb",
    ]
    assert len(ours["metric_points"]) == 6
    assert ours["spans"] == theirs["spans"]
    assert ours["metric_points"] == theirs["metric_points"]
