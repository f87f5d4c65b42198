"""Model prices, in USD per million tokens, and the cost of a call from its usage.

    tenant_trace.init(prices={"gpt-4o": (2.5, 10.0, 1.25), "claude-sonnet-4": (3.0, 15.0)})
    tenant_trace.init(prices="prices.json")   # {"gpt-4o": {"input": 2.5, "output": 10.0,
                                              #   "cached_input": 1.25}, ...}

or, with no `prices` given, the JSON file ``TENANT_TRACE_PRICES`` names. A model found in no
price has no cost: its tokens are counted, its cost is unknown (``None``, never 0).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple, Union

from ..errors import ConfigurationError
from .read import Usage

__all__ = ["ENV", "Price", "PricesSpec", "configure", "cost", "parse_prices"]

ENV = "TENANT_TRACE_PRICES"


class Price(NamedTuple):
    """USD per million tokens: input, output, and cached input (default: the input price)."""

    input: float
    output: float
    cached_input: float | None = None


PricesSpec = Union[str, "os.PathLike[str]", Mapping[str, object]]

_prices: dict[str, Price] = {}
_lock = threading.Lock()


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigurationError(f"prices: {what} must be a number >= 0 (USD per million tokens)")
    return float(value)


def _price(model: str, value: object) -> Price:
    if isinstance(value, Mapping):
        unknown = set(value) - {"input", "output", "cached_input"}
        if unknown or "input" not in value or "output" not in value:
            raise ConfigurationError(
                f"prices[{model!r}]: give input, output and optionally cached_input"
            )
        parts: list[object] = [value["input"], value["output"], value.get("cached_input")]
    elif isinstance(value, (list, tuple)) and len(value) in (2, 3):
        parts = [*value, None][:3]
    else:
        raise ConfigurationError(
            f"prices[{model!r}] must be (input, output[, cached_input]) or a mapping of them"
        )
    cached = None if parts[2] is None else _number(parts[2], f"{model!r} cached_input")
    return Price(
        _number(parts[0], f"{model!r} input"), _number(parts[1], f"{model!r} output"), cached
    )


def parse_prices(spec: PricesSpec | None) -> dict[str, Price]:
    """Prices per model from a mapping or a JSON file (a path), or when `spec` is ``None``
    from the file ``TENANT_TRACE_PRICES`` names (none when it is unset).

    Raises:
        ConfigurationError: a file that cannot be read or is not JSON, or a price that is
            not (input, output[, cached_input]) numbers >= 0; the message names the model.
    """
    if spec is None:
        spec = os.environ.get(ENV, "").strip() or {}
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"prices: cannot read {path}: {exc}") from None
    if not isinstance(spec, Mapping):
        raise ConfigurationError("prices must map model names to prices")
    prices = {}
    for model, value in spec.items():
        if not isinstance(model, str) or not model:
            raise ConfigurationError("prices: a model name must be a non-empty string")
        prices[model] = _price(model, value)
    return prices


def configure(prices: Mapping[str, Price]) -> dict[str, Price]:
    """Use `prices` from now on; returns the table used before."""
    global _prices
    with _lock:
        old, _prices = _prices, dict(prices)
    return old


def _find(models: tuple[str | None, ...]) -> Price | None:
    table = _prices
    for model in models:
        if model and model in table:
            return table[model]
    # A dated snapshot ("gpt-4o-mini-2024-07-18") takes the price of its family, the longest
    # priced name it starts with.
    best: tuple[int, Price] | None = None
    for model in filter(None, models):
        for name, price in table.items():
            if model.startswith(name + "-") and (best is None or len(name) > best[0]):
                best = (len(name), price)
    return None if best is None else best[1]


def cost(usage: Usage, *models: str | None) -> float | None:
    """USD cost of `usage` at the price of the first of `models` that has one (the model
    asked for, then the one that answered); ``None`` when none has."""
    price = _find(models)
    if price is None:
        return None
    cached = min(usage.cache_read_tokens, usage.input_tokens)
    cached_price = price.input if price.cached_input is None else price.cached_input
    return (
        (usage.input_tokens - cached) * price.input
        + cached * cached_price
        + usage.output_tokens * price.output
    ) / 1_000_000
