"""Usage and cost of every model call, read from any GenAI span (OpenTelemetry GenAI,
OpenInference, older names), counted once per call, per tenant; model prices."""

from .prices import Price, parse_prices
from .read import Usage, read_usage
from .track import UsageSpanProcessor

__all__ = ["Price", "Usage", "UsageSpanProcessor", "parse_prices", "read_usage"]
