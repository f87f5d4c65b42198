"""The OpenTelemetry logs bridge: `OtelLogHandler` hands each record to the logs SDK."""

from __future__ import annotations

import contextvars
import logging
import time
import warnings
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggingHandler

from .fields import (
    _BODY,
    _NOT_EXTRA,
    _OTEL_LEVELS,
    AGENT_NAME,
    _message,
    _safe_str,
    _stamp,
    redact_fields,
)

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider

__all__ = ["OtelLogHandler"]


# Set while a record is being emitted: a log line written by the SDK itself during the
# export of another one is dropped instead of re-entering the handler.
_emitting: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tenant_trace.log_emitting", default=False
)


class OtelLogHandler(LoggingHandler):
    """Hands each record to an OpenTelemetry `LoggerProvider` (the logs SDK): OpenTelemetry's
    own ``LoggingHandler`` with tenant-trace's translation of a record.

    The record keeps its trace and span (from the context it was logged in) and carries
    ``tenant.id`` and ``gen_ai.agent.name`` like the spans; the body is the message and the
    extra fields become attributes, both through `redact_fields`. Records of OpenTelemetry's
    own loggers are skipped, so an exporter that logs its failures cannot feed itself.

    Args:
        logger_provider: the SDK provider the records go to.
        level: the handler's level.
    """

    def __init__(self, logger_provider: LoggerProvider, level: int = logging.NOTSET) -> None:
        with warnings.catch_warnings():
            # The SDK's handler announces its move to opentelemetry-instrumentation-logging;
            # until it is gone from the SDK, the SDK's is the one every user already has.
            warnings.simplefilter("ignore", DeprecationWarning)
            super().__init__(level=level, logger_provider=logger_provider)
        self.logger_provider = logger_provider

    def __repr__(self) -> str:
        return f"OtelLogHandler(level={logging.getLevelName(self.level)})"

    def emit(self, record: logging.LogRecord) -> None:
        if _emitting.get() or record.name.startswith("opentelemetry"):
            return
        token = _emitting.set(True)
        try:
            super().emit(record)
        except Exception:
            self.handleError(record)
        finally:
            _emitting.reset(token)

    def _translate(self, record: logging.LogRecord) -> LogRecord:
        stamp = _stamp(record)
        fields: dict[str, Any] = {_BODY: _message(record)}
        for key, value in record.__dict__.items():
            if isinstance(key, str) and key not in _NOT_EXTRA and not key.startswith("_"):
                fields[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, exc, _ = record.exc_info
            fields["exception.type"] = exc_type.__qualname__
            fields["exception.message"] = _safe_str(exc)
            fields["exception.stacktrace"] = logging.Formatter().formatException(record.exc_info)
        fields = redact_fields(fields, stamp.ids.tenant_id)
        body = fields.pop(_BODY)
        attributes = {key: _attribute(value) for key, value in fields.items()}
        if stamp.ids.tenant_id is not None:
            attributes["tenant.id"] = stamp.ids.tenant_id
        if stamp.ids.agent_id is not None:
            attributes[AGENT_NAME] = stamp.ids.agent_id
        # The span of the thread that logged, even when a queue moved the record elsewhere.
        context = (
            trace.set_span_in_context(trace.NonRecordingSpan(stamp.span_context))
            if stamp.span_context is not None
            else otel_context.get_current()
        )
        levelname = _safe_str(record.levelname)
        return LogRecord(
            timestamp=int(record.created * 1e9),
            observed_timestamp=time.time_ns(),
            context=context,
            severity_text=_OTEL_LEVELS.get(levelname, levelname),
            severity_number=_severity(record.levelno),
            body=body,
            attributes=attributes,
        )


def _attribute(value: Any) -> Any:
    """An attribute value OpenTelemetry accepts: primitives and lists of them, else text."""
    if value is None or isinstance(value, (str, bool, int, float, bytes)):
        return value
    if isinstance(value, (list, tuple)) and all(
        isinstance(item, (str, bool, int, float)) for item in value
    ):
        return list(value)
    return _safe_str(value)


def _severity(levelno: int) -> SeverityNumber:
    """OpenTelemetry's severity number: DEBUG 5, INFO 9, WARN 13, ERROR 17, FATAL 21, with
    up to three steps for the levels in between."""
    for floor, number in ((50, 21), (40, 17), (30, 13), (20, 9), (10, 5)):
        if levelno >= floor:
            return SeverityNumber(number + min(levelno - floor, 3))
    return SeverityNumber.UNSPECIFIED
