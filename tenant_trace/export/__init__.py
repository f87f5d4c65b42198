"""Where spans go: the tenant span processor, per-tenant sampling, exporters chosen by name
(OTLP, console, the embedded local store), the batch pipeline, auto-instrumentation."""

from .instrument import auto_instrument
from .pipeline import batch_processor, build_exporters
from .processor import TenantSpanProcessor
from .sampling import TenantSampler
from .store import SQLiteSpanExporter, store_path

__all__ = [
    "SQLiteSpanExporter",
    "TenantSampler",
    "TenantSpanProcessor",
    "auto_instrument",
    "batch_processor",
    "build_exporters",
    "store_path",
]
