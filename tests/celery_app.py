"""The Celery app of the tests: tasks that report the context they run in.

Workers run it through `tests.servers.worker`. ``TENANT_TRACE_TEST_BROKER`` is the Redis URL
(broker and result backend); ``TENANT_TRACE_TEST_PROBEFILE``, when set, receives one JSON line
just before tenant-trace's handlers see each task and one just after, with what the worker
thread's context holds then; ``TENANT_TRACE_TEST_INSTRUMENT_THREADS=0`` runs
``init(instrument_threads=False)``, so the threads pool reuses each thread's own context;
``TENANT_TRACE_TEST_LOGFILE``, when set, receives the JSON log lines of ``tests.log``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

from celery import Celery, signals
from opentelemetry import context as otel_context
from opentelemetry import trace

import tenant_trace
from tenant_trace.propagate.celery import instrument_celery
from tenant_trace.server.lifecycle import current_request

tenant_trace.init(
    service_name="test-celery",
    instrument_threads=os.environ.get("TENANT_TRACE_TEST_INSTRUMENT_THREADS", "1") != "0",
)

if os.environ.get("TENANT_TRACE_TEST_LOGFILE"):
    # Line-buffered appends: the lines of several worker processes never interleave.
    tenant_trace.configure_logging(
        stream=open(os.environ["TENANT_TRACE_TEST_LOGFILE"], "a", buffering=1),  # noqa: SIM115
        logger=logging.getLogger("tests.tasks"),
    )
task_log = logging.getLogger("tests.tasks")

BROKER = os.environ.get("TENANT_TRACE_TEST_BROKER", "redis://127.0.0.1:6379/0")
app = Celery("tests.celery_app", broker=BROKER, backend=BROKER)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    result_expires=300,
)


def observed(label: str | None = None) -> dict[str, Any]:
    """What the calling code sees of the context."""
    span = trace.get_current_span().get_span_context()
    return {
        "label": label,
        "tenant": tenant_trace.get_current_tenant(),
        "source": tenant_trace.get_tenant_source(),
        "trace_id": format(span.trace_id, "032x") if span.is_valid else None,
        "span_id": format(span.span_id, "016x") if span.is_valid else None,
        "request": current_request() is not None,
        "pid": os.getpid(),
        "thread": threading.get_ident(),
    }


def _probe(when: str, task_id: str) -> None:
    path = os.environ.get("TENANT_TRACE_TEST_PROBEFILE")
    if path:
        line = json.dumps({"when": when, "task_id": task_id, **observed()}) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


@signals.task_prerun.connect(weak=False)  # connected first: runs before tenant-trace's
def _before(task_id: str, **_: Any) -> None:
    _probe("before", task_id)


instrument_celery(app)


@signals.task_postrun.connect(weak=False)  # connected last: runs after tenant-trace's reset
def _after(task_id: str, **_: Any) -> None:
    _probe("after", task_id)


@app.task(name="tests.whoami")
def whoami(label: str) -> dict[str, Any]:
    """Reports the task's context, inside a span of its own."""
    with tenant_trace.tool_call(f"unit {label}"):
        return observed(label)


@app.task(name="tests.fail")
def fail(label: str) -> None:
    with tenant_trace.tool_call(f"unit {label}"):
        raise ValueError("the task failed")


@app.task(name="tests.sloppy")
def sloppy(label: str) -> dict[str, Any]:
    """Sets a tenant and a current span and never resets them: the reset after the task
    must still leave the worker thread clean."""
    result = observed(label)
    tenant_trace.set_tenant("left-behind")
    span = trace.get_tracer("tests").start_span(f"unit {label}")
    otel_context.attach(trace.set_span_in_context(span))
    span.end()
    return result


@app.task(name="tests.spawn")
def spawn(label: str) -> str:
    """Publishes a child task from inside a task: it inherits the tenant and the trace."""
    return str(whoami.delay(f"{label}-child").id)


@app.task(name="tests.log")
def log(label: str) -> dict[str, Any]:
    """Writes one JSON log line and reports the span it ran under."""
    task_log.warning("task %s ran", label, extra={"label": label})
    return observed(label)
