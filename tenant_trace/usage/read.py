"""Token usage of one model call, read from a span's attributes in whichever convention the
instrumentation that made the span follows.

- OpenTelemetry GenAI (``gen_ai.usage.input_tokens``, ``output_tokens``, the cache-read,
  cache-creation and reasoning counts): openai-v2, pydantic-ai, tenant-trace's `llm_call`;
- OpenInference (``llm.token_count.prompt``, ``completion``, ``prompt_details.cache_read``
  ...): the LangChain, LlamaIndex, DSPy ... instrumentations Phoenix reads;
- the older GenAI names (``gen_ai.usage.prompt_tokens``, ``completion_tokens``).

In every convention the input count includes cached tokens and the output count includes
reasoning tokens; the details say how many of them there were.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from ..telemetry import plain

__all__ = [
    "Usage",
    "may_report_usage",
    "model_of",
    "provider_of",
    "read_usage",
    "response_usage",
]

# (input, output, cache read, cache creation, reasoning), in the order a span is read.
_CONVENTIONS = (
    (
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.reasoning.output_tokens",
    ),
    (
        "llm.token_count.prompt",
        "llm.token_count.completion",
        "llm.token_count.prompt_details.cache_read",
        "llm.token_count.prompt_details.cache_write",
        "llm.token_count.completion_details.reasoning",
    ),
    ("gen_ai.usage.prompt_tokens", "gen_ai.usage.completion_tokens", "", "", ""),
)
# Any of these present: the span may report usage (the check every span's end makes).
_COUNT_KEYS = frozenset(key for keys in _CONVENTIONS for key in keys[:2])
_MODEL_KEYS = ("gen_ai.request.model", "gen_ai.response.model", "llm.model_name")
_PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")


class Usage(NamedTuple):
    """Tokens of one model call (or a sum of calls): cached tokens are part of
    `input_tokens`, reasoning tokens part of `output_tokens`."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(*(a + b for a, b in zip(self, other, strict=True)))

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


def _count(attributes: Mapping[str, object], key: str) -> int:
    value = attributes.get(key) if key else None
    # bool is an int: a True is no count.
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return 0


def may_report_usage(attributes: Mapping[str, object] | None) -> bool:
    """Whether the attributes hold a token count of any convention: the check every span's
    end makes, without copying them. `isdisjoint` walks the keys in C; `in` on the SDK's
    attributes raises a KeyError inside for each key that is absent, the common case."""
    return attributes is not None and not _COUNT_KEYS.isdisjoint(attributes)


def read_usage(attributes: Mapping[str, object] | None) -> Usage | None:
    """The usage a span reports, or ``None`` when it reports none (a span that is no model
    call, or a call without usage). The first convention with an input or output count wins:
    a span that carries two of them is one call, never two."""
    if not may_report_usage(attributes):
        return None
    attributes = plain(attributes)
    for keys in _CONVENTIONS:
        if keys[0] in attributes or keys[1] in attributes:
            usage = Usage(*(_count(attributes, key) for key in keys))
            return usage if usage.total or usage.cache_read_tokens else None
    return None


def _text(attributes: Mapping[str, object], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def model_of(attributes: Mapping[str, object]) -> str | None:
    """The model a call asked for (else the one that answered)."""
    return _text(attributes, _MODEL_KEYS)


def provider_of(attributes: Mapping[str, object]) -> str | None:
    """The provider of a call (``openai``, ``anthropic`` ...), in any convention."""
    return _text(attributes, _PROVIDER_KEYS)


def _int(obj: object, *names: str) -> int:
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def response_usage(usage: object) -> Usage | None:
    """The `Usage` of a provider response's ``usage`` object: OpenAI chat completions
    (``prompt_tokens``, ``prompt_tokens_details.cached_tokens`` ...), OpenAI responses
    (``input_tokens``, ``input_tokens_details``), Anthropic (whose ``input_tokens`` leaves
    out the cache: it is added back); ``None`` without token counts."""
    if usage is None:
        return None
    input_tokens = _int(usage, "prompt_tokens", "input_tokens")
    output_tokens = _int(usage, "completion_tokens", "output_tokens")
    details_in = getattr(usage, "prompt_tokens_details", None) or getattr(
        usage, "input_tokens_details", None
    )
    details_out = getattr(usage, "completion_tokens_details", None) or getattr(
        usage, "output_tokens_details", None
    )
    cache_read = _int(details_in, "cached_tokens")
    cache_creation = 0
    if hasattr(usage, "cache_read_input_tokens"):  # Anthropic
        cache_read = _int(usage, "cache_read_input_tokens")
        cache_creation = _int(usage, "cache_creation_input_tokens")
        input_tokens += cache_read + cache_creation
    usage_read = Usage(
        input_tokens,
        output_tokens,
        cache_read,
        cache_creation,
        _int(details_out, "reasoning_tokens"),
    )
    return usage_read if usage_read.total else None
