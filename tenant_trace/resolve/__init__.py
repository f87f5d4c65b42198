"""Where the tenant comes from: the request view, resolvers (header, JWT and JWKS,
subdomain, path, trusted header, baggage, any function), host parsing, and the policy that
turns a resolution into a tenant or a `Rejection`."""

from .jwt import JWTResolver
from .policy import POLICY_OPTIONS, PolicyOptions, TenantPolicy, build_policy
from .resolvers import (
    BaggageResolver,
    BaseResolver,
    ChainResolver,
    HeaderResolver,
    PathResolver,
    Resolver,
    SubdomainResolver,
    TrustedHeaderResolver,
    as_resolver,
)
from .view import RequestView

__all__ = [
    "POLICY_OPTIONS",
    "BaggageResolver",
    "BaseResolver",
    "ChainResolver",
    "HeaderResolver",
    "JWTResolver",
    "PathResolver",
    "PolicyOptions",
    "RequestView",
    "Resolver",
    "SubdomainResolver",
    "TenantPolicy",
    "TrustedHeaderResolver",
    "as_resolver",
    "build_policy",
]
