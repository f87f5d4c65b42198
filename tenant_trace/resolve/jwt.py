"""Tenant from a verified JWT claim (PyJWT).

Algorithms come from configuration, never from the token. Keys are a static secret or
public key, or a JWKS URL read through PyJWT's `PyJWKClient` with a cache, a lifespan and a
cooldown after failures, so a dead key server costs at most one fetch per cooldown, and the
ASGI middleware fetches off the event loop. Verified tokens are cached (bounded, keyed by
the whole token) and every hit re-checks ``exp`` and ``nbf``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jwt
from jwt.algorithms import get_default_algorithms, has_crypto

from ..context import Tenant, check_shape
from ..errors import ConfigurationError, InvalidTenantError, MissingDependencyError, Rejection
from .resolvers import BaseResolver
from .view import RequestView

__all__ = ["JWTResolver"]

logger = logging.getLogger("tenant_trace")

_CHALLENGE = (("www-authenticate", 'Bearer error="invalid_token"'),)
_DETAILS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token has expired"),
    (jwt.ImmatureSignatureError, "token is not valid yet"),
    (jwt.InvalidAudienceError, "token audience is not accepted"),
    (jwt.InvalidIssuerError, "token issuer is not accepted"),
    (jwt.InvalidAlgorithmError, "token algorithm is not allowed"),
    (jwt.InvalidSignatureError, "token signature is invalid"),
    (jwt.MissingRequiredClaimError, "token is missing a required claim"),
    (jwt.InvalidIssuedAtError, "token issued-at claim is invalid"),
    (jwt.DecodeError, "token is malformed"),
)


def invalid_token(detail: str, code: str = "invalid_token") -> Rejection:
    return Rejection(401, code, detail, _CHALLENGE)


class _Verified(NamedTuple):
    tenant: Tenant
    exp: float
    nbf: float
    who: dict[str, str]


class _KeySet:
    """Signing keys from a JWKS URL, refreshed on an unknown ``kid`` or after `lifespan`,
    with at most one fetch per `cooldown` whatever the outcome."""

    def __init__(
        self,
        url: str,
        *,
        lifespan: float,
        cooldown: float,
        timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=timeout)
        self.url = url
        self.lifespan = lifespan
        self.cooldown = cooldown
        self._clock = clock
        self._keys: dict[str | None, Any] = {}
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._failed = False
        self._lock = threading.Lock()

    def needs_fetch(self, kid: str | None) -> bool:
        now = self._clock()
        wanted = kid not in self._keys or now - self._fetched_at > self.lifespan
        return wanted and now - self._attempted_at >= self.cooldown

    def fetch(self, kid: str | None) -> None:
        with self._lock:
            if not self.needs_fetch(kid):  # another thread fetched while this one waited
                return
            self._attempted_at = self._clock()
            try:
                keys = self._client.get_signing_keys(refresh=True)
            except Exception as exc:  # unreachable, or an answer that is not a usable key set
                self._failed = True
                logger.warning("tenant_trace: JWKS fetch from %s failed: %s", self.url, exc)
                return
            found: dict[str | None, Any] = {k.key_id: k.key for k in keys}
            if len(keys) == 1:
                found.setdefault(None, keys[0].key)
            self._keys, self._fetched_at, self._failed = found, self._attempted_at, False

    def key(self, kid: str | None, *, fetch: bool = True) -> Any:
        if fetch and self.needs_fetch(kid):
            self.fetch(kid)
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._failed:
            raise Rejection(
                503, "key_server_unavailable", "the token signing keys cannot be fetched"
            )
        raise invalid_token("token is signed with an unknown key")


class JWTResolver(BaseResolver):
    """The tenant from a claim of a verified JWT.

    Args:
        key: the HMAC secret or public key (PEM or key object); or give `jwks_url`.
        jwks_url: a JWKS endpoint whose keys verify the tokens (by ``kid``).
        algorithms: the accepted algorithms, e.g. ``["RS256"]``; never taken from the token.
        claim: the claim holding the tenant id; dots address nested claims (``"org.id"``).
        audience: the accepted ``aud``; issuer: the exact accepted ``iss``.
        leeway: seconds of clock skew allowed on ``exp``/``nbf``/``iat``.
        required_claims: claims that must be present besides the tenant claim.
        header: the header carrying the token; `scheme` its prefix (``None``: whole value).
        cookie: read the token from this cookie instead of a header.
        user_claim, session_claim: claims (``"sub"``) whose string values become the
            request's ``user.id`` and ``session.id`` (see `tenant_trace.identity`).
        cache_size: how many verified tokens to remember (0 disables the cache).
        max_token_length: longer tokens are rejected unread.
        clock: monotonic seconds, for the JWKS lifespan and cooldown (a test passes a fake).
        wall_clock: seconds since the epoch, for re-checking ``exp`` and ``nbf`` of a cached
            token (PyJWT checks a new token against the real time).
    """

    def __init__(
        self,
        *,
        key: Any = None,
        jwks_url: str | None = None,
        algorithms: Sequence[str],
        claim: str = "tenant_id",
        audience: str | Iterable[str] | None = None,
        issuer: str | None = None,
        leeway: float = 0,
        required_claims: Iterable[str] = ("exp",),
        header: str = "Authorization",
        scheme: str | None = "Bearer",
        cookie: str | None = None,
        user_claim: str | None = None,
        session_claim: str | None = None,
        cache_size: int = 1024,
        max_token_length: int = 8192,
        jwks_lifespan: float = 300,
        jwks_cooldown: float = 30,
        jwks_timeout: float = 5,
        source: str = "jwt",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if (key is None) == (jwks_url is None):
            raise ConfigurationError("JWTResolver needs exactly one of key= and jwks_url=")
        self.algorithms = _check_algorithms(algorithms, jwks=jwks_url is not None)
        self._claim_path = tuple(claim.split("."))
        self.claim = claim
        self.audience = (
            audience if audience is None or isinstance(audience, str) else list(audience)
        )
        self.issuer = issuer
        self.leeway = leeway
        self._options: dict[str, Any] = {
            "require": sorted({*required_claims, self._claim_path[0]}),
            "verify_aud": audience is not None,
        }
        self.header = header
        self.scheme = scheme.lower() if scheme else None
        self.cookie = cookie
        self._who = {"user_id": user_claim, "session_id": session_claim}
        self.source = source
        self.max_token_length = max_token_length
        self.cache_size = cache_size
        self._cache: dict[str, _Verified] = {}
        self._cache_lock = threading.Lock()
        self._wall_clock = wall_clock
        self._keys = (
            _KeySet(
                jwks_url,
                lifespan=jwks_lifespan,
                cooldown=jwks_cooldown,
                timeout=jwks_timeout,
                clock=clock,
            )
            if jwks_url is not None
            else None
        )
        self._key = None if key is None else _prepare_key(key, self.algorithms)

    def __repr__(self) -> str:
        where = self._keys.url if self._keys else "static key"
        return f"JWTResolver(claim={self.claim!r}, algorithms={self.algorithms!r}, {where})"

    def token(self, view: RequestView) -> str | None:
        """The raw token of the request, or ``None`` when it carries none."""
        if self.cookie is not None:
            return view.cookie(self.cookie)
        values = view.get_all(self.header)
        if not values:
            return None
        if len(set(values)) > 1:
            raise Rejection(
                400, "duplicate_header", f"{self.header} header has more than one value"
            )
        value = values[0].strip()
        if self.scheme is None:
            return value
        scheme, _, token = value.partition(" ")
        if scheme.lower() != self.scheme:
            return None  # another scheme (Basic, ...) is not this resolver's credential
        return token.strip()

    def __call__(self, view: RequestView) -> Tenant | None:
        token = self.token(view)
        return None if token is None else self._found(view, self._verify(token, fetch=True))

    async def aresolve(self, view: RequestView) -> Tenant | None:
        """Like calling the resolver, but a JWKS fetch runs in a worker thread."""
        token = self.token(view)
        if token is None:
            return None
        checkable = 0 < len(token) <= self.max_token_length  # else _verify refuses it unread
        if self._keys is not None and checkable and token not in self._cache:
            kid = _kid(token)
            if self._keys.needs_fetch(kid):
                await asyncio.to_thread(self._keys.fetch, kid)
        # Never fetch here, on the loop, even if the cooldown has already run out again.
        return self._found(view, self._verify(token, fetch=False))

    def verify(self, token: str) -> Tenant:
        """The tenant of a token, or a `Rejection` (401, or 503 when keys are unreachable)."""
        return self._verify(token, fetch=True).tenant

    @staticmethod
    def _found(view: RequestView, verified: _Verified) -> Tenant:
        view.identity.update(verified.who)
        return verified.tenant

    def _verify(self, token: str, *, fetch: bool) -> _Verified:
        hit = self._cache.get(token)
        if hit is not None:
            now = self._wall_clock()
            if now > hit.exp + self.leeway:
                self._cache.pop(token, None)
                raise invalid_token("token has expired", "expired_token")
            if now < hit.nbf - self.leeway:
                raise invalid_token("token is not valid yet")
            return hit
        if not token:
            raise invalid_token("token is empty")
        if len(token) > self.max_token_length:
            raise invalid_token("token is too large")
        key: Any = self._key if self._keys is None else self._keys.key(_kid(token), fetch=fetch)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options=self._options,  # type: ignore[arg-type]
            )
        except jwt.ExpiredSignatureError:
            raise invalid_token("token has expired", "expired_token") from None
        except Exception as exc:  # PyJWT or a key library: any failure is a bad token
            raise invalid_token(_detail(exc)) from None
        tenant = Tenant(self._tenant_id(claims), self.source)
        who = {
            k: v
            for k, claim in self._who.items()
            if claim and isinstance(v := claims.get(claim), str)
        }
        verified = _Verified(
            tenant,
            _number(claims.get("exp"), math.inf),
            _number(claims.get("nbf"), -math.inf),
            who,
        )
        self._remember(token, verified)
        return verified

    def _tenant_id(self, claims: dict[str, Any]) -> str:
        value: Any = claims
        for part in self._claim_path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            raise invalid_token(f"token has no {self.claim!r} claim")
        try:
            return check_shape(value)
        except InvalidTenantError as exc:
            raise invalid_token(f"token claim {self.claim!r}: {exc}") from None

    def _remember(self, token: str, entry: _Verified) -> None:
        if self.cache_size <= 0:
            return
        with self._cache_lock:
            while len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[token] = entry


def _number(value: Any, default: float) -> float:
    """A date claim PyJWT has accepted, read as PyJWT reads it (whole seconds, any size)."""
    if value is None:
        return default
    seconds = int(value)
    try:
        return float(seconds)
    except OverflowError:  # exp = 10**400 is valid JSON and a valid (if odd) token
        return math.inf if seconds > 0 else -math.inf


def _kid(token: str) -> str | None:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except Exception:
        raise invalid_token("token is malformed") from None
    return kid if isinstance(kid, str) else None


def _detail(exc: Exception) -> str:
    for cls, detail in _DETAILS:
        if isinstance(exc, cls):
            return detail
    return "token is invalid"


def _check_algorithms(algorithms: Sequence[str], *, jwks: bool) -> list[str]:
    if isinstance(algorithms, str) or not algorithms:
        raise ConfigurationError("algorithms must be a non-empty list, e.g. ['RS256']")
    known = get_default_algorithms()
    for alg in algorithms:
        if alg.lower() == "none":
            raise ConfigurationError("the 'none' algorithm is never accepted")
        if alg not in known:
            if not has_crypto and alg[:2] in ("RS", "PS", "ES", "Ed"):
                raise MissingDependencyError("cryptography", "crypto")
            raise ConfigurationError(f"unknown JWT algorithm {alg!r}")
    hmac = {alg.startswith("HS") for alg in algorithms}
    if len(hmac) > 1:
        raise ConfigurationError("do not mix HMAC (HS*) and public-key algorithms for one key")
    if jwks and True in hmac:
        raise ConfigurationError("HMAC (HS*) algorithms cannot be used with a JWKS URL")
    return list(algorithms)


def _prepare_key(key: Any, algorithms: list[str]) -> Any:
    """Parse a PEM or secret once, not on every request."""
    try:
        return get_default_algorithms()[algorithms[0]].prepare_key(key)
    except Exception as exc:
        raise ConfigurationError(f"the key does not suit {algorithms[0]}: {exc}") from None
