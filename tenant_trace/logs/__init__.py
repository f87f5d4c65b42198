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

from .fields import FIELDS, REDACTION_FAILED, LogIds, TenantLogFilter, current_ids, redact_fields
from .formatter import TenantJsonFormatter
from .otel import OtelLogHandler
from .setup import configure_logging
from .structlog import add_tenant_context, redact_event_dict, structlog_processors

__all__ = [
    "FIELDS",
    "REDACTION_FAILED",
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
