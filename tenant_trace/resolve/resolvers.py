"""Resolvers: small callables that find the tenant of a request.

A resolver takes a `RequestView` and returns a `Tenant` (id and source), ``None`` when its
source is absent from the request, or raises a `Rejection` when the source is present but
bad. Any callable of that shape works; one that returns a plain string is wrapped by
`as_resolver`. Resolvers that may block (a JWKS fetch) also offer ``aresolve`` so the ASGI
middleware never blocks the event loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable
from urllib.parse import unquote

from ..context import Tenant, check_shape
from ..errors import ConfigurationError, InvalidTenantError, Rejection
from .hosts import normalize_domain, parse_host
from .view import RequestView

__all__ = [
    "BaggageResolver",
    "BaseResolver",
    "ChainResolver",
    "HeaderResolver",
    "PathResolver",
    "Resolver",
    "SubdomainResolver",
    "TrustedHeaderResolver",
    "as_resolver",
    "check_sync",
    "resolve_async",
]


@runtime_checkable
class Resolver(Protocol):
    """``resolver(view) -> Tenant | None``; raises `Rejection` for a bad source."""

    def __call__(self, view: RequestView, /) -> Tenant | None: ...


def checked_tenant(value: object, source: str, where: str) -> Tenant:
    """`value` as a `Tenant` from `source`, or a 400 `Rejection` that says what is wrong
    with its shape (the tenant pattern is the policy's to apply, for every source alike)."""
    try:
        return Tenant(check_shape(value), source)
    except InvalidTenantError as exc:
        raise Rejection(400, "invalid_tenant", f"{where}: {exc}") from None


class BaseResolver:
    """Base of the built-in resolvers; `as_resolver` passes these through unchanged."""

    __slots__ = ()

    def __call__(self, view: RequestView, /) -> Tenant | None:
        raise NotImplementedError


class HeaderResolver(BaseResolver):
    """The tenant from a request header (default ``X-Tenant-ID``).

    Repeated headers, or a comma-joined value as WSGI servers deliver repeats, must agree:
    two different values are a 400, never "first wins".
    """

    __slots__ = ("name", "source")

    def __init__(self, name: str = "X-Tenant-ID", *, source: str = "header") -> None:
        self.name = name
        self.source = source

    def __repr__(self) -> str:
        return f"HeaderResolver({self.name!r})"

    def __call__(self, view: RequestView) -> Tenant | None:
        values = view.get_all(self.name)
        if not values:
            return None
        if len(values) > 1 or "," in values[0]:
            parts = {part.strip() for value in values for part in value.split(",")}
            if len(parts) > 1:
                raise Rejection(
                    400, "duplicate_header", f"{self.name} header has more than one value"
                )
            values = list(parts)
        return checked_tenant(values[0], self.source, f"{self.name} header")


class TrustedHeaderResolver(HeaderResolver):
    """The tenant from the internal header your own services send one another (default
    ``X-Internal-Tenant-ID``, source ``internal``), as `tenant_trace.propagate_httpx` and
    `propagate_requests` write it with ``tenant_header=...``.

    Configure it only on a service that clients cannot reach directly, or behind a gateway
    that strips the header: anywhere else a client could name any tenant. A service without
    it ignores the header.
    """

    __slots__ = ()

    def __init__(self, name: str = "X-Internal-Tenant-ID", *, source: str = "internal") -> None:
        super().__init__(name, source=source)

    def __repr__(self) -> str:
        return f"TrustedHeaderResolver({self.name!r})"

    def __call__(self, view: RequestView) -> Tenant | None:
        values = view.get_all(self.name)
        if not values:
            return None
        if len(values) > 1 or "," in values[0]:
            raise Rejection(400, "duplicate_header", f"{self.name} header has more than one value")
        # Percent-encoded by the sender (`tenant_trace.inject`), as W3C baggage values are.
        return checked_tenant(_percent_decoded(values[0], self.name), self.source, self.name)


def _percent_decoded(value: str, where: str) -> str:
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise Rejection(400, "invalid_tenant", f"{where}: not UTF-8") from None


class BaggageResolver(BaseResolver):
    """The tenant from an entry of the W3C ``baggage`` header (default ``tenant.id``).

    Off unless configured: baggage travels through every hop, so any client or proxy on the
    way can set it. Use it only where every caller is a service you trust to set it. Repeated
    entries with different values are a 400, never "first wins".
    """

    __slots__ = ("key", "source")

    def __init__(self, key: str = "tenant.id", *, source: str = "baggage") -> None:
        if not key or any(c in key for c in " ,;=\t"):
            raise ConfigurationError(f"invalid baggage key {key!r}")
        self.key = key
        self.source = source

    def __repr__(self) -> str:
        return f"BaggageResolver({self.key!r})"

    def __call__(self, view: RequestView) -> Tenant | None:
        found = set()
        for header in view.get_all("baggage"):
            for member in header.split(","):
                name, sep, value = member.partition(";")[0].partition("=")
                if sep and name.strip() == self.key:
                    found.add(_percent_decoded(value.strip(), f"baggage {self.key}"))
        if not found:
            return None
        if len(found) > 1:
            raise Rejection(400, "duplicate_header", f"baggage has more than one {self.key}")
        return checked_tenant(found.pop(), self.source, f"baggage {self.key}")


class SubdomainResolver(BaseResolver):
    """The tenant from the one label under a configured base domain.

    ``acme.example.com`` gives ``acme``. The host is lower-cased, stripped of port and
    trailing dot, and converted to punycode. A host outside the base domains (``localhost``,
    an IP address) gives no tenant, so another source may still resolve the request; a
    malformed Host header, or an empty, invalid or nested label under a base domain, is a 400.

    Args:
        base_domains: one domain or several (``"example.com"``).
        trust_forwarded_host: read ``X-Forwarded-Host`` (its last value, the one the nearest
            proxy set) instead of ``Host``; only behind a proxy that sets it.
        ignore: labels that are not tenants (``"www"``, ``"api"``).
    """

    __slots__ = ("_suffixes", "ignore", "source", "trust_forwarded_host")

    def __init__(
        self,
        base_domains: str | Iterable[str],
        *,
        trust_forwarded_host: bool = False,
        ignore: Iterable[str] = (),
        source: str = "subdomain",
    ) -> None:
        domains = [base_domains] if isinstance(base_domains, str) else list(base_domains)
        if not domains:
            raise ConfigurationError("SubdomainResolver needs at least one base domain")
        try:
            suffixes = {"." + normalize_domain(d) for d in domains}
        except Rejection as exc:
            raise ConfigurationError(f"invalid base domain: {exc.detail}") from None
        # Longest first: with example.com and eu.example.com, acme.eu.example.com is "acme".
        self._suffixes = tuple(sorted(suffixes, key=len, reverse=True))
        self.trust_forwarded_host = trust_forwarded_host
        self.ignore = frozenset(label.lower() for label in ignore)
        self.source = source

    def __repr__(self) -> str:
        return f"SubdomainResolver({[s[1:] for s in self._suffixes]!r})"

    def __call__(self, view: RequestView) -> Tenant | None:
        forwarded = view.get_all("x-forwarded-host") if self.trust_forwarded_host else None
        hosts = [forwarded[-1].split(",")[-1].strip()] if forwarded else view.get_all("host")
        if not hosts:
            return None
        if len(set(hosts)) > 1:
            raise Rejection(400, "invalid_host", "Host header has more than one value")
        parsed = parse_host(hosts[0])
        if parsed.is_ip or "." + parsed.name in self._suffixes:
            return None
        for suffix in self._suffixes:
            if parsed.name.endswith(suffix):
                label = parsed.name[: -len(suffix)]
                if "." in label:
                    raise Rejection(
                        400,
                        "invalid_host",
                        "Host header has more than one label under the base domain",
                    )
                if label in self.ignore:
                    return None
                return checked_tenant(_unicode_label(label), self.source, "subdomain")
        return None


def _unicode_label(label: str) -> str:
    """A punycode label in the Unicode form other sources carry (``xn--caf-dma``: ``café``)."""
    if not label.startswith("xn--"):
        return label
    try:
        return label.encode("ascii").decode("idna")
    except UnicodeError:
        raise Rejection(400, "invalid_host", "Host header has an invalid punycode label") from None


class PathResolver(BaseResolver):
    """The tenant from the path segment after a prefix: ``/t/{tenant}/...``."""

    __slots__ = ("prefix", "source")

    def __init__(self, prefix: str = "/t/", *, source: str = "path") -> None:
        if not (prefix.startswith("/") and prefix.endswith("/")):
            raise ConfigurationError("PathResolver prefix must start and end with '/'")
        self.prefix = prefix
        self.source = source

    def __repr__(self) -> str:
        return f"PathResolver({self.prefix!r})"

    def __call__(self, view: RequestView) -> Tenant | None:
        if not view.path.startswith(self.prefix):
            return None
        segment = view.path[len(self.prefix) :].partition("/")[0]
        return checked_tenant(segment, self.source, "path")


class _CallableResolver:
    """Wraps a user function that may return a string, a `Tenant` or ``None``; an
    ``async def`` one is awaited by the ASGI middleware and refused by a WSGI one."""

    __slots__ = ("func", "source")

    def __init__(self, func: Callable[[RequestView], object], source: str) -> None:
        self.func = func
        self.source = source

    def __repr__(self) -> str:
        return f"as_resolver({self.func!r})"

    def __call__(self, view: RequestView) -> Tenant | None:
        result = self.func(view)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited, and not to be warned about as such
            raise ConfigurationError(_sync_only(self.func))
        return self._tenant(result)

    async def aresolve(self, view: RequestView) -> Tenant | None:
        result = self.func(view)
        if inspect.isawaitable(result):
            result = await result
        return self._tenant(result)

    def _tenant(self, result: object) -> Tenant | None:
        if result is None:
            return None
        if isinstance(result, Tenant):
            return checked_tenant(result.id, result.source, self.source)
        return checked_tenant(result, self.source, self.source)


def _sync_only(func: object) -> str:
    return (
        f"the resolver {func!r} is async, and this server is not: a WSGI app cannot await "
        "it. Make it a plain function, or serve the app with ASGI"
    )


def check_sync(resolver: object) -> None:
    """Raise `ConfigurationError` when `resolver`, or a source of a chain, is an
    ``async def`` function that a WSGI server would have to await."""
    if isinstance(resolver, ChainResolver):
        for source in resolver.resolvers:
            check_sync(source)
    elif isinstance(resolver, _CallableResolver):
        func = resolver.func
        call = getattr(func, "__call__", None)  # noqa: B004 (an instance's async __call__)
        if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call):
            raise ConfigurationError(_sync_only(func))


def as_resolver(func: Callable[[RequestView], object], *, source: str = "custom") -> Resolver:
    """Turn any function ``view -> str | Tenant | None`` (or an ``async def`` one, for
    ASGI servers) into a resolver."""
    if isinstance(func, BaseResolver):
        return func
    return _CallableResolver(func, source)


async def resolve_async(resolver: Resolver, view: RequestView) -> Tenant | None:
    """Run `resolver` from async code: its ``aresolve`` when it has one, else the call."""
    aresolve = getattr(resolver, "aresolve", None)
    if aresolve is not None:
        result: Tenant | None = await aresolve(view)
        return result
    return resolver(view)


class ChainResolver(BaseResolver):
    """Evaluates every source and rejects with 403 when two of them name different tenants.

    A source that is present but bad rejects the request even when another source would
    have resolved it; agreeing sources resolve with the source of the first.
    """

    __slots__ = ("resolvers",)

    def __init__(self, *resolvers: Resolver | Callable[[RequestView], object]) -> None:
        if not resolvers:
            raise ConfigurationError("ChainResolver needs at least one resolver")
        self.resolvers: Sequence[Resolver] = tuple(as_resolver(r) for r in resolvers)

    def __repr__(self) -> str:
        return f"ChainResolver{tuple(self.resolvers)!r}"

    def __call__(self, view: RequestView) -> Tenant | None:
        return _agree([r(view) for r in self.resolvers])

    async def aresolve(self, view: RequestView) -> Tenant | None:
        return _agree([await resolve_async(r, view) for r in self.resolvers])


def _agree(results: list[Tenant | None]) -> Tenant | None:
    found = [r for r in results if r is not None]
    if not found:
        return None
    if any(r.id != found[0].id for r in found[1:]):
        sources = ", ".join(sorted({r.source for r in found}))
        raise Rejection(403, "tenant_conflict", f"tenant sources disagree ({sources})")
    return found[0]
