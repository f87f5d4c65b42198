"""The current tenant: a private ContextVar behind a few verbs.

The value lives in a `contextvars.ContextVar`, so it follows asyncio tasks and
`contextvars.copy_context()` and never leaks between concurrent requests. Every `set` made
by tenant-trace is paired with a `reset` in a `finally` of the same frame.
"""

from __future__ import annotations

import re
import unicodedata
from contextvars import ContextVar, Token
from typing import NamedTuple

from .errors import InvalidTenantError, missing_tenant

__all__ = [
    "Tenant",
    "check_pattern",
    "check_shape",
    "get_current_tenant",
    "get_current_tenant_source",
    "get_tenant_source",
    "require_tenant",
    "set_tenant",
    "set_tenant_pattern",
    "tenant_context",
    "validate_tenant_id",
]

MAX_TENANT_LENGTH = 255
# Control characters, invisible format characters (bidi overrides, zero-width), surrogates
# and line/paragraph separators: all can forge or hide text in logs and dashboards.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Unicode's default-ignorable code points (DerivedCoreProperties.txt) that are letters or
# marks, and the blanks and fillers that render as nothing: "ac\u3164me" reads as "acme".
_INVISIBLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2800\u3164\ufe00-\ufe0f\uffa0"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


class Tenant(NamedTuple):
    """A validated tenant id and where it came from (``header``, ``jwt``, ``manual`` ...)."""

    id: str
    source: str


_current: ContextVar[Tenant | None] = ContextVar("tenant_trace.tenant", default=None)
_pattern: re.Pattern[str] | None = None


def set_tenant_pattern(pattern: str | re.Pattern[str] | None) -> None:
    """Require every tenant id to match `pattern` in full (``None`` removes the rule)."""
    global _pattern
    _pattern = re.compile(pattern) if isinstance(pattern, str) else pattern


def validate_tenant_id(value: object, pattern: re.Pattern[str] | None = None) -> str:
    """Return `value` if it is a valid tenant id, else raise `InvalidTenantError`.

    A valid id has a valid shape (`check_shape`) and matches `pattern`, else the pattern
    given to ``init(tenant_pattern=...)``, if any (`check_pattern`). The error message never
    repeats the value: it may be hostile, and it must not reach telemetry.
    """
    return check_pattern(check_shape(value), pattern)


def check_shape(value: object) -> str:
    """`value` in Unicode normalization form NFKC, if it is a string of 1 to 255 characters
    with no control, invisible or filler characters and no surrounding whitespace, and not
    of the reserved form ``__name__`` (``__other__`` on metrics), else `InvalidTenantError`.

    One rule for every source: ``café`` composed or decomposed, and ``acme`` in full-width
    letters, are the ids ``café`` and ``acme``, as IDNA maps such a Host name."""
    if not isinstance(value, str):
        raise InvalidTenantError(f"tenant id must be a string, not {type(value).__name__}")
    if value.isascii():
        if not value.isprintable():
            raise InvalidTenantError("tenant id contains control characters")
    else:
        value = unicodedata.normalize("NFKC", value)
        if _INVISIBLE.search(value) or any(
            unicodedata.category(c) in FORBIDDEN_CATEGORIES for c in value
        ):
            raise InvalidTenantError("tenant id contains control or invisible characters")
    if not value:
        raise InvalidTenantError("tenant id is empty")
    if len(value) > MAX_TENANT_LENGTH:
        raise InvalidTenantError(f"tenant id is longer than {MAX_TENANT_LENGTH} characters")
    if value[0].isspace() or value[-1].isspace():
        raise InvalidTenantError("tenant id has leading or trailing whitespace")
    if len(value) > 4 and value.startswith("__") and value.endswith("__"):
        raise InvalidTenantError("tenant ids of the form __name__ are reserved")
    return value


def check_pattern(value: str, pattern: re.Pattern[str] | None = None) -> str:
    """`value` if it matches `pattern` in full, else the configured pattern (none: any id
    matches); else `InvalidTenantError`. The one place the tenant pattern is applied."""
    rule = pattern or _pattern
    if rule is not None and not rule.fullmatch(value):
        raise InvalidTenantError("tenant id does not match the configured pattern")
    return value


def set_tenant(tenant_id: str | None, *, source: str = "manual") -> None:
    """Set the tenant of the current context; ``None`` clears it.

    Prefer `tenant_context`, which restores the previous value; `set_tenant` is for code
    that owns its context, such as a script or a worker's task.

    Raises:
        InvalidTenantError: the id is not valid.
    """
    if tenant_id is None:
        _current.set(None)
    else:
        _current.set(Tenant(validate_tenant_id(tenant_id), source))


def get_current_tenant() -> str | None:
    """The tenant id of the current context, or ``None`` when no tenant is set."""
    tenant = _current.get()
    return None if tenant is None else tenant.id


def require_tenant() -> str:
    """The current tenant id; without one, a 401 `Rejection` (``missing_tenant``), which
    every tenant-trace middleware answers with its usual JSON body."""
    tenant = _current.get()
    if tenant is None:
        raise missing_tenant()
    return tenant.id


def get_current_tenant_source() -> str | None:
    """Where the current tenant came from (``header``, ``jwt``, ...), or ``None``."""
    tenant = _current.get()
    return None if tenant is None else tenant.source


get_tenant_source = get_current_tenant_source  # the name before 0.2


def current() -> Tenant | None:
    """The current `Tenant` (id and source) or ``None``; for the library's own use."""
    return _current.get()


def attach(tenant: Tenant | None) -> Token[Tenant | None]:
    """Make `tenant` current without validation; pair with `detach` in a ``finally``."""
    return _current.set(tenant)


def detach(token: Token[Tenant | None]) -> None:
    """Undo the `attach` that returned `token`."""
    _current.reset(token)


def tenant_context(tenant_id: str | None, *, source: str = "manual") -> _TenantContext:
    """A with-block (sync or async) in which `tenant_id` is current; the previous value
    comes back on exit. ``None`` runs the block with no tenant.

    Raises:
        InvalidTenantError: the id is not valid (raised at once, before the block runs).
    """
    tenant = None if tenant_id is None else Tenant(validate_tenant_id(tenant_id), source)
    return _TenantContext(tenant)


class _TenantContext:
    """Both a sync and an async context manager; each use sets and resets once."""

    __slots__ = ("_tenant", "_tokens")

    def __init__(self, tenant: Tenant | None) -> None:
        self._tenant = tenant
        self._tokens: list[Token[Tenant | None]] = []

    def __repr__(self) -> str:
        return f"tenant_context({self._tenant.id if self._tenant else None!r})"

    def __enter__(self) -> str | None:
        self._tokens.append(_current.set(self._tenant))
        return None if self._tenant is None else self._tenant.id

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._tokens.pop())

    async def __aenter__(self) -> str | None:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()
