"""Header, path, chain and custom-function resolvers over the framework-neutral request view."""

from __future__ import annotations

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
    as_resolver,
)
from tenant_trace.resolve.resolvers import resolve_async
from tests.conftest import FAR_EXP

SECRET = "resolver-tests-hmac-secret-of-32-bytes!"


def bearer(tenant: object, *, secret: str = SECRET) -> tuple[str, str]:
    token = jwt.encode({"tenant_id": tenant, "exp": FAR_EXP}, secret)
    return ("Authorization", f"Bearer {token}")


def view(*headers: tuple[str, str], path: str = "/") -> RequestView:
    return RequestView(path=path, headers=headers)


def rejection(resolver: Any, request: RequestView) -> Rejection:
    with pytest.raises(Rejection) as info:
        resolver(request)
    return info.value


# -- header -------------------------------------------------------------------------------


def test_header_gives_the_tenant_with_its_source() -> None:
    assert HeaderResolver()(view(("X-Tenant-ID", "acme"))) == Tenant("acme", "header")
    assert HeaderResolver()(view(("x-tenant-id", "acme"))) == Tenant("acme", "header")
    assert HeaderResolver("X-Org")(view(("X-Org", "org_1"))) == Tenant("org_1", "header")
    assert HeaderResolver(source="gateway")(view(("X-Tenant-ID", "a"))) == Tenant("a", "gateway")


def test_no_header_gives_no_tenant() -> None:
    assert HeaderResolver()(view(("X-Other", "acme"))) is None


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param([("X-Tenant-ID", "acme\r\nX-Evil: 1")], "invalid_tenant", id="crlf"),
        pytest.param([("X-Tenant-ID", "acme\n")], "invalid_tenant", id="lf"),
        pytest.param([("X-Tenant-ID", "a" * 256)], "invalid_tenant", id="256-chars"),
        pytest.param([("X-Tenant-ID", "")], "invalid_tenant", id="empty"),
        pytest.param([("X-Tenant-ID", " acme")], "invalid_tenant", id="leading-space"),
        pytest.param([("X-Tenant-ID", "ac\x00me")], "invalid_tenant", id="nul"),
        pytest.param([("X-Tenant-ID", "acme"), ("X-Tenant-ID", "globex")], "duplicate_header",
                     id="two-headers"),
        pytest.param([("X-Tenant-ID", "acme, globex")], "duplicate_header", id="comma-joined"),
        pytest.param([("X-Tenant-ID", "acme,")], "duplicate_header", id="trailing-comma"),
        pytest.param([("X-Tenant-ID", "acme"), ("x-tenant-id", "ACME")], "duplicate_header",
                     id="differs-in-case"),
    ],
)  # fmt: skip
def test_bad_header_values_are_400(headers: list[tuple[str, str]], code: str) -> None:
    exc = rejection(HeaderResolver(), view(*headers))
    assert (exc.status, exc.code) == (400, code)
    assert "globex" not in exc.detail
    assert "acme" not in exc.detail


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([("X-Tenant-ID", "acme"), ("X-Tenant-ID", "acme")], id="two-headers"),
        pytest.param([("X-Tenant-ID", "acme, acme")], id="comma-joined"),
        pytest.param([("X-Tenant-ID", "acme,acme"), ("X-Tenant-ID", "acme")], id="both"),
    ],
)
def test_the_same_value_twice_is_fine(headers: list[tuple[str, str]]) -> None:
    assert HeaderResolver()(view(*headers)) == Tenant("acme", "header")


def test_repeated_headers_are_seen_through_asgi_and_wsgi_views() -> None:
    """ASGI keeps repeats as separate pairs; WSGI servers join them with a comma."""
    scope = {"type": "http", "headers": [(b"x-tenant-id", b"acme"), (b"X-Tenant-ID", b"globex")]}
    assert rejection(HeaderResolver(), RequestView.from_asgi(scope)).status == 400
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_X_TENANT_ID": "acme,globex"}
    assert rejection(HeaderResolver(), RequestView.from_wsgi(environ)).status == 400
    environ["HTTP_X_TENANT_ID"] = "acme"
    assert HeaderResolver()(RequestView.from_wsgi(environ)) == Tenant("acme", "header")
    scope["headers"] = [(b"x-tenant-id", b"acme")]
    assert HeaderResolver()(RequestView.from_asgi(scope)) == Tenant("acme", "header")


def test_request_view_reads_headers_query_and_cookies() -> None:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/t/acme/run",
        "query_string": b"a=1",
        "headers": [(b"host", b"acme.example.com"), (b"cookie", b'x=1; session="tok"')],
    }
    asgi = RequestView.from_asgi(scope)
    assert (asgi.method, asgi.path, asgi.query, asgi.host) == (
        "POST",
        "/t/acme/run",
        "a=1",
        "acme.example.com",
    )
    assert asgi.cookie("session") == "tok"
    assert asgi.cookie("missing") is None
    environ = {"PATH_INFO": "/caf\u00c3\u00a9", "HTTP_HOST": "h", "CONTENT_TYPE": "text/plain"}
    wsgi = RequestView.from_wsgi(environ)
    assert (wsgi.path, wsgi.host, wsgi.get("Content-Type")) == ("/café", "h", "text/plain")


# -- path ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/t/acme/agents/run", Tenant("acme", "path"), id="nested"),
        pytest.param("/t/acme", Tenant("acme", "path"), id="bare"),
        pytest.param("/t/org_1:ws_2/", Tenant("org_1:ws_2", "path"), id="colon"),
        pytest.param("/health", None, id="other-path"),
        pytest.param("/tenants/acme", None, id="similar-prefix"),
        pytest.param("/", None, id="root"),
    ],
)
def test_path_prefix(path: str, expected: Tenant | None) -> None:
    assert PathResolver()(view(path=path)) == expected


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/t//run", id="empty-segment"),
        pytest.param("/t/", id="prefix-only"),
        pytest.param("/t/" + "a" * 256 + "/run", id="256-chars"),
        pytest.param("/t/ac\nme/run", id="newline"),
    ],
)
def test_bad_path_segments_are_400(path: str) -> None:
    exc = rejection(PathResolver(), view(path=path))
    assert (exc.status, exc.code) == (400, "invalid_tenant")


def test_path_prefix_is_configurable_and_checked() -> None:
    assert PathResolver("/orgs/")(view(path="/orgs/acme/x")) == Tenant("acme", "path")
    with pytest.raises(ConfigurationError):
        PathResolver("orgs")


# -- chain --------------------------------------------------------------------------------


def header_and_jwt() -> ChainResolver:
    return ChainResolver(HeaderResolver(), JWTResolver(key=SECRET, algorithms=["HS256"]))


def test_header_a_and_verified_jwt_b_is_a_403_conflict() -> None:
    exc = rejection(header_and_jwt(), view(("X-Tenant-ID", "acme"), bearer("globex")))
    assert (exc.status, exc.code) == (403, "tenant_conflict")
    assert "acme" not in exc.detail
    assert "globex" not in exc.detail


def test_agreeing_sources_resolve_with_the_first_source() -> None:
    both = view(("X-Tenant-ID", "acme"), bearer("acme"))
    assert header_and_jwt()(both) == Tenant("acme", "header")
    assert header_and_jwt()(view(bearer("acme"))) == Tenant("acme", "jwt")
    assert header_and_jwt()(view(("X-Tenant-ID", "acme"))) == Tenant("acme", "header")
    assert header_and_jwt()(view()) is None


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(bearer("acme", secret="another-secret-that-is-32-bytes-long"), id="bad-sig"),
        pytest.param(("Authorization", "Bearer not.a.token"), id="garbage"),
        pytest.param(("Authorization", "Bearer"), id="empty"),
    ],
)
def test_a_bad_jwt_next_to_a_good_header_is_401_never_a_fallback(auth: tuple[str, str]) -> None:
    exc = rejection(header_and_jwt(), view(("X-Tenant-ID", "acme"), auth))
    assert exc.status == 401


def test_a_bad_header_next_to_a_good_jwt_is_400() -> None:
    exc = rejection(header_and_jwt(), view(("X-Tenant-ID", "a\r\nb"), bearer("acme")))
    assert exc.status == 400


def test_three_sources_that_disagree_name_every_source() -> None:
    chain = ChainResolver(
        HeaderResolver(), SubdomainResolver("example.com"), PathResolver(), source_less
    )
    request = view(("X-Tenant-ID", "acme"), ("Host", "globex.example.com"), path="/t/acme/")
    exc = rejection(chain, request)
    assert exc.code == "tenant_conflict"
    assert exc.detail == "tenant sources disagree (header, path, subdomain)"


def source_less(request: RequestView) -> None:
    """A custom source that never has an opinion."""
    return


@pytest.mark.asyncio
async def test_chain_aresolve_agrees_with_the_sync_call() -> None:
    chain = header_and_jwt()
    assert await chain.aresolve(view(bearer("acme"))) == Tenant("acme", "jwt")
    with pytest.raises(Rejection) as info:
        await resolve_async(chain, view(("X-Tenant-ID", "acme"), bearer("globex")))
    assert info.value.status == 403


def test_a_chain_needs_a_resolver() -> None:
    with pytest.raises(ConfigurationError):
        ChainResolver()


# -- any callable -------------------------------------------------------------------------


def from_query(request: RequestView) -> str | None:
    """tenant=<id> in the query string."""
    key, _, value = request.query.partition("=")
    return value if key == "tenant" else None


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        pytest.param(lambda r: "acme", Tenant("acme", "custom"), id="str"),
        pytest.param(lambda r: Tenant("acme", "api-key"), Tenant("acme", "api-key"), id="tenant"),
        pytest.param(lambda r: None, None, id="none"),
        pytest.param(from_query, Tenant("globex", "custom"), id="reads-the-view"),
    ],
)
def test_plain_functions_are_resolvers(func: Any, expected: Tenant | None) -> None:
    request = RequestView(query="tenant=globex")
    assert as_resolver(func)(request) == expected
    assert TenantPolicy(func, required=False).resolve(request) == expected


@pytest.mark.parametrize(
    "result",
    [
        pytest.param("", id="empty"),
        pytest.param("a\r\nb", id="crlf"),
        pytest.param("x" * 256, id="256-chars"),
        pytest.param(42, id="int"),
        pytest.param(b"acme", id="bytes"),
        pytest.param(Tenant("bad\x00", "custom"), id="tenant-with-bad-id"),
    ],
)
def test_plain_functions_returning_invalid_ids_are_400(result: object) -> None:
    exc = rejection(as_resolver(lambda r: result), view())
    assert (exc.status, exc.code) == (400, "invalid_tenant")
    with pytest.raises(Rejection) as info:
        TenantPolicy(lambda r: result).resolve(view())
    assert info.value.status == 400


def test_a_raising_function_is_a_503_through_the_policy() -> None:
    def broken(request: RequestView) -> str:
        raise KeyError("tenant")

    with pytest.raises(KeyError):
        as_resolver(broken)(view())
    with pytest.raises(Rejection) as info:
        TenantPolicy(broken).resolve(view())
    assert (info.value.status, info.value.code) == (503, "tenant_resolution_failed")


def test_as_resolver_keeps_built_in_resolvers_and_names_the_source() -> None:
    header = HeaderResolver()
    assert as_resolver(header) is header
    assert as_resolver(lambda r: "acme", source="api-key")(view()) == Tenant("acme", "api-key")
