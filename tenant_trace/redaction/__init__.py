"""PII and secret redaction: the `Redactor` and its detectors, the key rules shared by spans
and logs, and `RedactingSpanExporter`, the safety net for every span at export."""

from .apply import configure_redaction, redact_attributes
from .exporter import RedactingSpanExporter
from .redactor import DEFAULT_DETECTORS, KEEP_KEYS, SECRET, Finding, Redactor, is_secret_key

__all__ = [
    "DEFAULT_DETECTORS",
    "KEEP_KEYS",
    "SECRET",
    "Finding",
    "RedactingSpanExporter",
    "Redactor",
    "configure_redaction",
    "is_secret_key",
    "redact_attributes",
]
