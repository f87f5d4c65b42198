"""Usage and cost of every model call, read from any GenAI span (OpenTelemetry GenAI,
OpenInference, older names), counted once per call, per tenant; model prices; the ledger
that counts them per tenant, model and hour whether or not the trace was sampled."""

from .ledger import Ledger
from .prices import Price, parse_prices
from .read import Usage, read_usage
from .track import UsageSpanProcessor

__all__ = ["Ledger", "Price", "Usage", "UsageSpanProcessor", "parse_prices", "read_usage"]
