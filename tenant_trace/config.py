"""Process-wide settings of the agent API, set by `tenant_trace.init()`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["Settings", "settings"]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Settings:
    """What the agent API records.

    Attributes:
        capture_content: record user text (prompts, completions, queries, tool arguments and
            results); off by default (env ``TENANT_TRACE_CAPTURE_CONTENT=true``).
        max_content_length: captured text is truncated to this many characters.
        prices: per-model prices in USD per million tokens, ``{"gpt-4o": (2.5, 10.0)}``
            (input, output), for the estimated cost of a run.
        redact: applied to captured text before it is recorded (the redaction layer).
    """

    capture_content: bool = field(default_factory=lambda: _env_flag("TENANT_TRACE_CAPTURE_CONTENT"))
    max_content_length: int = 500
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    redact: Callable[[str], str] | None = None

    def content(self, value: object) -> str | None:
        """`value` as text ready for a span attribute, or ``None`` when capture is off."""
        if not self.capture_content:
            return None
        text = value if isinstance(value, str) else repr(value)
        if self.redact is not None:
            text = self.redact(text)
        if len(text) > self.max_content_length:
            text = text[: self.max_content_length] + "…"
        return text

    def cost(self, model: str | None, input_tokens: int, output_tokens: int) -> float | None:
        """Estimated USD cost of a call, or ``None`` when the model has no price."""
        price = self.prices.get(model) if model else None
        if price is None:
            return None
        return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000


settings = Settings()
