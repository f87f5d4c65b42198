"""Property tests: whatever a client sends, resolution gives a valid tenant, no tenant, or a
rejection made by the library. Nothing else is ever raised.

The resolvers are called directly as well as through the policy, because the policy turns any
other exception into a 503 and would hide a crash in a built-in resolver.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenant_trace import (
    ChainResolver,
    HeaderResolver,
    JWTResolver,
    PathResolver,
    Rejection,
    RequestView,
    SubdomainResolver,
    Tenant,
    TenantPolicy,
    validate_tenant_id,
)

SECRET = "property-tests-hmac-secret-of-32-bytes!"
STATUSES = {400, 401, 403, 503}

PROPERTY = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def sources() -> list[Any]:
    return [
        HeaderResolver(),
        JWTResolver(key=SECRET, algorithms=["HS256"], cache_size=64),
        SubdomainResolver(["example.com", "bücher.de"], ignore=("www",)),
        PathResolver(),
    ]


CHAIN = ChainResolver(*sources())
POLICIES = [
    TenantPolicy(CHAIN, required=False),
    TenantPolicy(CHAIN, default="anonymous", allowed=lambda t: not t.startswith("x")),
    TenantPolicy(CHAIN, pattern=r"[a-z0-9_:-]+"),
]


def check(view: RequestView) -> None:
    """Every resolver and every policy either resolves validly or rejects with a known status."""
    for resolver in [*sources(), CHAIN]:
        try:
            found = resolver(view)
        except Rejection as exc:
            assert_rejection(exc)
        else:
            assert found is None or valid(found)
    for policy in POLICIES:
        try:
            found = policy.resolve(view)
        except Rejection as exc:
            assert_rejection(exc)
        else:
            assert found is None or valid(found)


def valid(tenant: Tenant) -> bool:
    assert isinstance(tenant, Tenant)
    return validate_tenant_id(tenant.id) == tenant.id and bool(tenant.source)


def assert_rejection(exc: Rejection) -> None:
    assert exc.status in STATUSES
    # The policy's catch-all for crashing resolvers: never reached by built-in resolvers.
    assert exc.code != "tenant_resolution_failed", "a built-in resolver crashed"
    body = json.loads(exc.body())
    assert set(body) == {"error", "detail"}
    assert all(isinstance(v, str) and v for v in body.values())


# -- strategies ---------------------------------------------------------------------------

latin1 = st.binary(max_size=80).map(lambda b: b.decode("latin-1"))
header_values = st.one_of(st.text(max_size=80), latin1)

host_like = st.one_of(
    st.from_regex(
        r"[A-Za-z0-9\-_.ü@:\[\]/ %]{0,30}(\.(example\.com|EXAMPLE\.COM|bücher\.de|evil\.tld))?\.?"
        r"(:[0-9]{0,6})?",
        fullmatch=True,
    ),
    st.from_regex(r"\[[0-9a-fA-F:.]{0,20}\](:[0-9]{1,5})?", fullmatch=True),
    st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,4}(:[0-9]{1,5})?", fullmatch=True),
    st.text(max_size=40).map(lambda s: s + ".example.com"),
    header_values,
)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign(header: str, payload: str, key: str | None) -> str:
    """A token from JSON texts, HS256-signed with `key` (``None``: an empty signature)."""
    signing_input = f"{b64(header.encode())}.{b64(payload.encode())}"
    if key is None:
        return signing_input + "."
    digest = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(digest)}"


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, 1e308, -1e308]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
# Mostly plausible claims, so that hostile values are reached inside otherwise valid tokens.
dates = st.one_of(
    st.integers(min_value=2 * 10**9, max_value=10**12),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 10**30, 2**63, 1e308, float("inf"), float("nan")]),
    json_values,
)
tenant_values = st.one_of(
    st.from_regex(r"[a-z0-9_:-]{1,20}", fullmatch=True), st.text(max_size=300), json_values
)
claim_sets = st.fixed_dictionaries(
    {"tenant_id": tenant_values, "exp": dates},
    optional={"nbf": dates, "iat": dates, "aud": json_values, "iss": json_values},
)
odd_headers = st.one_of(
    st.fixed_dictionaries(
        {"alg": st.sampled_from(["HS256", "none", "None", "", "RS256", "HS512"])},
        optional={"kid": json_values, "typ": json_values, "crit": json_values},
    ),
    json_values,
)


@st.composite
def crafted_tokens(draw: st.DrawFn) -> str:
    """Tokens built by hand: mostly a plain header and plausible claims signed with the right
    key, so that each hostile value is reached inside an otherwise valid token."""
    plain = draw(st.integers(0, 9)) < 7
    header = json.dumps({"alg": "HS256", "typ": "JWT"} if plain else draw(odd_headers))
    body = draw(claim_sets) if draw(st.integers(0, 9)) < 8 else draw(json_values)
    payload = json.dumps(body)
    how = draw(st.sampled_from(["right-key"] * 3 + ["no-signature", "wrong-key", "garbage"]))
    if how == "no-signature":
        return sign(header, payload, None)
    if how == "garbage":
        return sign(header, payload, None) + draw(st.text(max_size=20))
    return sign(header, payload, SECRET if how == "right-key" else "another-32-byte-secret-xxxxxxx")


tokens = st.one_of(
    crafted_tokens(),
    st.text(max_size=60),
    st.from_regex(r"[A-Za-z0-9_\-=+/]{0,20}(\.[A-Za-z0-9_\-=+/]{0,20}){0,4}", fullmatch=True),
)
header_names = st.sampled_from(["X-Tenant-ID", "x-tenant-id", "Host", "X-Other", "Cookie"])


# -- properties ---------------------------------------------------------------------------


@PROPERTY
@given(values=st.lists(header_values, max_size=3))
def test_arbitrary_tenant_header_values(values: list[str]) -> None:
    check(RequestView(headers=[("X-Tenant-ID", v) for v in values]))


@PROPERTY
@given(hosts=st.lists(host_like, min_size=1, max_size=2))
def test_arbitrary_hosts(hosts: list[str]) -> None:
    check(RequestView(headers=[("Host", h) for h in hosts]))


@PROPERTY
@given(token=tokens, scheme=st.sampled_from(["Bearer ", "bearer ", "", "Basic ", "Bearer  "]))
def test_arbitrary_tokens(token: str, scheme: str) -> None:
    check(RequestView(headers=[("Authorization", scheme + token)]))


@PROPERTY
@given(body=claim_sets)
def test_validly_signed_tokens_with_arbitrary_claims(body: dict[str, Any]) -> None:
    """The issuer's signature is good; only the claims are odd (huge, negative, wrong type)."""
    token = sign(json.dumps({"alg": "HS256"}), json.dumps(body), SECRET)
    check(RequestView(headers=[("Authorization", f"Bearer {token}")]))


@PROPERTY
@given(
    path=st.one_of(st.text(max_size=40).map(lambda s: "/t/" + s), st.text(max_size=40)),
    headers=st.lists(st.tuples(header_names, header_values), max_size=4),
    token=st.one_of(st.none(), tokens),
)
def test_arbitrary_requests(path: str, headers: list[tuple[str, str]], token: str | None) -> None:
    if token is not None:
        headers = [*headers, ("Authorization", f"Bearer {token}")]
    check(RequestView(path=path, headers=headers))


@settings(max_examples=150, deadline=None, database=None)
@given(
    headers=st.lists(
        st.tuples(st.sampled_from([b"x-tenant-id", b"host", b"authorization"]), st.binary()),
        max_size=4,
    )
)
def test_arbitrary_asgi_headers_through_aresolve(headers: list[tuple[bytes, bytes]]) -> None:
    view = RequestView.from_asgi({"type": "http", "path": "/", "headers": headers})

    async def main() -> None:
        for policy in POLICIES:
            try:
                found = await policy.aresolve(view)
            except Rejection as exc:
                assert_rejection(exc)
            else:
                assert found is None or valid(found)

    asyncio.run(main())
