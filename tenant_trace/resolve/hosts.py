"""Host header parsing for subdomain tenants: strict, like Django's host validation."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import NamedTuple

from ..errors import Rejection

__all__ = ["ParsedHost", "normalize_domain", "parse_host"]

# name (or [IPv6]) and an optional port; nothing else may appear in a Host header.
_HOST = re.compile(r"(?P<name>[^\s:/@\[\]?#\\%]+|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class ParsedHost(NamedTuple):
    """A Host header reduced to its ASCII name; `is_ip` for IPv4/IPv6 literals."""

    name: str
    is_ip: bool


def _bad_host(detail: str) -> Rejection:
    return Rejection(400, "invalid_host", detail)


def _to_ascii(label: str) -> str:
    """One label in IDNA (punycode) form, checked for LDH syntax."""
    if not label.isascii():
        try:
            label = label.encode("idna").decode("ascii")
        except UnicodeError:
            raise _bad_host("Host header has a label that is not a valid domain name") from None
    if not _LABEL.fullmatch(label):
        raise _bad_host("Host header has an empty or invalid label")
    return label


def normalize_domain(domain: str) -> str:
    """A configured base domain in the form `parse_host` produces (lower-case, punycode)."""
    return parse_host(domain).name


@lru_cache(maxsize=4096)
def parse_host(host: str) -> ParsedHost:
    """Validate and normalise a Host header value.

    Lower-cases, strips the port and one trailing dot, and converts every label to
    punycode. Raises a 400 `Rejection` for anything that is not ``name[:port]`` or
    ``[ipv6][:port]``, so poisoned values such as ``example.com@evil.tld`` never reach a
    resolver.
    """
    match = _HOST.fullmatch(host.lower())
    if match is None:
        raise _bad_host("Host header is malformed")
    name = match["name"]
    if name.startswith("["):
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            raise _bad_host("Host header has an invalid IPv6 address") from None
        return ParsedHost(name, True)
    if name.endswith("."):
        name = name[:-1]
    try:
        ipaddress.IPv4Address(name)
        return ParsedHost(name, True)
    except ValueError:
        pass
    if len(name) > 253:
        raise _bad_host("Host header is longer than a domain name may be")
    return ParsedHost(".".join(_to_ascii(label) for label in name.split(".")), False)
