"""TenantPolicy and build_policy: what a resolution means for the request."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import jwt
import pytest

from tenant_trace import (
    ChainResolver,
    ConfigurationError,
    HeaderResolver,
    JWTResolver,
    PathResolver,
    Rejection,
    RequestView,
    SubdomainResolver,
    Tenant,
    TenantPolicy,
)
from tenant_trace.resolve.policy import build_policy

SECRET = "policy-tests-hmac-secret-of-32-bytes!!"


def tenant_header(value: str) -> RequestView:
    return RequestView(headers=[("X-Tenant-ID", value)])


def rejected(policy: TenantPolicy, request: RequestView) -> Rejection:
    with pytest.raises(Rejection) as info:
        policy.resolve(request)
    return info.value


def resolve_from_query(request: RequestView) -> str | None:
    """Used by dotted-path tests: tenant=<id> in the query string."""
    key, _, value = request.query.partition("=")
    return value if key == "tenant" else None


# -- required, optional, default ----------------------------------------------------------


def test_required_by_default_and_the_rejection_is_a_json_401() -> None:
    policy = TenantPolicy()
    assert policy.required
    assert policy.resolve(tenant_header("acme")) == Tenant("acme", "header")
    exc = rejected(policy, RequestView())
    assert (exc.status, exc.code) == (401, "missing_tenant")
    assert json.loads(exc.body()) == {"error": "missing_tenant", "detail": exc.detail}
    assert ("content-type", "application/json") in exc.response_headers()


def test_optional_lets_requests_without_a_tenant_through() -> None:
    policy = TenantPolicy(required=False)
    assert policy.resolve(RequestView()) is None
    assert policy.resolve(tenant_header("acme")) == Tenant("acme", "header")


def test_a_default_tenant_has_the_source_default() -> None:
    policy = TenantPolicy(default="anonymous")
    assert not policy.required
    assert policy.resolve(RequestView()) == Tenant("anonymous", "default")
    assert policy.resolve(tenant_header("acme")) == Tenant("acme", "header")


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(tenant_header(""), id="empty-header"),
        pytest.param(tenant_header("a\r\nb"), id="crlf-header"),
        pytest.param(
            RequestView(headers=[("X-Tenant-ID", "a"), ("X-Tenant-ID", "b")]), id="two-headers"
        ),
    ],
)
def test_a_bad_credential_never_falls_back_to_the_default(request_: RequestView) -> None:
    assert rejected(TenantPolicy(default="anonymous"), request_).status == 400


def test_a_bad_token_never_falls_back_to_the_default() -> None:
    policy = TenantPolicy(JWTResolver(key=SECRET, algorithms=["HS256"]), default="anonymous")
    exc = rejected(policy, RequestView(headers=[("Authorization", "Bearer x.y.z")]))
    assert exc.status == 401


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"required": True, "default": "anonymous"}, "default", id="default+required"),
        pytest.param({"default": "bad\nid"}, "default", id="invalid-default"),
        pytest.param({"default": "ANON", "pattern": "[a-z]+"}, "pattern", id="default-vs-pattern"),
        pytest.param({"allowed": "acme"}, "allowed", id="allowed-as-a-string"),
        pytest.param({"exclude_paths": "/health"}, "exclude_paths", id="paths-as-a-string"),
        pytest.param({"required": "False"}, "required", id="required-as-a-string"),
        pytest.param({"pattern": "("}, "pattern", id="bad-regex"),
        pytest.param({"resolver": 42}, "callable", id="resolver-not-callable"),
    ],
)
def test_contradictory_options_are_configuration_errors(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        TenantPolicy(**kwargs)
    assert isinstance(info.value, ValueError)


# -- allowed and pattern ------------------------------------------------------------------


@pytest.mark.parametrize(
    "allowed",
    [
        pytest.param({"acme", "globex"}, id="set"),
        pytest.param(["acme", "globex"], id="list"),
        pytest.param(lambda t: t in ("acme", "globex"), id="predicate"),
    ],
)
def test_allowed_tenants(allowed: Any) -> None:
    policy = TenantPolicy(allowed=allowed)
    assert policy.resolve(tenant_header("globex")) == Tenant("globex", "header")
    exc = rejected(policy, tenant_header("initech"))
    assert (exc.status, exc.code) == (403, "tenant_not_allowed")
    assert "initech" not in exc.detail


def test_a_raising_predicate_refuses_with_503() -> None:
    def check(tenant: str) -> bool:
        raise RuntimeError("directory down")

    exc = rejected(TenantPolicy(allowed=check), tenant_header("acme"))
    assert (exc.status, exc.code) == (503, "tenant_resolution_failed")


@pytest.mark.parametrize("pattern", [r"org_[0-9]+", re.compile(r"org_[0-9]+")], ids=["str", "re"])
def test_pattern(pattern: str | re.Pattern[str]) -> None:
    policy = TenantPolicy(pattern=pattern)
    assert policy.resolve(tenant_header("org_42")) == Tenant("org_42", "header")
    for bad in ("org_x", "org_42x", "xorg_42"):
        exc = rejected(policy, tenant_header(bad))
        assert (exc.status, exc.code) == (400, "invalid_tenant")


# -- excluded paths -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        pytest.param("/health", True, id="exact"),
        pytest.param("/health/", False, id="exact-is-exact"),
        pytest.param("/healthz", False, id="exact-not-prefix"),
        pytest.param("/metrics", True, id="prefix-itself"),
        pytest.param("/metrics/cpu", True, id="prefix-child"),
        pytest.param("/static/app.js", True, id="prefix-file"),
        pytest.param("/", False, id="root"),
        pytest.param("/api/health", False, id="elsewhere"),
    ],
)
def test_exclude_paths(path: str, excluded: bool) -> None:
    policy = TenantPolicy(exclude_paths=["/health", "/metrics*", "/static/*"])
    assert policy.is_excluded(path) is excluded


def test_no_excluded_paths_by_default() -> None:
    assert not TenantPolicy().is_excluded("/health")


# -- async --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_aresolve_decides_like_resolve() -> None:
    policy = TenantPolicy(allowed={"acme"})
    assert await policy.aresolve(tenant_header("acme")) == Tenant("acme", "header")
    with pytest.raises(Rejection) as info:
        await policy.aresolve(tenant_header("globex"))
    assert info.value.status == 403
    with pytest.raises(Rejection) as info:
        await TenantPolicy(lambda r: 1 / 0).aresolve(RequestView())
    assert info.value.status == 503


# -- build_policy -------------------------------------------------------------------------


def test_build_policy_defaults_to_the_x_tenant_id_header() -> None:
    policy = build_policy()
    assert isinstance(policy.resolver, HeaderResolver)
    assert policy.resolve(tenant_header("acme")) == Tenant("acme", "header")


@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        pytest.param({"header": "X-Org"}, HeaderResolver, id="header"),
        pytest.param({"jwt": {"key": SECRET, "algorithms": ["HS256"]}}, JWTResolver, id="jwt"),
        pytest.param({"subdomain": "example.com"}, SubdomainResolver, id="subdomain"),
        pytest.param({"subdomain": ["example.com", "example.org"]}, SubdomainResolver,
                     id="subdomains"),
        pytest.param({"subdomain": {"base_domains": "example.com", "ignore": ["www"]}},
                     SubdomainResolver, id="subdomain-options"),
        pytest.param({"path_prefix": "/t/"}, PathResolver, id="path-prefix"),
        pytest.param({"header": "X-Org", "subdomain": "example.com"}, ChainResolver, id="chain"),
    ],
)  # fmt: skip
def test_build_policy_sources(kwargs: dict[str, Any], kind: type) -> None:
    assert isinstance(build_policy(**kwargs).resolver, kind)


def test_build_policy_chains_sources_so_disagreement_is_403() -> None:
    token = jwt.encode({"tenant_id": "globex", "exp": int(time.time()) + 60}, SECRET)
    policy = build_policy(
        header="X-Tenant-ID",
        jwt={"key": SECRET, "algorithms": ["HS256"]},
        subdomain="example.com",
        default="anonymous",
    )
    conflict = RequestView(headers=[("X-Tenant-ID", "acme"), ("Authorization", f"Bearer {token}")])
    assert rejected(policy, conflict).status == 403
    agree = RequestView(headers=[("Host", "globex.example.com"), ("X-Tenant-ID", "globex")])
    assert policy.resolve(agree) == Tenant("globex", "header")
    assert policy.resolve(RequestView(headers=[("Host", "localhost")])) == Tenant(
        "anonymous", "default"
    )


@pytest.mark.parametrize(
    "resolver",
    [
        pytest.param("tests.test_policy.resolve_from_query", id="dotted-path"),
        pytest.param(resolve_from_query, id="function"),
        pytest.param(["tests.test_policy.resolve_from_query"], id="list"),
    ],
)
def test_build_policy_resolver(resolver: object) -> None:
    policy = build_policy(resolver=resolver, required=False)
    assert policy.resolve(RequestView(query="tenant=acme")) == Tenant("acme", "custom")
    assert policy.resolve(RequestView()) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"resolver": "tests.test_policy.no_such_function"}, id="missing-attribute"),
        pytest.param({"resolver": "no_such_module_xyz.resolve"}, id="missing-module"),
        pytest.param({"resolver": "resolve"}, id="not-dotted"),
        pytest.param({"policy": TenantPolicy(), "header": "X-Org"}, id="policy+source"),
        pytest.param({"policy": TenantPolicy(), "required": False}, id="policy+option"),
        pytest.param({"no_such_option": True}, id="unknown-option"),
        pytest.param({"jwt": {"key": SECRET, "algorithms": ["HS256"], "bogus": 1}},
                     id="unknown-jwt-option"),
        pytest.param({"jwt": {"algorithms": ["HS256"]}}, id="jwt-without-key"),
        pytest.param({"subdomain": {"base_domain": "example.com"}}, id="misspelt-subdomain"),
        pytest.param({"subdomain": "example.com/x"}, id="bad-base-domain"),
        pytest.param({"path_prefix": "t"}, id="bad-prefix"),
        pytest.param({"resolver": "tests.test_policy.SECRET"}, id="dotted-path-not-callable"),
        pytest.param({"tracing": "off"}, id="unknown-option-tracing"),
    ],
)  # fmt: skip
def test_build_policy_configuration_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        build_policy(**kwargs)


def test_build_policy_returns_a_ready_policy_unchanged() -> None:
    policy = TenantPolicy(default="anonymous")
    assert build_policy(policy) is policy


@pytest.mark.parametrize("where", ["policy", "init"])
@pytest.mark.parametrize("source", ["header", "jwt"])
def test_the_tenant_pattern_is_one_rule_for_every_source(where: str, source: str) -> None:
    """An id outside the pattern is the same 400 ``invalid_tenant`` whether the pattern is
    the policy's or ``init(tenant_pattern=)``'s, from a header or a verified JWT claim."""
    from tenant_trace.context import set_tenant_pattern

    token = jwt.encode({"tenant_id": "acme", "exp": int(time.time()) + 3600}, SECRET)
    request = (
        tenant_header("acme")
        if source == "header"
        else RequestView(headers=[("Authorization", f"Bearer {token}")])
    )
    options: dict[str, Any] = {
        "jwt": {"key": SECRET, "algorithms": ["HS256"]},
        "header": "X-Tenant-ID",
    }
    if where == "policy":
        options["pattern"] = r"org_[0-9]+"
    else:
        set_tenant_pattern(r"org_[0-9]+")
    try:
        rejection = rejected(build_policy(**options), request)
    finally:
        set_tenant_pattern(None)
    assert (rejection.status, rejection.code) == (400, "invalid_tenant")
    assert "pattern" in rejection.detail
