"""Who, besides the tenant: the user, session and conversation of the current context.

    with tenant_trace.identity(user_id=claims["sub"], session_id=request.headers["X-Session-ID"]):
        ...

Every span started inside the block (other libraries' too) carries them as ``user.id``,
``session.id`` and ``gen_ai.conversation.id``, the names OpenInference/Phoenix and Langfuse
read; so do the span current when the block starts and the runs around it (the request's
``agent.run``). ``user.id`` is a per-tenant pseudonym by default: the HMAC of the id under a key
derived from the redactor's secret key and the tenant (`Redactor.pseudonym`), so one user of
two tenants cannot be linked, and the raw id is never recorded. They are never metric labels.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import NamedTuple

from .config import settings
from .context import FORBIDDEN_CATEGORIES
from .errors import ConfigurationError
from .redaction import Redactor
from .resolve.view import RequestView

__all__ = [
    "Identity",
    "checked",
    "enter",
    "from_request",
    "get_current_identity",
    "identity_attributes",
    "leave",
]

logger = logging.getLogger("tenant_trace")

MAX_LENGTH = 255


class Identity(NamedTuple):
    """The user, session and conversation ids of a context; each may be ``None``."""

    user_id: str | None = None
    session_id: str | None = None
    conversation_id: str | None = None


_current: ContextVar[Identity | None] = ContextVar("tenant_trace.identity", default=None)
# A key of this process for user pseudonyms when redaction is off (no redactor's key).
_fallback = Redactor()


def _checked(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_LENGTH:
        raise ConfigurationError(f"{name} must be a string of 1 to {MAX_LENGTH} characters")
    if any(unicodedata.category(c) in FORBIDDEN_CATEGORIES for c in value):
        raise ConfigurationError(f"{name} contains control or invisible characters")
    return value


def get_current_identity() -> Identity | None:
    """The identity of the current context, or ``None`` outside any `identity` block."""
    return _current.get()


def identity_attributes(tenant_id: str | None, who: Identity | None = None) -> dict[str, str]:
    """The span attributes of `who` (default: the current identity) for a span of
    `tenant_id`: ``user.id`` pseudonymized unless ``init(pseudonymize_users=False)``."""
    who = _current.get() if who is None else who
    if who is None:
        return {}
    attributes = {}
    if who.user_id is not None:
        user = who.user_id
        if settings.pseudonymize_users:
            redactor = settings.redact if isinstance(settings.redact, Redactor) else _fallback
            user = redactor.pseudonym("USER", user, tenant_id)
        attributes["user.id"] = user
    if who.session_id is not None:
        attributes["session.id"] = who.session_id
    if who.conversation_id is not None:
        attributes["gen_ai.conversation.id"] = who.conversation_id
    return attributes


def checked(user_id: str | None, session_id: str | None, conversation_id: str | None) -> Identity:
    """The ids given, validated (``None``: not given).

    Raises:
        ConfigurationError: an id is not a string of 1 to 255 characters without control
            characters (the message names the argument, never the value).
    """
    return Identity(
        _checked(user_id, "user_id"),
        _checked(session_id, "session_id"),
        _checked(conversation_id, "conversation_id"),
    )


def enter(given: Identity) -> tuple[Identity, Token[Identity | None]]:
    """Make the `given` ids current (one not given keeps the enclosing value); pair with
    `leave`. `tenant_trace.identity` is the with-block that does both."""
    outer = _current.get() or Identity()
    merged = Identity(*(g if g is not None else o for g, o in zip(given, outer, strict=True)))
    return merged, _current.set(merged)


def leave(token: Token[Identity | None]) -> None:
    _current.reset(token)


def from_request(view: RequestView, headers: Mapping[str, str]) -> Identity | None:
    """The identity a resolver found (a JWT's claims) or `headers` carry; ``None``: none.
    A value that is no valid id is left out (logged), never a reason to refuse."""
    found = dict(view.identity)
    for field, header in headers.items():
        value = view.get(header)
        if value is not None:
            found.setdefault(field, value)
    if not found:
        return None
    given = {}
    for field, value in found.items():
        try:
            given[field] = _checked(value, field)
        except ConfigurationError:
            logger.debug("tenant_trace: the request's %s is not a valid id", field)
    return Identity(**given) if given else None
