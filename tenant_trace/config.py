"""Process-wide settings of the agent API, set by `tenant_trace.init()`, and the parsers of
the values every setting shares: durations (``90d``) and ``tenant=value`` lists."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import ConfigurationError

__all__ = [
    "Settings",
    "env_flag",
    "genai_latest_experimental",
    "parse_duration",
    "parse_tenant_values",
    "settings",
]

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The longest duration accepted: a century (beyond it, a typo more likely than a wish).
MAX_DURATION = 36500 * 86400.0


def parse_duration(text: object, what: str = "duration") -> float:
    """``90s``, ``10m``, ``12h``, ``90d`` (or ``1.5h``) as seconds, and nothing else: no
    spaces, no other unit, not zero, at most a century.

    Args:
        what: names the value in the error message (``"retention of 'acme'"``).

    Raises:
        ConfigurationError: `text` is not such a duration.
    """
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    seconds = float(match[1]) * _UNITS[match[2]] if match else math.nan
    if not 0 < seconds <= MAX_DURATION:
        raise ConfigurationError(
            f"{what} {text!r} is not a duration: use a number and s, m, h or d "
            "(90s, 10m, 12h, 90d), more than zero and at most 36500d"
        )
    return seconds


def parse_tenant_values(spec: str, what: str) -> dict[str, str]:
    """``{"default": "7d", "acme": "90d"}`` from ``"default=7d,acme=90d"``: comma-separated
    ``tenant=value`` entries, spaces around each part ignored.

    Args:
        what: names the setting in error messages (``"TENANT_TRACE_RETENTION"``).

    Raises:
        ConfigurationError: an entry is not ``tenant=value``, or a tenant is given twice.
    """
    values: dict[str, str] = {}
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        key, sep, value = (part.strip() for part in entry.partition("="))
        if not sep or not key or not value:
            raise ConfigurationError(f"{what}: entry {entry!r} is not tenant=value")
        if key in values:
            raise ConfigurationError(f"{what}: the entry for {key!r} is given twice")
        values[key] = value
    return values


def env_flag(name: str) -> bool:
    """Whether the environment variable `name` is set to true (1, true, yes, on)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


#: OpenTelemetry's switch between the conventions an instrumentation emitted so far and the
#: latest experimental ones; ``gen_ai_latest_experimental`` selects the latest GenAI ones.
STABILITY_OPT_IN_ENV = "OTEL_SEMCONV_STABILITY_OPT_IN"
GENAI_PROVIDER_ENV = "TENANT_TRACE_GENAI_PROVIDER"


def genai_latest_experimental() -> bool:
    """Whether ``OTEL_SEMCONV_STABILITY_OPT_IN`` (a comma-separated list) names
    ``gen_ai_latest_experimental``."""
    values = os.environ.get(STABILITY_OPT_IN_ENV, "").split(",")
    return "gen_ai_latest_experimental" in (v.strip().lower() for v in values)


@dataclass
class Settings:
    """What the agent API records.

    Attributes:
        capture_content: record user text (prompts, completions, queries, tool arguments and
            results); off by default (env ``TENANT_TRACE_CAPTURE_CONTENT=true``).
        max_content_length: captured text is truncated to this many characters.
        redact: applied to captured text before it is recorded (the redaction layer).
        pseudonymize_users: record ``user.id`` as a per-tenant pseudonym (`identity`).
        genai_provider: ``gen_ai.provider.name`` of the LLM calls that do not name one
            (env ``TENANT_TRACE_GENAI_PROVIDER``, else ``"unknown"``).
        genai_latest: emit the latest experimental GenAI conventions only
            (``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``, read by ``init()``).
    """

    capture_content: bool = field(default_factory=lambda: env_flag("TENANT_TRACE_CAPTURE_CONTENT"))
    max_content_length: int = 500
    redact: Callable[[str], str] | None = None
    pseudonymize_users: bool = True
    genai_provider: str = field(
        default_factory=lambda: os.environ.get(GENAI_PROVIDER_ENV, "").strip() or "unknown"
    )
    genai_latest: bool = field(default_factory=genai_latest_experimental)

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


settings = Settings()
