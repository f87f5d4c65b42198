"""Where spans go: the tenant span processor, per-tenant sampling, per-tenant routing, exporters
chosen by name (OTLP, console, the embedded local store), the batch pipeline,
auto-instrumentation."""

from .instrument import auto_instrument
from .pipeline import batch_processor, build_exporters
from .processor import TenantSpanProcessor
from .routes import Routes, parse_routes
from .routing import RoutingSpanProcessor
from .sampling import TenantSampler
from .store import SQLiteSpanExporter, store_path

__all__ = [
    "RoutingSpanProcessor",
    "Routes",
    "SQLiteSpanExporter",
    "TenantSampler",
    "TenantSpanProcessor",
    "auto_instrument",
    "batch_processor",
    "build_exporters",
    "parse_routes",
    "store_path",
]
