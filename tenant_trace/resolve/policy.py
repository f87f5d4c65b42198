"""Policy: what a resolution means for the request.

`TenantPolicy` runs the resolver and decides, once for every framework, whether the request
goes on (with a tenant or, when allowed, without one) or is refused with a `Rejection`.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypedDict

from ..context import Tenant, check_pattern, validate_tenant_id
from ..errors import (
    ConfigurationError,
    InvalidTenantError,
    OptionNameError,
    Rejection,
    missing_tenant,
)
from .resolvers import (
    BaggageResolver,
    ChainResolver,
    HeaderResolver,
    PathResolver,
    Resolver,
    SubdomainResolver,
    TrustedHeaderResolver,
    as_resolver,
    resolve_async,
)
from .view import RequestView

__all__ = ["POLICY_OPTIONS", "PolicyOptions", "TenantPolicy", "build_policy", "unknown_options"]


class PolicyOptions(TypedDict, total=False):
    """The keyword options of `build_policy`, as every middleware, Django's ``TENANT_TRACE``
    and Flask's ``TENANT_TRACE_*`` config keys take them."""

    policy: TenantPolicy
    resolver: object
    header: str
    jwt: Mapping[str, Any]
    subdomain: str | Sequence[str] | Mapping[str, Any]
    path_prefix: str
    trusted_internal_header: str
    baggage_key: str
    required: bool
    default: str
    allowed: Iterable[str] | Callable[[str], bool]
    pattern: str | re.Pattern[str]
    exclude_paths: Iterable[str]


#: The names of `PolicyOptions`.
POLICY_OPTIONS = tuple(PolicyOptions.__annotations__)

logger = logging.getLogger("tenant_trace")


class TenantPolicy:
    """How requests are resolved to tenants.

    Args:
        resolver: a resolver or any function ``view -> str | Tenant | None``; defaults to the
            ``X-Tenant-ID`` header.
        required: refuse requests without a tenant with 401 (default: required unless a
            `default` is given).
        default: the tenant of requests that carry none (source ``default``). Never used when
            a credential is present but bad: that is always a rejection.
        allowed: the tenants accepted, as a collection or a predicate; others get 403.
        pattern: a regular expression every tenant id must match in full, whatever its
            source (else 400 ``invalid_tenant``); default: ``init(tenant_pattern=...)``.
        exclude_paths: paths neither resolved nor traced (health checks); an entry ending in
            ``*`` is a prefix.
    """

    __slots__ = (
        "_allowed",
        "_exact",
        "_prefixes",
        "allowed_ids",
        "default",
        "pattern",
        "required",
        "resolver",
    )

    def __init__(
        self,
        resolver: Resolver | Callable[[RequestView], object] | None = None,
        *,
        required: bool | None = None,
        default: str | None = None,
        allowed: Iterable[str] | Callable[[str], bool] | None = None,
        pattern: str | re.Pattern[str] | None = None,
        exclude_paths: Iterable[str] = (),
    ) -> None:
        if resolver is not None and not callable(resolver):
            raise ConfigurationError(
                f"the resolver must be callable, not {type(resolver).__name__}"
            )
        self.resolver: Resolver = HeaderResolver() if resolver is None else as_resolver(resolver)
        if required is not None and not isinstance(required, bool):
            raise ConfigurationError("required must be True or False")
        if required and default is not None:
            raise ConfigurationError("a default tenant makes no sense when a tenant is required")
        self.required = default is None if required is None else required
        try:
            self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        except re.error as exc:
            raise ConfigurationError(f"invalid tenant pattern: {exc}") from None
        try:
            self.default = (
                None
                if default is None
                else Tenant(validate_tenant_id(default, self.pattern), "default")
            )
        except InvalidTenantError as exc:
            raise ConfigurationError(f"invalid default tenant: {exc}") from None
        # A string is iterable: allowed="acme" would allow "a", "c", "m" and "e".
        if isinstance(allowed, str) or isinstance(exclude_paths, str):
            name = "allowed" if isinstance(allowed, str) else "exclude_paths"
            raise ConfigurationError(f"{name} must be a collection, not a string")
        #: The allowed tenant ids, when given as a collection (metrics always keep them).
        self.allowed_ids: frozenset[str] = frozenset()
        if allowed is None or callable(allowed):
            self._allowed = allowed
        else:
            self.allowed_ids = frozenset(allowed)
            self._allowed = self.allowed_ids.__contains__
        paths = list(exclude_paths)
        self._exact = frozenset(p for p in paths if not p.endswith("*"))
        self._prefixes = tuple(p[:-1] for p in paths if p.endswith("*"))

    def __repr__(self) -> str:
        return f"TenantPolicy({self.resolver!r}, required={self.required})"

    def is_excluded(self, path: str) -> bool:
        """Whether requests to `path` bypass tenant-trace entirely."""
        return path in self._exact or (bool(self._prefixes) and path.startswith(self._prefixes))

    def resolve(self, view: RequestView) -> Tenant | None:
        """The tenant of the request (``None``: go on without one), or raise `Rejection`."""
        try:
            return self._decide(self.resolver(view))
        except Rejection:
            raise
        except Exception as exc:
            raise _resolver_failed(exc) from None

    async def aresolve(self, view: RequestView) -> Tenant | None:
        """`resolve` for async servers: blocking resolver work runs off the event loop."""
        try:
            return self._decide(await resolve_async(self.resolver, view))
        except Rejection:
            raise
        except Exception as exc:
            raise _resolver_failed(exc) from None

    def _decide(self, found: Tenant | None) -> Tenant | None:
        if found is None:
            if self.required:
                raise missing_tenant()
            return self.default
        try:
            check_pattern(found.id, self.pattern)
        except InvalidTenantError as exc:
            raise Rejection(400, "invalid_tenant", str(exc)) from None
        if self._allowed is not None and not self._allowed(found.id):
            raise Rejection(403, "tenant_not_allowed", "this tenant is not allowed here")
        return found


def _resolver_failed(exc: Exception) -> Rejection:
    # A bug in a custom resolver: the application keeps running, and the request is refused
    # rather than served with the wrong tenant or none.
    logger.error("tenant_trace: the tenant resolver raised", exc_info=exc)
    return Rejection(503, "tenant_resolution_failed", "the tenant could not be resolved")


def build_policy(
    policy: TenantPolicy | None = None,
    *,
    resolver: object = None,
    header: str | None = None,
    jwt: Mapping[str, Any] | None = None,
    subdomain: str | Sequence[str] | Mapping[str, Any] | None = None,
    path_prefix: str | None = None,
    trusted_internal_header: str | None = None,
    baggage_key: str | None = None,
    **options: Any,
) -> TenantPolicy:
    """A `TenantPolicy` from keyword options, as the middleware and settings take them.

    The sources named (`header`, `jwt`, `subdomain`, `path_prefix`, `trusted_internal_header`,
    `baggage_key`, `resolver`) are chained, so requests whose sources disagree are refused;
    with none, the ``X-Tenant-ID`` header.

    Args:
        policy: a ready policy; then no other option may be given.
        resolver: a resolver, a function, a dotted import path to one, or a list of those.
        header: the name of a tenant header.
        jwt: `JWTResolver` keyword arguments.
        subdomain: base domain(s), or `SubdomainResolver` keyword arguments.
        path_prefix: the `PathResolver` prefix (``"/t/"``).
        trusted_internal_header: the internal header your own services send the tenant in
            (`TrustedHeaderResolver`); only on services that clients cannot reach directly.
        baggage_key: the W3C baggage entry to read the tenant from (`BaggageResolver`);
            off by default, since any client can send baggage.
        **options: the other `TenantPolicy` arguments.
    """
    if policy is not None:
        given = (resolver, header, jwt, subdomain, path_prefix, trusted_internal_header)
        if options or baggage_key is not None or any(g is not None for g in given):
            raise ConfigurationError("give either policy= or policy options, not both")
        return policy
    unknown = sorted(set(options) - set(POLICY_OPTIONS))
    if unknown:
        raise OptionNameError(unknown_options(unknown, POLICY_OPTIONS))
    sources: list[Any] = []
    if resolver is not None:
        resolvers = resolver if isinstance(resolver, (list, tuple)) else [resolver]
        sources += [_load(r) for r in resolvers]
    try:  # a wrong argument inside a source's options (jwt={...}) is a TypeError here
        if header is not None:
            sources.append(HeaderResolver(header))
        if jwt is not None:
            from .jwt import JWTResolver

            sources.append(JWTResolver(**jwt))
        if subdomain is not None:
            kwargs = (
                dict(subdomain) if isinstance(subdomain, Mapping) else {"base_domains": subdomain}
            )
            sources.append(SubdomainResolver(**kwargs))
    except TypeError as exc:
        raise ConfigurationError(f"invalid tenant-trace option: {exc}") from None
    if path_prefix is not None:
        sources.append(PathResolver(path_prefix))
    if trusted_internal_header is not None:
        sources.append(TrustedHeaderResolver(trusted_internal_header))
    if baggage_key is not None:
        sources.append(BaggageResolver(baggage_key))
    chosen = None if not sources else sources[0] if len(sources) == 1 else ChainResolver(*sources)
    return TenantPolicy(chosen, **options)


def unknown_options(unknown: Iterable[str], known: Iterable[str], what: str = "option") -> str:
    """The message for misspelt options (or settings): each with its likely meaning, then
    the valid ones."""
    known = sorted(known)
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(str(name), known, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"unknown tenant-trace {what} {', '.join(parts)}; the {what}s are {', '.join(known)}"


def _load(resolver: object) -> Any:
    """A resolver given as a dotted path (``"myapp.tenants.resolve"``) is imported."""
    if not isinstance(resolver, str):
        return resolver
    module, _, name = resolver.rpartition(".")
    try:
        loaded = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(f"cannot import the resolver {resolver!r}: {exc}") from None
    if not callable(loaded):
        raise ConfigurationError(f"the resolver {resolver!r} is not callable")
    return loaded
