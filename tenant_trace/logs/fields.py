"""The correlation fields of a log record (tenant, trace, span, agent), stamped once from
the context it was logged in, and the one place where log output meets redaction."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from opentelemetry import trace
from pythonjsonlogger.core import RESERVED_ATTRS

from ..agent.rollup import current_totals
from ..context import get_current_tenant
from ..identity import identity_attributes
from ..redaction import redact_attributes

__all__ = [
    "FIELDS",
    "REDACTION_FAILED",
    "LogIds",
    "TenantLogFilter",
    "current_ids",
    "redact_fields",
]

FIELDS = ("tenant_id", "trace_id", "span_id", "agent_id")
AGENT_NAME = "gen_ai.agent.name"
REDACTION_FAILED = "<redaction failed>"

# Set on a record once stamped: a record handed on (a QueueHandler, a second handler) keeps
# the ids of the thread that logged it. The leading underscore keeps it out of the output.
_STAMP = "_tenant_trace_stamp"
# Marks the handlers configure_logging installed, so that a second call replaces them.
_OWNER = "_tenant_trace_handler"
# Output keys that are never redacted: ids, time, level and logger name are not user text.
_KEPT = frozenset({*FIELDS, "timestamp", "level", "logger"})
# uvicorn repeats the message with ANSI colours in ``color_message``.
_NOT_EXTRA = frozenset({*RESERVED_ATTRS, "taskName", "color_message", *FIELDS})
# The key under which OtelLogHandler hands the body to redact_fields with the attributes.
_BODY = "message"
# The `identity` of the context, as extra fields of the lines logged inside it.
_IDENTITY_FIELDS = {
    "user.id": "user_id",
    "session.id": "session_id",
    "gen_ai.conversation.id": "conversation_id",
}
# OpenTelemetry's severity text for the Python level names that differ (WARN, FATAL).
_OTEL_LEVELS = {"WARNING": "WARN", "CRITICAL": "FATAL"}


class LogIds(NamedTuple):
    """The correlation ids of one log record; each is ``None`` when absent."""

    tenant_id: str | None
    trace_id: str | None
    span_id: str | None
    agent_id: str | None


_NO_IDS = LogIds(None, None, None, None)


class _Stamp(NamedTuple):
    ids: LogIds
    span_context: trace.SpanContext | None


def current_ids() -> LogIds:
    """The tenant, trace id (32 hex), span id (16 hex) and innermost agent name of the
    current context; never raises."""
    return _current().ids


def _current() -> _Stamp:
    try:
        span_context: trace.SpanContext | None = trace.get_current_span().get_span_context()
        trace_id = span_id = None
        if span_context is not None and span_context.is_valid:
            trace_id = format(span_context.trace_id, "032x")
            span_id = format(span_context.span_id, "016x")
        else:
            span_context = None
        return _Stamp(LogIds(get_current_tenant(), trace_id, span_id, _agent_name()), span_context)
    except Exception:
        return _Stamp(_NO_IDS, None)


def _agent_name() -> str | None:
    """The agent name of the innermost agent run (``None`` outside any run), recorded or
    sampled out alike."""
    totals = current_totals()
    return None if totals is None else totals.agent


def _stamp(record: logging.LogRecord) -> _Stamp:
    """Add the correlation fields to `record` unless it has them already; never raises."""
    try:
        stamp = record.__dict__.get(_STAMP)
        if not isinstance(stamp, _Stamp):
            stamp = _current()
            # Overwrites a caller's ``extra={"tenant_id": ...}``: the context is the truth.
            record.__dict__.update(stamp.ids._asdict())
            for key, value in identity_attributes(stamp.ids.tenant_id).items():
                record.__dict__[_IDENTITY_FIELDS[key]] = value  # only when an identity is set
            record.__dict__[_STAMP] = stamp
        return stamp
    except Exception:
        return _Stamp(_NO_IDS, None)


class TenantLogFilter(logging.Filter):
    """Adds ``tenant_id``, ``trace_id``, ``span_id`` and ``agent_id`` to every record.

    Put it on a handler, where it sees the records of every logger that reaches the handler
    (a filter on a logger sees only records logged on that very logger). It reads the
    context the record is logged in: work run in a copy of the caller's context
    (`contextvars.copy_context`, `asyncio.to_thread`) logs the caller's ids, a thread
    with a context of its own logs ``None``. It never raises and never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        _stamp(record)
        return True


def redact_fields(fields: Mapping[str, Any], tenant: str | None = None) -> dict[str, Any]:
    """The one place where log output meets redaction: the fields of one line (message,
    extra fields, exception text), as they are about to be written.

    `TenantJsonFormatter`, `OtelLogHandler` and `redact_event_dict` all come here; the ids,
    timestamp, level and logger name pass untouched. Fields whose keys name secrets
    (``password``, ``authorization`` ...) are masked whole and strings are scrubbed, with
    per-tenant pseudonyms for `tenant`, but never truncated (a traceback stays whole). A
    redactor that fails masks the values rather than let them out unredacted.
    """
    # Keys as text (an ``extra`` key may be anything), mapped back to the originals after.
    named = {_safe_str(key): key for key in fields if key not in _KEPT}
    try:
        cleaned = redact_attributes(
            {name: fields[key] for name, key in named.items()}, tenant=tenant
        )
        redacted = {key: cleaned[name] for name, key in named.items()}
    except Exception:
        redacted = dict.fromkeys(named.values(), REDACTION_FAILED)
    return {key: value if key in _KEPT else redacted[key] for key, value in fields.items()}


def _safe_str(value: object) -> str:
    for render in (str, repr):
        try:
            return render(value)
        except Exception:
            continue
    return f"<unprintable {type(value).__name__}>"


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _encode(data: Mapping[Any, Any], dumps: Callable[[Any], str]) -> str:
    """``dumps(data)``; when that fails (a cycle, NaN, a key that is not a string, nesting
    too deep), each field that cannot be encoded is written as its ``repr`` instead."""
    try:
        return dumps(data)
    except (TypeError, ValueError, RecursionError):
        clean: dict[str, Any] = {}
        for key, value in data.items():
            try:
                dumps(value)
            except (TypeError, ValueError, RecursionError):
                value = _safe_repr(value)
            clean[key if isinstance(key, str) else _safe_str(key)] = value
        return dumps(clean)


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``: ``2026-03-15T14:23:01.442Z``."""
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _level(levelname: object) -> str:
    """The brief's lower-case level: OpenTelemetry's severity text, lower-cased."""
    name = _safe_str(levelname)
    return _OTEL_LEVELS.get(name, name).lower()


def _repaired(record: logging.LogRecord, exc: BaseException) -> logging.LogRecord:
    """A copy of `record` whose message is its raw ``msg`` with the arguments apart."""
    copy = logging.makeLogRecord(record.__dict__)
    copy.msg = _safe_str(record.msg)
    copy.args = None
    copy.__dict__["log_error"] = f"{type(exc).__name__}: {_safe_str(exc)}"
    if record.args:
        copy.__dict__["log_args"] = _safe_repr(record.args)
    return copy


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        return _safe_str(record.msg)
