"""Host parsing and the subdomain resolver: strict like Django's host validation."""

from __future__ import annotations

import pytest

from tenant_trace import ConfigurationError, Rejection, RequestView, SubdomainResolver, Tenant
from tenant_trace.resolve.hosts import ParsedHost, parse_host


def host_view(*hosts: str, forwarded: tuple[str, ...] = ()) -> RequestView:
    headers = [("Host", h) for h in hosts] + [("X-Forwarded-Host", f) for f in forwarded]
    return RequestView(headers=headers)


RESOLVER = SubdomainResolver("example.com")


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("tenant1.example.com", id="plain"),
        pytest.param("Tenant1.Example.COM", id="mixed-case"),
        pytest.param("tenant1.example.com.", id="trailing-dot"),
        pytest.param("tenant1.example.com:8443", id="port"),
        pytest.param("TENANT1.EXAMPLE.COM.:443", id="all-at-once"),
    ],
)
def test_the_label_under_the_base_domain_is_the_tenant(host: str) -> None:
    assert RESOLVER(host_view(host)) == Tenant("tenant1", "subdomain")


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("example.com@evil.tld", id="userinfo"),
        pytest.param("example.com:dr.frankenstein@evil.tld", id="userinfo-password"),
        pytest.param("example.com:dr.frankenstein@evil.tld:80", id="userinfo-password-port"),
        pytest.param("example.com:80/badpath", id="path"),
        pytest.param("example.com: recovermypassword.com", id="space-after-colon"),
        pytest.param("acme.example.com:80/badpath", id="path-under-base"),
        pytest.param("acme.example.com@evil.tld", id="userinfo-under-base"),
        pytest.param("acme.example.com:", id="empty-port"),
        pytest.param("acme.example.com:123456", id="six-digit-port"),
        pytest.param("acme.example.com:80:80", id="two-ports"),
        pytest.param("acme.example.com?x=1", id="query"),
        pytest.param("acme.example.com#frag", id="fragment"),
        pytest.param("acme.example.com\\evil", id="backslash"),
        pytest.param("acme.example.com\r\nX-Injected: 1", id="crlf"),
        pytest.param("acme .example.com", id="inner-space"),
        pytest.param("", id="empty"),
        pytest.param("[::1", id="unclosed-bracket"),
        pytest.param("[not:an:ip:zz]", id="bracketed-garbage"),
        pytest.param("[::1]evil", id="text-after-bracket"),
    ],
)
def test_poisoned_and_malformed_hosts_are_400(host: str) -> None:
    with pytest.raises(Rejection) as info:
        RESOLVER(host_view(host))
    assert (info.value.status, info.value.code) == (400, "invalid_host")


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("..example.com", id="empty-label"),
        pytest.param(".example.com", id="leading-dot"),
        pytest.param("-.example.com", id="hyphen-only"),
        pytest.param("-acme.example.com", id="leading-hyphen"),
        pytest.param("acme-.example.com", id="trailing-hyphen"),
        pytest.param("ac_me.example.com", id="underscore"),
        pytest.param("a" * 64 + ".example.com", id="64-char-label"),
        pytest.param("a.b.example.com", id="two-labels"),
        pytest.param("x.acme.example.com:8000", id="two-labels-port"),
        pytest.param("acme.example.com..", id="two-trailing-dots"),
        pytest.param("acme!.example.com", id="punctuation"),
        pytest.param("\u00ad.example.com", id="label-that-idna-maps-to-nothing"),
    ],
)
def test_bad_labels_under_the_base_domain_are_400(host: str) -> None:
    with pytest.raises(Rejection) as info:
        RESOLVER(host_view(host))
    assert (info.value.status, info.value.code) == (400, "invalid_host")


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("[::1]:8000", id="ipv6-port"),
        pytest.param("[::1]", id="ipv6"),
        pytest.param("[2001:db8::1]:443", id="ipv6-global"),
        pytest.param("127.0.0.1", id="ipv4"),
        pytest.param("10.0.0.7:8000", id="ipv4-port"),
        pytest.param("localhost", id="localhost"),
        pytest.param("localhost:8000", id="localhost-port"),
        pytest.param("example.com", id="the-base-domain-itself"),
        pytest.param("example.com.", id="the-base-domain-trailing-dot"),
        pytest.param("acme.example.org", id="another-domain"),
        pytest.param("acme.notexample.com", id="suffix-without-dot"),
        pytest.param("example.com.evil.tld", id="base-domain-as-prefix"),
    ],
)
def test_hosts_outside_the_base_domain_give_no_tenant(host: str) -> None:
    assert RESOLVER(host_view(host)) is None


def test_no_host_header_gives_no_tenant() -> None:
    assert RESOLVER(RequestView()) is None


def test_international_labels_are_the_unicode_id_other_sources_carry() -> None:
    # Unicode, punycode and UTF-8 bytes (as a server hands them over, in latin-1) agree.
    for host in ("bücher.example.com", "XN--BCHER-KVA.example.com", "bÃ¼cher.example.com"):
        assert RESOLVER(host_view(host)) == Tenant("bücher", "subdomain")
    assert RESOLVER(host_view("\uff21\uff23\uff2d\uff25.example.com")) == Tenant(
        "acme", "subdomain"
    )


def test_an_international_base_domain_is_matched_in_punycode() -> None:
    resolver = SubdomainResolver("bücher.de")
    assert resolver(host_view("acme.xn--bcher-kva.de")) == Tenant("acme", "subdomain")
    assert resolver(host_view("acme.BÜCHER.de")) == Tenant("acme", "subdomain")


def test_two_different_host_headers_are_400() -> None:
    with pytest.raises(Rejection) as info:
        RESOLVER(host_view("acme.example.com", "globex.example.com"))
    assert info.value.status == 400
    assert RESOLVER(host_view("acme.example.com", "acme.example.com")) == Tenant(
        "acme", "subdomain"
    )


def test_x_forwarded_host_is_ignored_unless_trusted() -> None:
    view = host_view("proxy.example.com", forwarded=("acme.example.com",))
    assert RESOLVER(view) == Tenant("proxy", "subdomain")
    trusting = SubdomainResolver("example.com", trust_forwarded_host=True)
    assert trusting(view) == Tenant("acme", "subdomain")


def test_a_trusted_x_forwarded_host_uses_the_value_of_the_nearest_proxy() -> None:
    trusting = SubdomainResolver("example.com", trust_forwarded_host=True)
    view = host_view("internal", forwarded=("evil.example.com, acme.example.com",))
    assert trusting(view) == Tenant("acme", "subdomain")
    assert trusting(host_view("acme.example.com")) == Tenant("acme", "subdomain")
    with pytest.raises(Rejection) as info:
        trusting(host_view("acme.example.com", forwarded=("acme.example.com@evil.tld",)))
    assert info.value.status == 400


def test_several_base_domains() -> None:
    resolver = SubdomainResolver(["example.com", "Example.ORG."])
    assert resolver(host_view("acme.example.com")) == Tenant("acme", "subdomain")
    assert resolver(host_view("globex.example.org")) == Tenant("globex", "subdomain")
    assert resolver(host_view("acme.example.net")) is None


@pytest.mark.parametrize(
    ("domains", "host", "expected"),
    [
        pytest.param(["example.com", "eu.example.com"], "acme.eu.example.com", "acme", id="general-first"),
        pytest.param(["eu.example.com", "example.com"], "acme.eu.example.com", "acme", id="nested-first"),
        pytest.param(["example.com", "eu.example.com"], "acme.example.com", "acme", id="outer-tenant"),
        pytest.param(["example.com", "eu.example.com"], "eu.example.com", None, id="nested-base-itself"),
    ],
)  # fmt: skip
def test_nested_base_domains_match_the_most_specific_one(
    domains: list[str], host: str, expected: str | None
) -> None:
    tenant = SubdomainResolver(domains)(host_view(host))
    assert (tenant and tenant.id) == expected


def test_ignored_labels_give_no_tenant() -> None:
    resolver = SubdomainResolver("example.com", ignore=("www", "api"))
    assert resolver(host_view("www.example.com")) is None
    assert resolver(host_view("API.example.com:443")) is None
    assert resolver(host_view("acme.example.com")) == Tenant("acme", "subdomain")


def test_a_custom_source_name() -> None:
    resolver = SubdomainResolver("example.com", source="host")
    assert resolver(host_view("acme.example.com")) == Tenant("acme", "host")


@pytest.mark.parametrize(
    "domains",
    [
        pytest.param([], id="none"),
        pytest.param("example.com/path", id="path"),
        pytest.param("user@example.com", id="userinfo"),
        pytest.param("..example.com", id="empty-label"),
    ],
)
def test_bad_base_domains_are_configuration_errors(domains: str | list[str]) -> None:
    with pytest.raises(ConfigurationError):
        SubdomainResolver(domains)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param("Acme.Example.COM.:8000", ParsedHost("acme.example.com", False), id="name"),
        pytest.param("[::1]:8000", ParsedHost("[::1]", True), id="ipv6"),
        pytest.param("192.168.0.1:80", ParsedHost("192.168.0.1", True), id="ipv4"),
        pytest.param("192.168.0.1.", ParsedHost("192.168.0.1", True), id="ipv4-trailing-dot"),
        pytest.param("bücher.de", ParsedHost("xn--bcher-kva.de", False), id="idna"),
    ],
)
def test_parse_host(host: str, expected: ParsedHost) -> None:
    assert parse_host(host) == expected


def test_an_overlong_host_is_400() -> None:
    with pytest.raises(Rejection) as info:
        parse_host(".".join(["a" * 60] * 5))
    assert info.value.status == 400
