"""Stored strings on a terminal: data, never markup or escape sequences.

Tenant ids, span names, attribute values and failure messages come from requests and from
other libraries' spans. They are shown literally: never parsed as rich markup, and every
control, format or separator character (ESC of CSI and OSC sequences, C1 controls such as
U+009B, bidi overrides, zero-width characters) shown as its ``\\x1b`` / ``\\u202e`` escape, as
``git log`` makes control characters visible. Long values are cut in views (``--json``
keeps them whole), so a 24 MB attribute prints at once.
"""

from __future__ import annotations

import sys
import unicodedata
from functools import lru_cache
from typing import Any

__all__ = ["MAX_CELL", "MAX_VALUE", "UNPRICED_NOTE", "console", "literal", "usd", "visible"]

#: Characters of a value shown in a span tree, and in a table cell.
MAX_VALUE = 300
MAX_CELL = 80
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


@lru_cache(maxsize=4096)
def _escape(char: str) -> str:
    return ascii(char)[1:-1] if unicodedata.category(char) in _HIDDEN else char


def visible(value: object, limit: int | None = MAX_VALUE) -> str:
    """`value` as plain text with hidden characters made visible, cut after `limit`
    characters with a note of how many more there were."""
    text = value if isinstance(value, str) else str(value)
    extra = 0
    if limit is not None and len(text) > limit:
        extra, text = len(text) - limit, text[:limit]
    if not text.isascii() or not text.isprintable():
        text = "".join(map(_escape, text))
    return f"{text}… (+{extra:,} characters)" if extra else text


def literal(value: object, limit: int | None = MAX_VALUE, style: str = "") -> Any:
    """`visible(value)` as a rich `Text`, which rich never parses as markup."""
    from rich.text import Text

    return Text(visible(value, limit), style=style)


def usd(cost: float | None, unpriced_calls: int = 0) -> str:
    """A cost cell: ``-`` when unknown (no call had a price), never a made-up 0; ``+3?``
    after it says 3 calls had no price (`UNPRICED_NOTE`)."""
    text = "-" if cost is None else f"{cost:,.4f}"
    return f"{text} +{unpriced_calls:,}?" if unpriced_calls else text


#: The caption of a table with `usd` cells that note calls without a price.
UNPRICED_NOTE = "+n? after a cost: n model calls had no price, so their cost is unknown"


def console() -> Any:
    """A console that parses no markup, emoji codes or highlighting in anything printed;
    piped output (CI logs, the demo) gets a width that fits the tables, not 80 columns."""
    from rich.console import Console

    width = None if sys.stdout.isatty() else 132
    return Console(markup=False, emoji=False, highlight=False, width=width)
