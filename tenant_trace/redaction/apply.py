"""Redaction as configured: `init(redact=...)` installs a redactor in ``settings.redact``,
and `redact_attributes` applies it, with the secret-key rules, to attributes and log fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import settings
from ..errors import ConfigurationError
from .redactor import KEEP_KEYS, SECRET, Redactor, is_secret_key

__all__ = ["configure_redaction", "redact_attributes"]


def redact_attributes(
    attributes: Mapping[str, Any], redactor: Redactor | None = None, tenant: str | None = None
) -> Mapping[str, Any]:
    """Span attributes or log fields made safe: secret keys masked whole, string values
    scrubbed by `redactor` (default: ``settings.redact``); `attributes` itself when nothing
    changed.

    With ``settings.redact`` a plain function, it is applied to string values; with none,
    only the key rules apply.
    """
    if redactor is not None:
        return redactor.redact_attributes(attributes, tenant)
    current = settings.redact
    if isinstance(current, Redactor):
        return current.redact_attributes(attributes, tenant)
    changed: dict[str, Any] | None = None
    for key, value in attributes.items():
        if key in KEEP_KEYS:
            continue
        if is_secret_key(key):
            new: Any = SECRET
        elif current is not None and isinstance(value, str):
            new = current(value)
        else:
            continue
        if new != value:
            if changed is None:
                changed = dict(attributes)
            changed[key] = new
    return attributes if changed is None else changed


def configure_redaction(redact: bool | Redactor) -> Redactor | None:
    """What ``init(redact=...)`` does: set ``settings.redact`` and answer the `Redactor` the
    exporters that init() builds are wrapped with (``None``: no wrapping).

    ``True`` keeps a redactor already installed (a `Redactor`, or your own function, in which
    case exporters get a default `Redactor`); otherwise installs a default one truncating at
    ``settings.max_content_length``. ``False`` removes redaction. A `Redactor` is installed.
    """
    if redact is False:
        settings.redact = None
        return None
    if isinstance(redact, Redactor):
        settings.redact = redact
        return redact
    if redact is not True:
        raise ConfigurationError(f"redact must be True, False or a Redactor, not {redact!r}")
    current = settings.redact
    if isinstance(current, Redactor):
        return current
    redactor = Redactor(max_length=settings.max_content_length)
    if current is None:
        settings.redact = redactor
    return redactor
