"""`TenantJsonFormatter`: one JSON object per line (python-json-logger), in the brief's shape."""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from .fields import (
    _NOT_EXTRA,
    _encode,
    _level,
    _repaired,
    _safe_str,
    _stamp,
    _timestamp,
    redact_fields,
)

__all__ = ["TenantJsonFormatter"]


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
