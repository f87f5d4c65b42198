"""structlog: a processor that adds the correlation fields, and a chain that writes the same
JSON lines as the stdlib setup (``pip install 'tenant-trace[structlog]'``)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from ..errors import MissingDependencyError
from .fields import FIELDS, _encode, _level, _safe_str, _timestamp, current_ids, redact_fields

__all__ = ["add_tenant_context", "redact_event_dict", "structlog_processors"]


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
