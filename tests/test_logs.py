"""Structured logs: every line carries the tenant, trace, span and agent that were current
when it was written (checked against the exported spans), in FastAPI, Flask and Django
requests, threads and agent runs; JSON through python-json-logger that never raises;
structlog; the OpenTelemetry logs bridge; redaction."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import logging.handlers
import math
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
import pytest
import structlog
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from flask import Flask, Response
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace import ReadableSpan

import tenant_trace
import tests.test_django  # noqa: F401  (configures Django the way the Django tests do)
from tenant_trace import ConfigurationError, MissingDependencyError, configure_logging
from tenant_trace.config import settings
from tenant_trace.logs import (
    FIELDS,
    REDACTION_FAILED,
    OtelLogHandler,
    TenantJsonFormatter,
    TenantLogFilter,
    add_tenant_context,
    current_ids,
    structlog_processors,
)
from tenant_trace_fastapi import TenantTraceMiddleware
from tenant_trace_flask import TenantTrace
from tests.conftest import Spans

tracer = trace.get_tracer("tests.logs")
log = logging.getLogger("tests.logs")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
OPTIONS: dict[str, Any] = {"header": "X-Tenant-ID", "required": False, "exclude_paths": ["/health"]}


def strict(line: str) -> dict[str, Any]:
    """One JSON line, refusing NaN and Infinity (not JSON, though Python accepts them)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    data = json.loads(line, parse_constant=refuse)
    assert isinstance(data, dict)
    return data


class Lines:
    """The JSON lines written to one stream."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def all(self) -> list[dict[str, Any]]:
        return [strict(line) for line in self.stream.getvalue().splitlines()]

    def one(self, message: str) -> dict[str, Any]:
        found = [line for line in self.all() if line["message"] == message]
        assert len(found) == 1, f"expected one line {message!r}: {self.all()}"
        return found[0]


@pytest.fixture(autouse=True)
def _no_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines as logged: the default redactor init() installs is the redaction tests' concern
    (the tests below that redact set their own)."""
    monkeypatch.setattr(settings, "redact", None)


@pytest.fixture
def lines() -> Iterator[Lines]:
    """JSON lines of the ``tests.logs`` logger, set up by configure_logging."""
    stream = io.StringIO()
    handlers = configure_logging(logging.DEBUG, stream=stream, logger=log)
    log.propagate = False
    yield Lines(stream)
    for handler in handlers:
        log.removeHandler(handler)
    log.propagate = True
    log.setLevel(logging.NOTSET)


@contextmanager
def isolated() -> Iterator[tuple[logging.Logger, Lines]]:
    """JSON lines of a logger that pytest's log capture does not see: made non-propagating
    here, in the test's body, after pytest attached its handlers (which fail a test on any
    record they cannot format, as logging's default handler would report it on stderr)."""
    stream = io.StringIO()
    alone = logging.getLogger("tests.logs.isolated")
    handlers = configure_logging(logging.DEBUG, stream=stream, logger=alone)
    alone.propagate = False
    try:
        yield alone, Lines(stream)
    finally:
        for handler in handlers:
            alone.removeHandler(handler)
        alone.propagate = True


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, given back with the handlers and level it had."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def ids(span: ReadableSpan) -> tuple[str, str]:
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


def correlation(line: dict[str, Any]) -> tuple[str | None, str | None]:
    return line["trace_id"], line["span_id"]


NULL_IDS = dict.fromkeys(FIELDS)


# --- the filter and the line's shape ------------------------------------------------------


def test_lines_outside_any_request_have_null_ids(lines: Lines) -> None:
    """No tenant, no span, no agent: every correlation field is present and null."""
    log.info("idle")
    line = lines.one("idle")
    assert {k: line[k] for k in FIELDS} == NULL_IDS
    assert current_ids() == tuple(NULL_IDS.values())


def test_shape_of_the_brief(lines: Lines, spans: Spans) -> None:
    """timestamp (UTC, ms, Z), level, message, the ids, logger, then extras, in that order."""
    before = time.time()
    with (
        tenant_trace.tenant_context("tenant-abc-123"),
        tenant_trace.start_trace(agent_name="workflow-agent-v2"),
    ):
        log.warning(
            "LLM context window approaching limit",
            extra={"tokens_used": 7840, "tokens_limit": 8192},
        )
    after = time.time()
    line = lines.one("LLM context window approaching limit")
    run = spans.one("invoke_agent workflow-agent-v2")
    assert list(line) == [
        "timestamp", "level", "message", *FIELDS, "logger", "tokens_used", "tokens_limit",
    ]  # fmt: skip
    assert TIMESTAMP.fullmatch(line["timestamp"])
    stamped = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()
    assert before - 0.002 <= stamped <= after  # in UTC, not local time (ms: truncated)
    assert line["level"] == "warn"
    assert line["tenant_id"] == "tenant-abc-123"
    assert line["agent_id"] == "workflow-agent-v2"
    assert correlation(line) == ids(run)
    assert re.fullmatch(r"[0-9a-f]{32}", line["trace_id"])
    assert re.fullmatch(r"[0-9a-f]{16}", line["span_id"])
    assert line["logger"] == "tests.logs"
    assert (line["tokens_used"], line["tokens_limit"]) == (7840, 8192)


@pytest.mark.parametrize(
    ("level", "name"),
    [
        (logging.DEBUG, "debug"),
        (logging.INFO, "info"),
        (logging.WARNING, "warn"),
        (logging.ERROR, "error"),
        (logging.CRITICAL, "fatal"),
        (25, "level 25"),
    ],
)
def test_level_names(lines: Lines, level: int, name: str) -> None:
    """Lower-case, as in the brief: OpenTelemetry's severity text (WARN, FATAL) lower-cased."""
    log.log(level, "leveled")
    assert lines.one("leveled")["level"] == name


def test_exception_text(lines: Lines) -> None:
    """log.exception writes the traceback in exc_info."""
    try:
        raise ValueError("the tool returned stale data")
    except ValueError:
        log.exception("tool failed")
    line = lines.one("tool failed")
    assert line["level"] == "error"
    assert "Traceback (most recent call last)" in line["exc_info"]
    assert "ValueError: the tool returned stale data" in line["exc_info"]


def test_a_callers_tenant_id_extra_cannot_spoof_the_context(lines: Lines) -> None:
    """extra={"tenant_id": ...} or a dict message naming another tenant: the context wins."""
    with tenant_trace.tenant_context("acme"):
        log.info("spoof", extra={"tenant_id": "globex", "trace_id": "0" * 32})
        log.info({"message": "dict", "tenant_id": "globex", "ticket": 7})
    assert lines.one("spoof")["tenant_id"] == "acme"
    assert lines.one("spoof")["trace_id"] is None
    assert lines.one("dict")["tenant_id"] == "acme"
    assert lines.one("dict")["ticket"] == 7


def test_the_line_names_the_span_current_when_it_was_written(lines: Lines, spans: Spans) -> None:
    """Nested spans: each line has the trace and span id of the innermost open span."""
    with tenant_trace.tenant_context("acme"):
        with tracer.start_as_current_span("outer"):
            log.info("in outer")
            with tracer.start_as_current_span("inner"):
                log.info("in inner")
            log.info("outer again")
        log.info("no span")
    outer, inner = spans.one("outer"), spans.one("inner")
    assert correlation(lines.one("in outer")) == ids(outer)
    assert correlation(lines.one("in inner")) == ids(inner)
    assert correlation(lines.one("outer again")) == ids(outer)
    assert lines.one("no span")["tenant_id"] == "acme"
    assert correlation(lines.one("no span")) == (None, None)


def test_agent_runs(lines: Lines, spans: Spans) -> None:
    """agent_id is the innermost agent run; span_id the step that was current."""
    with tenant_trace.start_trace(agent_name="support-agent", tenant="acme"):
        log.info("run")
        with tenant_trace.llm_call(model="gpt-4o", provider="openai"):
            log.info("llm")
        with tenant_trace.sub_agent("billing-agent"):
            log.info("sub")
            with tenant_trace.tool_call("get_invoice"):
                log.info("tool")
        log.info("run again")
    log.info("after")
    run = spans.one("invoke_agent support-agent")
    sub = spans.one("invoke_agent billing-agent")
    expected = {
        "run": ("support-agent", run),
        "llm": ("support-agent", spans.one("chat gpt-4o")),
        "sub": ("billing-agent", sub),
        "tool": ("billing-agent", spans.one("execute_tool get_invoice")),
        "run again": ("support-agent", run),
    }
    for message, (agent, span) in expected.items():
        line = lines.one(message)
        assert (line["agent_id"], line["tenant_id"]) == (agent, "acme"), message
        assert correlation(line) == ids(span), message
    assert {k: lines.one("after")[k] for k in FIELDS} == NULL_IDS


async def test_async_agent_run_and_tasks(lines: Lines, spans: Spans) -> None:
    """asyncio tasks started inside a run log the run's ids; concurrent runs don't mix."""

    async def agent(tenant: str) -> None:
        async with tenant_trace.start_trace(agent_name=f"agent-{tenant}", tenant=tenant):
            for i in range(3):
                await asyncio.sleep(0)
                log.info(f"{tenant} step {i}")
            await asyncio.create_task(asyncio.sleep(0))
            await asyncio.gather(
                *(asyncio.to_thread(log.info, f"{tenant} thread {i}") for i in range(2))
            )

    await asyncio.gather(*(agent(t) for t in ("acme", "globex", "initech")))
    for tenant in ("acme", "globex", "initech"):
        run = spans.one(f"invoke_agent agent-{tenant}")
        for message in [f"{tenant} step {i}" for i in range(3)] + [
            f"{tenant} thread {i}" for i in range(2)
        ]:
            line = lines.one(message)
            assert (line["tenant_id"], line["agent_id"]) == (tenant, f"agent-{tenant}")
            assert correlation(line) == ids(run)


# --- threads ------------------------------------------------------------------------------


def test_threads_with_a_copied_context_log_their_parents_ids(lines: Lines, spans: Spans) -> None:
    """A thread run in contextvars.copy_context() logs the tenant, span and agent of the code
    that started it; one run in an empty context logs none of them (whether or not
    threads are instrumented to carry the context on their own)."""
    with (
        tenant_trace.start_trace(agent_name="support-agent", tenant="acme"),
        tracer.start_as_current_span("fan-out"),
    ):
        copied = threading.Thread(target=contextvars.copy_context().run, args=(log.info, "copied"))
        empty = threading.Thread(target=contextvars.Context().run, args=(log.info, "empty"))
        for thread in (copied, empty):
            thread.start()
            thread.join()
    line = lines.one("copied")
    assert (line["tenant_id"], line["agent_id"]) == ("acme", "support-agent")
    assert correlation(line) == ids(spans.one("fan-out"))
    assert {k: lines.one("empty")[k] for k in FIELDS} == NULL_IDS


def test_many_tenants_on_a_thread_pool_never_mix(lines: Lines, spans: Spans) -> None:
    """200 jobs of 20 tenants on 8 threads, each submitted with its own copied context: every
    line has its own job's tenant and span."""

    def job(tenant: str, n: int) -> None:
        with tracer.start_as_current_span(f"job {n}"):
            for step in range(3):
                time.sleep(0.0005)
                log.info(f"job {n} step {step}", extra={"job_tenant": tenant})

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = []
        for n in range(200):
            tenant = f"tenant-{n % 20:02d}"
            with tenant_trace.tenant_context(tenant):
                futures.append(pool.submit(contextvars.copy_context().run, job, tenant, n))
        for future in futures:
            future.result()
    by_name = {span.name: span for span in spans.all()}
    written = lines.all()
    assert len(written) == 600
    for line in written:
        n = int(line["message"].split()[1])
        assert line["tenant_id"] == line["job_tenant"] == f"tenant-{n % 20:02d}"
        assert correlation(line) == ids(by_name[f"job {n}"])


def test_a_queue_handler_keeps_the_ids_of_the_thread_that_logged(spans: Spans) -> None:
    """Records formatted later on a QueueListener's thread keep the ids they were logged with."""
    records: queue.Queue[logging.LogRecord] = queue.Queue()
    stream = io.StringIO()
    output = logging.StreamHandler(stream)
    output.addFilter(TenantLogFilter())  # runs again on the listener thread: must not re-stamp
    output.setFormatter(TenantJsonFormatter())
    listener = logging.handlers.QueueListener(records, output)
    queued = logging.getLogger("tests.logs.queued")
    handler = logging.handlers.QueueHandler(records)
    handler.addFilter(TenantLogFilter())
    queued.addHandler(handler)
    queued.propagate = False
    listener.start()
    try:
        with tenant_trace.tenant_context("acme"), tracer.start_as_current_span("queued"):
            queued.warning("through a queue")
    finally:
        listener.stop()
        queued.removeHandler(handler)
        queued.propagate = True
    line = strict(stream.getvalue())
    assert line["tenant_id"] == "acme"
    assert correlation(line) == ids(spans.one("queued"))


# --- setup: root logger, idempotence, init() ----------------------------------------------


def test_configure_logging_on_the_root_logger(root_logger: logging.Logger) -> None:
    """Records of every child logger are stamped; a second call replaces, never duplicates."""
    first = io.StringIO()
    configure_logging(stream=first)
    stream = io.StringIO()
    installed = configure_logging(logging.WARNING, stream=stream)
    ours = [h for h in root_logger.handlers if h in installed]
    assert len(installed) == len(ours) == 1
    assert root_logger.level == logging.WARNING
    with tenant_trace.tenant_context("acme"):
        logging.getLogger("some.library.deep.inside").warning("from a library")
        logging.getLogger("some.library").info("below the level")
    assert first.getvalue() == ""
    written = [strict(line) for line in stream.getvalue().splitlines()]
    assert [(line["message"], line["tenant_id"]) for line in written] == [
        ("from a library", "acme")
    ]


def test_the_filter_on_the_root_logger_itself(root_logger: logging.Logger) -> None:
    """TenantLogFilter on the root logger, with a plain text handler using its fields."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(tenant_id)s %(trace_id)s %(agent_id)s %(message)s"))
    root_filter = TenantLogFilter()
    root_logger.addFilter(root_filter)
    root_logger.addHandler(handler)
    try:
        with tenant_trace.tenant_context("acme"):
            logging.warning("root line")
        logging.warning("no tenant")
    finally:
        root_logger.removeFilter(root_filter)
    assert stream.getvalue().splitlines() == [
        "acme None None root line",
        "None None None no tenant",
    ]


def test_init_json_logs(root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    """init(json_logs=True) writes JSON lines on stderr; calling it twice adds nothing."""
    before = len(root_logger.handlers)
    tenant_trace.init(json_logs=True)
    tenant_trace.init(json_logs=True)
    assert len(root_logger.handlers) == before + 1
    with tenant_trace.tenant_context("acme"):
        logging.getLogger("app").info("configured by init")
    line = strict(capsys.readouterr().err.strip().splitlines()[-1])
    assert (line["message"], line["tenant_id"], line["level"]) == (
        "configured by init",
        "acme",
        "info",
    )


# --- lines that must be written whatever they hold ----------------------------------------


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("cannot render")

    __repr__ = __str__


def cycle() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


def deep() -> list[Any]:
    nested: list[Any] = []
    for _ in range(100_000):
        nested = [nested]
    return nested


# (a call on the logger, the message the line must have, more fields it must have)
Case = tuple[Callable[[logging.Logger], None], str, dict[str, Any]]
CASES: dict[str, Case] = {
    "int message": (lambda lg: lg.info(42), "42", {}),
    "None message": (lambda lg: lg.info(None), "None", {}),
    "list message": (lambda lg: lg.info(["a", 1]), "['a', 1]", {}),
    "dict message": (lambda lg: lg.info({"event": "x", "n": 1}), "", {"event": "x", "n": 1}),
    "unprintable message": (lambda lg: lg.info(Unprintable()), "<unprintable Unprintable>", {}),
    "%d with a string": (lambda lg: lg.info("%d tokens", "x"), "%d tokens", {"log_args": "('x',)"}),
    "too few args": (lambda lg: lg.info("%s and %s", "a"), "%s and %s", {"log_args": "('a',)"}),
    "too many args": (lambda lg: lg.info("plain", "a"), "plain", {"log_args": "('a',)"}),
    "unprintable arg": (lambda lg: lg.info("%s", Unprintable()), "%s", {}),
    "object extra": (lambda lg: lg.info("obj", extra={"o": object()}), "obj", {}),
    "cyclic extra": (
        lambda lg: lg.info("cyc", extra={"c": cycle()}),
        "cyc",
        {"c": "{'self': {...}}"},
    ),
    "NaN extra": (
        lambda lg: lg.info("nan", extra={"x": math.nan, "y": 1.5}),
        "nan",
        {"x": "nan", "y": 1.5},
    ),
    "infinite extra": (lambda lg: lg.info("inf", extra={"x": -math.inf}), "inf", {"x": "-inf"}),
    "tuple-keyed extra": (
        lambda lg: lg.info("keys", extra={"k": {(1, 2): "v"}}),
        "keys",
        {"k": "{(1, 2): 'v'}"},
    ),
    "set extra": (lambda lg: lg.info("set", extra={"s": {1}}), "set", {"s": "{1}"}),
    "unprintable extra": (lambda lg: lg.info("bad", extra={"b": Unprintable()}), "bad", {}),
    "deeply nested extra": (lambda lg: lg.info("deep", extra={"d": deep()}), "deep", {}),
    "non-string extra key": (
        lambda lg: lg.info("intkey", extra={7: "seven"}),
        "intkey",
        {"7": "seven"},
    ),
    "bytes extra": (lambda lg: lg.info("bytes", extra={"b": b"\xff\x00"}), "bytes", {}),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_awkward_records_are_still_written(
    spans: Spans, capsys: pytest.CaptureFixture[str], case: Case
) -> None:
    """A non-string message, bad format arguments or fields that cannot be encoded: the line
    is written, as valid JSON with its ids, and logging reports no error."""
    call, message, fields = case
    with (
        isolated() as (alone, lines),
        tenant_trace.tenant_context("acme"),
        tracer.start_as_current_span("awkward"),
    ):
        call(alone)
    (line,) = lines.all()
    assert line["message"] == message
    assert line["tenant_id"] == "acme"
    assert correlation(line) == ids(spans.one("awkward"))
    assert {k: line[k] for k in fields} == fields
    assert capsys.readouterr().err == ""  # logging's handleError was never called


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_formatter_never_raises(case: Case) -> None:
    """The same records through the formatter alone (no handler to swallow an error)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keeper = logging.getLogger("tests.logs.keep")
    handler = Keep()
    keeper.addHandler(handler)
    keeper.setLevel(logging.DEBUG)
    keeper.propagate = False
    try:
        case[0](keeper)
    finally:
        keeper.removeHandler(handler)
        keeper.propagate = True
    assert strict(TenantJsonFormatter().format(records[0]))["message"] == case[1]


def test_a_broken_record_is_still_logged(capsys: pytest.CaptureFixture[str]) -> None:
    """A record whose fields are garbage (a creation time that is not a number, an
    unprintable message with arguments) goes through the filter and is written."""
    record = logging.makeLogRecord(
        {
            "name": "tests.logs",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": Unprintable(),
            "args": ("x",),
            "created": "garbage",
        }
    )
    assert TenantLogFilter().filter(record) is True
    with isolated() as (alone, lines):
        alone.handle(record)
    assert capsys.readouterr().err == ""
    (line,) = lines.all()
    assert line["message"] == "<unprintable Unprintable>"
    assert line["log_error"].startswith(("TypeError", "ValueError", "RuntimeError"))
    assert {k: line[k] for k in FIELDS} == NULL_IDS


# --- redaction ----------------------------------------------------------------------------


def shout(text: str) -> str:
    """A stand-in redactor whose effect is plain to see."""
    return text.replace("alice@example.com", "<EMAIL>").upper()


@pytest.fixture
def redactor(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[str], str]], None]:
    return lambda redact: monkeypatch.setattr(settings, "redact", redact)


def test_message_extras_and_exception_text_go_through_redaction(
    spans: Spans, redactor: Callable[[Callable[[str], str]], None]
) -> None:
    """settings.redact sees the message, string extras, arguments and exception text; the
    ids, level, logger and non-string fields are left alone."""
    redactor(shout)
    with (
        isolated() as (alone, lines),
        tenant_trace.start_trace(agent_name="support-agent", tenant="acme"),
    ):
        alone.info("mail from %s", "alice@example.com", extra={"to": "alice@example.com", "n": 3})
        alone.info("%d", "alice@example.com")
        try:
            raise ValueError("alice@example.com is not a customer")
        except ValueError:
            alone.exception("lookup failed")
    first, bad_args, failed = lines.all()
    assert first["message"] == "MAIL FROM <EMAIL>"
    assert (first["to"], first["n"]) == ("<EMAIL>", 3)
    assert bad_args["log_args"] == "('<EMAIL>',)"
    assert "VALUEERROR: <EMAIL> IS NOT A CUSTOMER" in failed["exc_info"]
    assert "alice" not in json.dumps(lines.all())
    run = spans.one("invoke_agent support-agent")
    assert (first["tenant_id"], first["agent_id"], first["level"], first["logger"]) == (
        "acme", "support-agent", "info", "tests.logs.isolated",
    )  # fmt: skip
    assert correlation(first) == ids(run)


def test_a_failing_redactor_masks_instead_of_leaking(
    lines: Lines, redactor: Callable[[Callable[[str], str]], None]
) -> None:
    """A redactor that raises: the line is still written, its text masked."""

    def broken(text: str) -> str:
        raise RuntimeError("redactor bug")

    redactor(broken)
    log.info("secret %s", "sk-live-123", extra={"key": "sk-live-123"})
    (line,) = lines.all()
    assert (line["message"], line["key"]) == (REDACTION_FAILED, REDACTION_FAILED)


def test_agent_id_is_kept_when_the_run_is_sampled_out(lines: Lines) -> None:
    """A run under an unsampled parent records no span, yet its lines still name the agent."""
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, use_span

    unsampled = NonRecordingSpan(
        SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(0))
    )
    with use_span(unsampled), tenant_trace.start_trace("quiet-agent", tenant="acme") as run:
        assert not run.span.is_recording()
        log.info("inside a sampled-out run")
    (line,) = lines.all()
    assert (line["agent_id"], line["tenant_id"]) == ("quiet-agent", "acme")


def test_default_redactor_masks_secret_fields_and_keeps_tracebacks_whole(lines: Lines) -> None:
    """With init()'s Redactor: a ``password`` extra is masked whole, PII in the message is
    replaced, and a long traceback is not cut at the span attribute limit."""
    from tenant_trace.redaction import SECRET, Redactor

    settings.redact = Redactor()
    try:
        raise ValueError("x" * 2000)
    except ValueError:
        log.exception("login for bob@example.com", extra={"password": "hunter2", "user": "bob"})
    (line,) = lines.all()
    assert line["password"] == SECRET
    assert line["user"] == "bob"
    assert line["message"] == "login for <EMAIL>"
    assert "x" * 2000 in line["exc_info"]


# --- structlog ----------------------------------------------------------------------------


def structlog_logger(stream: io.StringIO, processors: list[Any]) -> Any:
    return structlog.wrap_logger(structlog.PrintLogger(stream), processors=processors)


def test_structlog_writes_the_same_lines(spans: Spans) -> None:
    """structlog_processors(): the stdlib line's shape, ids checked against the spans."""
    stream = io.StringIO()
    slog = structlog_logger(stream, structlog_processors())
    with tenant_trace.start_trace(agent_name="support-agent", tenant="acme"):
        with tenant_trace.tool_call("search"):
            slog.warning("tool slow", seconds=2.5, bad=math.nan)
        try:
            raise KeyError("x")
        except KeyError:
            slog.exception("failed")
    slog.info("idle")
    tool, failed, idle = (strict(line) for line in stream.getvalue().splitlines())
    assert list(tool) == ["timestamp", "level", "message", *FIELDS, "logger", "seconds", "bad"]
    assert TIMESTAMP.fullmatch(tool["timestamp"])
    assert (tool["level"], tool["message"], tool["seconds"], tool["bad"]) == (
        "warn",
        "tool slow",
        2.5,
        "nan",
    )
    assert (tool["tenant_id"], tool["agent_id"]) == ("acme", "support-agent")
    assert correlation(tool) == ids(spans.one("execute_tool search"))
    assert correlation(failed) == ids(spans.one("invoke_agent support-agent"))
    assert "KeyError: 'x'" in failed["exc_info"]
    assert {k: idle[k] for k in FIELDS} == NULL_IDS


def test_add_tenant_context_in_your_own_chain(
    spans: Spans, redactor: Callable[[Callable[[str], str]], None]
) -> None:
    """The processor alone, in a chain ending with structlog's own JSONRenderer."""
    stream = io.StringIO()
    slog = structlog_logger(stream, [add_tenant_context, structlog.processors.JSONRenderer()])
    with tenant_trace.tenant_context("acme"), tracer.start_as_current_span("mine"):
        slog.info("hello")
    line = strict(stream.getvalue())
    assert line["tenant_id"] == "acme" and line["agent_id"] is None
    assert correlation(line) == ids(spans.one("mine"))


def test_structlog_lines_are_redacted(redactor: Callable[[Callable[[str], str]], None]) -> None:
    redactor(shout)
    stream = io.StringIO()
    with tenant_trace.tenant_context("acme"):
        structlog_logger(stream, structlog_processors()).info(
            "to alice@example.com", to="alice@example.com"
        )
    line = strict(stream.getvalue())
    assert (line["message"], line["to"], line["tenant_id"]) == ("TO <EMAIL>", "<EMAIL>", "acme")


def test_structlog_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "structlog", None)  # what an absent package looks like
    with pytest.raises(MissingDependencyError, match=r"tenant-trace\[structlog\]"):
        structlog_processors()


# --- OpenTelemetry logs -------------------------------------------------------------------


@pytest.fixture
def otel() -> Iterator[tuple[logging.Logger, InMemoryLogRecordExporter, LoggerProvider]]:
    """A logger bridged to a LoggerProvider of its own, exporting in batches to memory."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    bridged = logging.getLogger("tests.logs.otel")
    bridged.propagate = False
    installed = configure_logging(
        logging.DEBUG,
        logger=bridged,
        json=False,
        otel=True,
        exporter=exporter,
        logger_provider=provider,
    )
    yield bridged, exporter, provider
    for handler in installed:
        bridged.removeHandler(handler)
    bridged.propagate = True
    provider.shutdown()


def test_otel_bridge_exports_correlated_records(
    otel: tuple[logging.Logger, InMemoryLogRecordExporter, LoggerProvider], spans: Spans
) -> None:
    """Through BatchLogRecordProcessor: trace and span of the current span, tenant.id and
    gen_ai.agent.name as attributes, extras and the exception kept."""
    bridged, exporter, provider = otel
    with tenant_trace.start_trace(agent_name="support-agent", tenant="acme"):
        with tenant_trace.llm_call(model="gpt-4o"):
            bridged.warning("window %d%% full", 96, extra={"tokens_used": 7840, "obj": object()})
        try:
            raise TimeoutError("tool timed out")
        except TimeoutError:
            bridged.exception("tool failed")
    bridged.info("idle")
    assert provider.force_flush()
    window, failed, idle = (data.log_record for data in exporter.get_finished_logs())
    llm, run = spans.one("chat gpt-4o"), spans.one("invoke_agent support-agent")
    assert (window.trace_id, window.span_id) == (llm.context.trace_id, llm.context.span_id)
    assert (failed.trace_id, failed.span_id) == (run.context.trace_id, run.context.span_id)
    assert window.body == "window 96% full"
    assert (window.severity_text, window.severity_number.value) == ("WARN", 13)
    attributes = dict(window.attributes or {})
    assert attributes["tenant.id"] == "acme"
    assert attributes["gen_ai.agent.name"] == "support-agent"
    assert attributes["tokens_used"] == 7840
    assert attributes["obj"].startswith("<object object")
    assert not set(FIELDS) & set(attributes)  # the ids are the record's own fields here
    failed_attributes = dict(failed.attributes or {})
    assert failed_attributes["exception.type"] == "TimeoutError"
    assert "TimeoutError: tool timed out" in failed_attributes["exception.stacktrace"]
    assert (idle.trace_id, idle.span_id) == (0, 0) or not idle.trace_id
    assert "tenant.id" not in dict(idle.attributes or {})


def test_otel_bridge_is_redacted_and_idempotent(
    otel: tuple[logging.Logger, InMemoryLogRecordExporter, LoggerProvider],
    redactor: Callable[[Callable[[str], str]], None],
) -> None:
    """The same exporter configured again is not added twice; body and attributes redacted."""
    bridged, exporter, provider = otel
    configure_logging(
        logger=bridged, json=False, otel=True, exporter=exporter, logger_provider=provider
    )
    redactor(shout)
    with tenant_trace.tenant_context("acme"):
        bridged.warning("mail %s", "alice@example.com", extra={"to": "alice@example.com"})
    assert provider.force_flush()
    (data,) = exporter.get_finished_logs()
    assert data.log_record.body == "MAIL <EMAIL>"
    assert dict(data.log_record.attributes or {})["to"] == "<EMAIL>"
    assert dict(data.log_record.attributes or {})["tenant.id"] == "acme"
    assert sum(isinstance(h, OtelLogHandler) for h in bridged.handlers) == 1


def test_otel_bridge_with_json_lines_too(root_logger: logging.Logger) -> None:
    """Both handlers at once, one of each after two calls; an unknown exporter is refused
    before anything changes."""
    exporter, provider = InMemoryLogRecordExporter(), LoggerProvider()
    stream = io.StringIO()
    for _ in range(2):
        configure_logging(stream=stream, otel=True, exporter=exporter, logger_provider=provider)
    with pytest.raises(ConfigurationError, match="unknown logs exporter"):
        configure_logging(otel=True, exporter="zipkin", logger_provider=provider)
    with tenant_trace.tenant_context("acme"):
        logging.getLogger("app").warning("both")
    assert provider.force_flush()
    assert [strict(line)["tenant_id"] for line in stream.getvalue().splitlines()] == ["acme"]
    assert [d.log_record.body for d in exporter.get_finished_logs()] == ["both"]
    provider.shutdown()


# --- web frameworks -----------------------------------------------------------------------


def request_of(spans: Spans, line: dict[str, Any]) -> str:
    """Follow a line to the exported span it names: that span carries the line's tenant (or
    none), and its trace holds exactly one request root; the root's path is returned."""
    named = [span for span in spans.all() if ids(span) == correlation(line)]
    assert len(named) == 1, f"{line['message']!r} names no exported span: {line}"
    assert dict(named[0].attributes or {}).get("tenant.id") == line["tenant_id"]
    roots = [
        root
        for root in spans.named("agent.run")
        if root.context.trace_id == named[0].context.trace_id
    ]
    assert len(roots) == 1, line
    return str(dict(roots[0].attributes or {})["url.path"])


def written(lines: Lines, message: str) -> list[dict[str, Any]]:
    return [line for line in lines.all() if line["message"] == message]


def fastapi_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(TenantTraceMiddleware, **OPTIONS)

    @app.get("/async")
    async def async_view() -> dict[str, str]:
        log.info("fastapi async")
        with tracer.start_as_current_span("fastapi work"):
            log.info("fastapi work")
        return {}

    @app.get("/sync")
    def sync_view() -> dict[str, str]:
        log.info("fastapi sync")  # in Starlette's thread pool
        return {}

    @app.get("/agent")
    async def agent() -> dict[str, str]:
        async with tenant_trace.start_trace(agent_name="support-agent"):
            log.info("fastapi agent")
        return {}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> Any:
            for i in range(2):
                await asyncio.sleep(0)
                log.info(f"fastapi chunk {i}")
                yield f"{i}\n"

        return StreamingResponse(chunks())

    @app.get("/health")
    async def health() -> dict[str, str]:
        log.info("fastapi health")
        return {}

    @app.get("/interleaved/{n}")
    async def interleaved(n: int) -> dict[str, str]:
        for step in range(3):
            await asyncio.sleep(0)
            log.info(f"request {n} step {step}")
        return {}

    return app


def test_fastapi(lines: Lines, spans: Spans) -> None:
    """Async and sync views, an agent run and a streamed body, with and without a tenant;
    an excluded path is outside any request."""
    with TestClient(fastapi_app()) as client:
        for url in ("/async", "/sync", "/agent", "/stream"):
            assert client.get(url, headers={"X-Tenant-ID": "acme"}).status_code == 200
        assert client.get("/sync").status_code == 200  # no tenant
        assert client.get("/health", headers={"X-Tenant-ID": "acme"}).status_code == 200
    assert len(spans.named("agent.run")) == 5
    for message, url in [
        ("fastapi async", "/async"),
        ("fastapi work", "/async"),
        ("fastapi agent", "/agent"),
        ("fastapi chunk 0", "/stream"),
        ("fastapi chunk 1", "/stream"),
    ]:
        line = lines.one(message)
        assert line["tenant_id"] == "acme", message
        assert request_of(spans, line) == url, message
    assert correlation(lines.one("fastapi work")) == ids(spans.one("fastapi work"))
    agent = lines.one("fastapi agent")
    assert agent["agent_id"] == "support-agent"
    assert correlation(agent) == ids(spans.one("invoke_agent support-agent"))
    with_tenant, anonymous = written(lines, "fastapi sync")
    assert (with_tenant["tenant_id"], anonymous["tenant_id"]) == ("acme", None)
    assert request_of(spans, with_tenant) == request_of(spans, anonymous) == "/sync"
    assert correlation(with_tenant) != correlation(anonymous)
    health = lines.one("fastapi health")  # an excluded path: no tenant, no request root
    assert (health["tenant_id"], health["agent_id"]) == (None, None)
    traces = {format(root.context.trace_id, "032x") for root in spans.named("agent.run")}
    assert health["trace_id"] not in traces


async def test_fastapi_interleaved_requests_never_mix(lines: Lines, spans: Spans) -> None:
    """60 concurrent requests of 12 tenants in one event loop, each yielding between lines:
    every line carries its own request's tenant and trace."""
    transport = httpx.ASGITransport(app=fastapi_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        tenants = {n: f"tenant-{n % 12:02d}" for n in range(60)}
        responses = await asyncio.gather(
            *(
                client.get(f"/interleaved/{n}", headers={"X-Tenant-ID": t})
                for n, t in tenants.items()
            )
        )
    assert {r.status_code for r in responses} == {200}
    all_lines = lines.all()
    assert len(all_lines) == 180
    for line in all_lines:
        n = int(line["message"].split()[1])
        assert line["tenant_id"] == tenants[n]
        assert request_of(spans, line) == f"/interleaved/{n}"


def flask_app() -> Flask:
    app = Flask(__name__)
    TenantTrace(app, **OPTIONS)

    @app.get("/view")
    def view() -> dict[str, str]:
        log.info("flask view")
        with tenant_trace.start_trace(agent_name="support-agent"), tenant_trace.retrieval("kb"):
            log.info("flask retrieval")
        return {}

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            for i in range(2):
                log.info(f"flask chunk {i}")
                yield f"{i}\n"

        return Response(chunks())

    @app.get("/threads")
    def threads() -> dict[str, str]:
        with ThreadPoolExecutor(max_workers=2) as pool:
            pool.submit(contextvars.copy_context().run, log.info, "flask thread").result()
        return {}

    return app


def test_flask(lines: Lines, spans: Spans) -> None:
    """A view, an agent run, a thread and a streamed body, with and without a tenant."""
    client = flask_app().test_client()
    for url, headers in [
        ("/view", {"X-Tenant-ID": "acme"}),
        ("/stream", {"X-Tenant-ID": "acme"}),
        ("/threads", {"X-Tenant-ID": "acme"}),
        ("/view", {}),
    ]:
        response = client.get(url, headers=headers)
        assert response.status_code == 200
        response.get_data()
        response.close()
    assert len(spans.named("agent.run")) == 4
    for message in ("flask chunk 0", "flask chunk 1", "flask thread"):
        line = lines.one(message)
        assert line["tenant_id"] == "acme", message
        assert request_of(spans, line) == ("/threads" if "thread" in message else "/stream")
    view, anonymous = written(lines, "flask view")
    assert (view["tenant_id"], anonymous["tenant_id"]) == ("acme", None)
    assert request_of(spans, view) == request_of(spans, anonymous) == "/view"
    runs = spans.named("retrieval kb")
    for line, run in zip(written(lines, "flask retrieval"), runs, strict=True):
        assert line["agent_id"] == "support-agent"
        assert correlation(line) == ids(run)
    assert [line["tenant_id"] for line in written(lines, "flask retrieval")] == ["acme", None]


def django_view(request: HttpRequest) -> JsonResponse:
    log.info("django sync")
    with (
        tenant_trace.start_trace(agent_name="support-agent"),
        tenant_trace.memory("read", store="redis"),
    ):
        log.info("django memory")
    return JsonResponse({})


async def django_async_view(request: HttpRequest) -> JsonResponse:
    log.info("django async")
    return JsonResponse({})


def django_stream(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[bytes]:
        for i in range(2):
            log.info(f"django chunk {i}")
            yield b"chunk\n"

    return StreamingHttpResponse(chunks())


urlpatterns = [
    path("view", django_view),
    path("aview", django_async_view),
    path("stream", django_stream),
]
DJANGO = {
    "ROOT_URLCONF": __name__,
    "MIDDLEWARE": ["tenant_trace_django.middleware.TenantTraceMiddleware"],
    "TENANT_TRACE": OPTIONS,
}


def test_django_sync(lines: Lines, spans: Spans) -> None:
    """Django's Client: a view with an agent run, a streamed body, a request without tenant."""
    with override_settings(**DJANGO):
        client = Client()
        assert client.get("/view", headers={"X-Tenant-ID": "acme"}).status_code == 200
        response = client.get("/stream", headers={"X-Tenant-ID": "acme"})
        assert b"".join(response.streaming_content) == b"chunk\nchunk\n"  # type: ignore[attr-defined]
        response.close()
        assert client.get("/view").status_code == 200
    assert len(spans.named("agent.run")) == 3
    view, anonymous = written(lines, "django sync")
    assert (view["tenant_id"], anonymous["tenant_id"]) == ("acme", None)
    assert request_of(spans, view) == request_of(spans, anonymous) == "/view"
    for i in range(2):
        chunk = lines.one(f"django chunk {i}")
        assert chunk["tenant_id"] == "acme"
        assert request_of(spans, chunk) == "/stream"
    for line, memory in zip(
        written(lines, "django memory"), spans.named("memory.read redis"), strict=True
    ):
        assert line["agent_id"] == "support-agent"
        assert correlation(line) == ids(memory)


def test_django_async(lines: Lines, spans: Spans) -> None:
    """Django's AsyncClient (ASGI): an async view, and a sync one run in a worker thread."""

    async def requests() -> None:
        client = AsyncClient()
        for url in ("/aview", "/view"):
            response = await client.get(url, headers={"X-Tenant-ID": "acme"})
            assert response.status_code == 200

    with override_settings(**DJANGO):
        asyncio.run(requests())
    for message, url in [
        ("django async", "/aview"),
        ("django sync", "/view"),
        ("django memory", "/view"),
    ]:
        line = lines.one(message)
        assert line["tenant_id"] == "acme"
        assert request_of(spans, line) == url
    assert correlation(lines.one("django memory")) == ids(spans.one("memory.read redis"))
    assert lines.one("django memory")["agent_id"] == "support-agent"
