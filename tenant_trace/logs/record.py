"""Log lines that lead to their trace: the tenant, trace, span and agent on every record.

`TenantLogFilter` adds ``tenant_id``, ``trace_id``, ``span_id`` and ``agent_id`` to each
record; `TenantJsonFormatter` (python-json-logger) writes one JSON object per line;
`add_tenant_context` does the same for structlog; `configure_logging` installs it all in one
call and can also hand every record to the OpenTelemetry logs SDK (`OtelLogHandler`)::

    {"timestamp": "2026-03-15T14:23:01.442Z", "level": "warn",
     "message": "LLM context window approaching limit", "tenant_id": "tenant-abc-123",
     "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
     "agent_id": "workflow-agent-v2", "logger": "app", "tokens_used": 7840}

Logging never breaks the application: a record with a message that cannot be rendered, bad
format arguments or fields that cannot be encoded is still written, with what could be kept.
Every field that leaves but the ids (message, extra fields, exception text) goes through one
hook, `redact_fields`.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from ..context import get_current_tenant
from ..errors import ConfigurationError, MissingDependencyError
from ..redaction.redactor import redact_attributes
from ..agent.rollup import current_totals

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import LogRecordExporter

__all__ = [
    "FIELDS",
    "LogIds",
    "OtelLogHandler",
    "TenantJsonFormatter",
    "TenantLogFilter",
    "add_tenant_context",
    "configure_logging",
    "current_ids",
    "redact_event_dict",
    "redact_fields",
    "structlog_processors",
]

#: The correlation fields added to every record, in output order.
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


class TenantJsonFormatter(JsonFormatter):
    """python-json-logger's `JsonFormatter`, writing the brief's shape: ``timestamp``,
    ``level``, ``message``, the correlation fields, ``logger``, then any ``extra=`` fields
    and ``exc_info``/``stack_info`` text.

    It stamps records that no `TenantLogFilter` has seen, never raises, and passes message,
    extra fields and exception text through `redact_fields`. Keyword arguments are those of
    `pythonjsonlogger.json.JsonFormatter`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("reserved_attrs", sorted(_NOT_EXTRA))
        # NaN and Infinity are not JSON: such a field is written as its repr (see _encode).
        kwargs.setdefault("json_serializer", functools.partial(json.dumps, allow_nan=False))
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        try:
            return super().format(record)
        except Exception as exc:
            # The message could not be rendered (bad arguments, a message object whose
            # __str__ raises): write the record once more with the raw message.
            try:
                return super().format(_repaired(record, exc))
            except Exception as again:
                return self._last_resort(record, again)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        ids = _stamp(record).ids
        head = {
            "timestamp": _timestamp(record.created),
            "level": _level(record.levelname),
            # A dict logged as the message has its keys merged in; its "message", if any.
            "message": log_data.get("message", record.message),
            **ids._asdict(),
            "logger": record.name,
        }
        rest = {key: value for key, value in log_data.items() if key not in head}
        log_data.clear()
        log_data.update(head)
        log_data.update(rest)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return redact_fields(log_data, log_data.get("tenant_id"))

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        return _encode(log_data, super().jsonify_log_record)

    def _last_resort(self, record: logging.LogRecord, exc: BaseException) -> str:
        ids = _stamp(record).ids
        data = {
            "timestamp": _timestamp(time.time()),
            "level": _level(getattr(record, "levelname", "ERROR")),
            "message": _safe_str(getattr(record, "msg", "")),
            **ids._asdict(),
            "logger": _safe_str(getattr(record, "name", "")),
            "log_error": f"{type(exc).__name__}: {_safe_str(exc)}",
        }
        try:
            return self.prefix + self.jsonify_log_record(self.process_log_record(data))
        except Exception:
            return json.dumps({"message": "<unloggable record>", **ids._asdict()})


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


# --- structlog ----------------------------------------------------------------------------


def add_tenant_context(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add ``tenant_id``, ``trace_id``, ``span_id`` and ``agent_id`` of
    the current context (``None`` when absent)."""
    event_dict.update(current_ids()._asdict())
    return event_dict


def redact_event_dict(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: pass the event's fields but the ids through `redact_fields`;
    put it just before the renderer, after exceptions are formatted."""
    return redact_fields(event_dict, event_dict.get("tenant_id"))


def _brief_shape(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The JSON shape of `TenantJsonFormatter` for a structlog event."""
    head = {
        "timestamp": _timestamp(time.time()),
        "level": _level(_safe_str(event_dict.pop("level", method_name)).upper()),
        "message": event_dict.pop("event", ""),
        **{key: event_dict.pop(key, None) for key in FIELDS},
        "logger": event_dict.pop("logger", None),
    }
    if "exception" in event_dict:
        event_dict["exc_info"] = event_dict.pop("exception")
    return {**head, **event_dict}


def structlog_processors() -> list[Callable[..., Any]]:
    """A structlog processor chain that writes the same JSON lines as the stdlib setup, for
    structlog's own loggers (``PrintLoggerFactory``, ``WriteLoggerFactory``)::

        structlog.configure(processors=tenant_trace.logs.structlog_processors())

    Raises:
        MissingDependencyError: structlog is not installed (extra ``structlog``).
    """
    try:
        import structlog
    except ImportError:
        raise MissingDependencyError("structlog", "structlog") from None

    def dumps(data: Any, **kwargs: Any) -> str:
        return _encode(data, functools.partial(json.dumps, **kwargs, allow_nan=False))

    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        add_tenant_context,
        _brief_shape,
        redact_event_dict,
        structlog.processors.JSONRenderer(serializer=dumps),
    ]


# --- OpenTelemetry logs -------------------------------------------------------------------

# Set while a record is being emitted: a log line written by the SDK itself during the
# export of another one is dropped instead of re-entering the handler.
_emitting: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tenant_trace.log_emitting", default=False
)


class OtelLogHandler(logging.Handler):
    """Hands each record to an OpenTelemetry `LoggerProvider` (the logs SDK).

    The record keeps its trace and span (from the context it was logged in) and carries
    ``tenant.id`` and ``gen_ai.agent.name`` like the spans; the body is the message and the
    extra fields become attributes, both through `redact_fields`. Records of OpenTelemetry's
    own loggers are skipped, so an exporter that logs its failures cannot feed itself.

    Args:
        logger_provider: the SDK provider the records go to.
        level: the handler's level.
    """

    def __init__(self, logger_provider: LoggerProvider, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.logger_provider = logger_provider

    def __repr__(self) -> str:
        return f"OtelLogHandler(level={logging.getLevelName(self.level)})"

    def emit(self, record: logging.LogRecord) -> None:
        if _emitting.get() or record.name.startswith("opentelemetry"):
            return
        token = _emitting.set(True)
        try:
            logger = self.logger_provider.get_logger(record.name)
            logger.emit(self._translate(record))
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


# --- setup --------------------------------------------------------------------------------

_lock = threading.Lock()


def configure_logging(
    level: int | str | None = logging.INFO,
    *,
    stream: TextIO | None = None,
    logger: logging.Logger | str | None = None,
    json: bool = True,
    otel: bool = False,
    exporter: str | LogRecordExporter | None = None,
    logger_provider: LoggerProvider | None = None,
) -> list[logging.Handler]:
    """Write JSON log lines correlated with traces and tenants; safe to call more than once.

    Installs on `logger` a stream handler with `TenantLogFilter` and `TenantJsonFormatter`
    and, with `otel`, an `OtelLogHandler`. A later call replaces the handlers an earlier one
    installed on the same logger; it never adds a second copy.

    Args:
        level: the logger's level (``None`` leaves it as it is).
        stream: where JSON lines go (default: ``sys.stderr``).
        logger: the logger or its name (default: the root logger).
        json: install the JSON stream handler.
        otel: also export records through the OpenTelemetry logs SDK.
        exporter: for `otel`: a `LogRecordExporter`, or ``"otlp"``, ``"console"``,
            ``"none"``; default: ``OTEL_LOGS_EXPORTER``, else OTLP when an OTLP endpoint is
            set. Exported in batches off the request path.
        logger_provider: for `otel`: the SDK `LoggerProvider` to use; default: the global
            one if it is an SDK provider, else a new one, installed as the global provider.

    Returns:
        The handlers now installed on the logger by tenant-trace.

    Raises:
        ConfigurationError: an unknown exporter name.
        MissingDependencyError: ``"otlp"`` without the ``otlp`` extra.
    """
    target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    with _lock:
        handlers: list[logging.Handler] = []
        if json:
            handler: logging.Handler = logging.StreamHandler(stream or sys.stderr)
            handler.addFilter(TenantLogFilter())
            handler.setFormatter(TenantJsonFormatter())
            handlers.append(handler)
        if otel:
            handlers.append(OtelLogHandler(_logger_provider(logger_provider, exporter)))
        for old in [h for h in target.handlers if getattr(h, _OWNER, False)]:
            target.removeHandler(old)
        for handler in handlers:
            setattr(handler, _OWNER, True)
            target.addHandler(handler)
        if level is not None:
            target.setLevel(level)
        return handlers


def _logger_provider(
    provider: LoggerProvider | None, exporter: str | LogRecordExporter | None
) -> LoggerProvider:
    from opentelemetry._logs import get_logger_provider, set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    if provider is None:
        current = get_logger_provider()
        if isinstance(current, LoggerProvider):
            provider = current
        else:
            tracer_provider = trace.get_tracer_provider()
            provider = LoggerProvider(resource=getattr(tracer_provider, "resource", None))
            set_logger_provider(provider)
    # Each exporter is added to a provider once, however often configure_logging runs.
    added: set[object] = provider.__dict__.setdefault("_tenant_trace_exporters", set())
    for key, log_exporter in _log_exporters(exporter):
        if key not in added:
            added.add(key)
            provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    return provider


def _log_exporters(
    exporter: str | LogRecordExporter | None,
) -> list[tuple[object, LogRecordExporter]]:
    """``(identity, exporter)`` pairs for `exporter` or, when it is ``None``, OTEL_* vars."""
    if exporter is not None and not isinstance(exporter, str):
        return [(exporter, exporter)]
    endpoint = _env("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")
    names = exporter or _env("OTEL_LOGS_EXPORTER") or ("otlp" if endpoint else "none")
    result: list[tuple[object, LogRecordExporter]] = []
    for name in (n.strip().lower() for n in names.split(",")):
        if name == "console":
            from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

            result.append((name, ConsoleLogRecordExporter()))
        elif name == "otlp":
            result.append((name, _otlp()))
        elif name != "none":
            raise ConfigurationError(f"unknown logs exporter {name!r} (console, otlp or none)")
    return result


def _env(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def _otlp() -> LogRecordExporter:
    """The OTLP logs exporter of ``OTEL_EXPORTER_OTLP_[LOGS_]PROTOCOL``; it reads its
    endpoint and headers from the OTEL_* variables itself."""
    protocol = (
        _env("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL")
        or _env("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
                OTLPLogExporter as Grpc,
            )

            return Grpc()
        if protocol in ("http/protobuf", "http"):
            from opentelemetry.exporter.otlp.proto.http._log_exporter import (
                OTLPLogExporter as Http,
            )

            return Http()
    except ImportError:
        raise MissingDependencyError("opentelemetry-exporter-otlp", "otlp") from None
    raise ConfigurationError(f"unknown OTLP protocol {protocol!r} (http/protobuf or grpc)")
