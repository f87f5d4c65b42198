"""Who may look: the admin token of one ``serve`` process, or a token signed for one tenant.

A tenant token is ``<payload>.<signature>``, both base64url: the payload is JSON
``{"tenant": ..., "exp": ...}`` (seconds since the epoch) and the signature its HMAC-SHA256
under the store's secret. The secret is ``TENANT_TRACE_UI_SECRET``, else a random one kept
beside the store file (``<db>.ui-secret``, mode 0600) and made on first use; deleting that
file revokes every tenant token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...context import validate_tenant_id
from ...errors import ConfigurationError

__all__ = ["SECRET_ENV", "TokenError", "Viewer", "Verifier", "load_secret", "sign", "verify"]

SECRET_ENV = "TENANT_TRACE_UI_SECRET"
_MIN_SECRET = 16
# Signatures of this view's tokens only: the secret may be shared with nothing else.
_CONTEXT = b"tenant-trace ui token v1."


class TokenError(Exception):
    """A token is missing, malformed, tampered with or expired (the message says which)."""


@dataclass(frozen=True)
class Viewer:
    """Who is looking: every tenant (`tenant` is ``None``) or one tenant."""

    tenant: str | None

    def may_see(self, tenant: str | None) -> bool:
        return self.tenant is None or tenant == self.tenant


def secret_path(db: Path) -> Path:
    return db.with_name(db.name + ".ui-secret")


def load_secret(db: Path) -> bytes:
    """``TENANT_TRACE_UI_SECRET``, else the secret beside `db`, made (0600) if there is none.

    Raises:
        ConfigurationError: the variable is too short, or the file can be read by others.
    """
    configured = os.environ.get(SECRET_ENV)
    if configured is not None:
        if len(configured) < _MIN_SECRET:
            raise ConfigurationError(f"{SECRET_ENV} must be at least {_MIN_SECRET} characters")
        return configured.encode()
    path = secret_path(db)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise ConfigurationError(
                f"{path} can be read by other users: chmod 600 it, or delete it to make a new"
                " secret (which revokes every tenant token)"
            ) from None
        return path.read_bytes().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, _CONTEXT + payload.encode(), hashlib.sha256).digest())


def sign(secret: bytes, tenant: str, *, expires: float) -> str:
    """A token that shows `tenant` only, until `expires` (seconds since the epoch)."""
    validate_tenant_id(tenant)
    payload = _b64(json.dumps({"tenant": tenant, "exp": int(expires)}).encode())
    return f"{payload}.{_signature(secret, payload)}"


def verify(secret: bytes, token: str, *, now: float) -> Viewer:
    """The viewer a tenant token is for.

    Raises:
        TokenError: it is malformed, its signature is wrong, or it expired.
    """
    payload, dot, signature = token.partition(".")
    if not dot or not hmac.compare_digest(signature.encode(), _signature(secret, payload).encode()):
        raise TokenError("invalid token")
    try:
        claims = json.loads(_unb64(payload))
        tenant, expires = claims["tenant"], claims["exp"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise TokenError("invalid token") from None
    if not isinstance(tenant, str) or not isinstance(expires, int):
        raise TokenError("invalid token")
    if now >= expires:
        raise TokenError("expired token")
    return Viewer(tenant)


class Verifier:
    """Checks the tokens of one ``serve`` process: its admin token and the store's tenant
    tokens, against `clock` (seconds since the epoch)."""

    __slots__ = ("_admin", "_clock", "_secret")

    def __init__(self, admin_token: str, secret: bytes, clock: Callable[[], float]) -> None:
        self._admin, self._secret, self._clock = admin_token, secret, clock

    def __repr__(self) -> str:
        return "Verifier(...)"

    def __call__(self, token: str | None) -> Viewer:
        if not token:
            raise TokenError("a token is required: open the URL that tenant-trace printed")
        if hmac.compare_digest(token.encode(), self._admin.encode()):
            return Viewer(None)
        return verify(self._secret, token, now=self._clock())
