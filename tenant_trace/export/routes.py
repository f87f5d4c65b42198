"""Where each tenant's telemetry goes: the routes given to ``init(routes=...)`` or named by
``TENANT_TRACE_ROUTES``, checked once, before anything is exported.

    tenant_trace.init(
        routes={
            "acme": "http://collector-a:4318",
            "globex": {"endpoint": "http://tempo:4318", "headers": {"X-Scope-OrgID": "globex"}},
        },
        unrouted="default",  # or "drop"
        mirror=False,        # True: the default exporters also get every routed span
    )

A destination is an OTLP endpoint (the base, as in ``OTEL_EXPORTER_OTLP_ENDPOINT``: the
signal's path, ``/v1/traces`` or ``/v1/logs``, is added over HTTP), or a mapping with
``endpoint``, ``headers`` (strings), ``protocol`` (``http/protobuf`` or ``grpc``) and
``timeout`` (seconds). Tenants that share the same destination share its export thread.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ..resolve.policy import unknown_options
from .otlp import env

__all__ = [
    "MAX_DESTINATIONS",
    "ROUTES_ENV",
    "Destination",
    "Routes",
    "parse_routes",
]

ROUTES_ENV = "TENANT_TRACE_ROUTES"
UNROUTED_ENV = "TENANT_TRACE_UNROUTED"
MIRROR_ENV = "TENANT_TRACE_MIRROR"
#: Distinct destinations at most: each has its own export thread and queue per signal.
MAX_DESTINATIONS = 64
_KEYS = ("endpoint", "headers", "protocol", "timeout")
_PROTOCOLS = ("http/protobuf", "grpc")
# RFC 9110 field names (tokens); values: visible ASCII, spaces and tabs, nothing else.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")

Unrouted = Literal["default", "drop"]


@dataclass(frozen=True)
class Destination:
    """One OTLP destination; equal destinations share one export pipeline per signal.

    Attributes:
        name: the label of its drop counter: the first tenant routed to it, by sort order.
    """

    endpoint: str
    protocol: str = "http/protobuf"
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    name: str = ""

    def __repr__(self) -> str:
        # Header values may be credentials: only their names are shown.
        names = [key for key, _ in self.headers]
        return f"Destination({self.name!r}, {self.endpoint!r}, {self.protocol}, headers={names})"

    def exporter_options(self) -> dict[str, Any]:
        """Keyword arguments of `otlp_exporter` for this destination."""
        options: dict[str, Any] = {"headers": dict(self.headers)}
        if self.timeout is not None:
            options["timeout"] = self.timeout
        return options


@dataclass(frozen=True)
class Routes:
    """The checked routing table.

    Attributes:
        destinations: tenant id -> destination.
        unrouted: where spans and logs of other tenants, or of none, go: ``"default"``
            (the default exporters) or ``"drop"``.
        mirror: the default exporters also get every routed span and log.
    """

    destinations: Mapping[str, Destination]
    unrouted: Unrouted = "default"
    mirror: bool = False

    def where(self, tenant: str | None) -> tuple[Destination | None, bool]:
        """Where telemetry of `tenant` (``None``: of no tenant) goes: its destination, or
        ``None`` when it has no route; and whether the default exporters get it too."""
        destination = self.destinations.get(tenant) if tenant is not None else None
        if destination is not None:
            return destination, self.mirror
        return None, self.unrouted == "default"


def parse_routes(
    routes: Mapping[str, Any] | None = None,
    unrouted: str | None = None,
    mirror: bool | None = None,
) -> Routes | None:
    """The routing table from `init()`'s arguments, else from ``TENANT_TRACE_ROUTES`` (a
    JSON file, or the JSON itself), ``TENANT_TRACE_UNROUTED`` and ``TENANT_TRACE_MIRROR``;
    ``None`` when no routes are configured.

    Raises:
        ConfigurationError: a route's endpoint is malformed, its protocol unknown, a header
            not a string, a key unknown (the message names the tenant and the key); `unrouted`
            is neither ``"default"`` nor ``"drop"``; more than `MAX_DESTINATIONS`.
    """
    where = "routes"
    if routes is None:
        routes, where = _from_env()
    if unrouted is None:
        unrouted = env(UNROUTED_ENV) or "default"
    if mirror is None:
        mirror = _flag(env(MIRROR_ENV))
    if unrouted not in ("default", "drop"):
        raise ConfigurationError(f"unrouted must be 'default' or 'drop', not {unrouted!r}")
    if not isinstance(mirror, bool):
        raise ConfigurationError("mirror must be True or False")
    if routes is None:
        return None
    if not isinstance(routes, Mapping):
        raise ConfigurationError(
            f"{where} must map tenant ids to destinations, not {type(routes).__name__}"
        )
    for tenant in routes:
        if not isinstance(tenant, str) or not tenant:
            raise ConfigurationError(f"{where}: a tenant id must be a non-empty string")
    parsed = {
        tenant: _destination(f"{where}[{tenant!r}]", value) for tenant, value in routes.items()
    }
    # Name each destination after the first tenant (by sort order) that uses it.
    names: dict[Destination, str] = {}
    for tenant in sorted(parsed):
        names.setdefault(parsed[tenant], tenant)
    if len(names) > MAX_DESTINATIONS:
        raise ConfigurationError(
            f"{where} name {len(names)} destinations; at most {MAX_DESTINATIONS}, as each has "
            "its own export thread and queue: route tenants that belong together to one "
            "destination (the same endpoint and headers), or put a collector in front"
        )
    return Routes(
        {t: _named(d, names[d]) for t, d in parsed.items()},
        unrouted,  # type: ignore[arg-type]  # checked above
        mirror,
    )


def _named(destination: Destination, name: str) -> Destination:
    return Destination(
        destination.endpoint, destination.protocol, destination.headers, destination.timeout, name
    )


def _from_env() -> tuple[Mapping[str, Any] | None, str]:
    value = env(ROUTES_ENV)
    if value is None:
        return None, ROUTES_ENV
    try:
        text = value if value.startswith("{") else Path(value).read_text(encoding="utf-8")
        return json.loads(text), ROUTES_ENV
    except OSError as exc:
        raise ConfigurationError(f"{ROUTES_ENV}: cannot read {value!r}: {exc}") from None
    except ValueError as exc:
        raise ConfigurationError(f"{ROUTES_ENV}: not valid JSON: {exc}") from None


def _flag(value: str | None) -> bool:
    if value is None or value.lower() in ("0", "false", "no", "off"):
        return False
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"{MIRROR_ENV} must be true or false, not {value!r}")


def _destination(where: str, value: object) -> Destination:
    if isinstance(value, str):
        value = {"endpoint": value}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{where} must be an endpoint or a mapping with 'endpoint', not {type(value).__name__}"
        )
    unknown = sorted(str(key) for key in value if key not in _KEYS)
    if unknown:
        raise ConfigurationError(f"{where}: {unknown_options(unknown, _KEYS, 'route key')}")
    protocol = value.get("protocol", "http/protobuf")
    if protocol not in _PROTOCOLS:
        raise ConfigurationError(
            f"{where}['protocol']: unknown OTLP protocol {protocol!r} (http/protobuf or grpc)"
        )
    return Destination(
        _endpoint(f"{where}['endpoint']", value.get("endpoint")),
        protocol,
        _headers(f"{where}['headers']", value.get("headers", {})),
        _timeout(f"{where}['timeout']", value.get("timeout")),
    )


def _endpoint(where: str, endpoint: object) -> str:
    if not isinstance(endpoint, str):
        raise ConfigurationError(f"{where} must be a URL such as http://collector:4318")
    try:
        parts = urlsplit(endpoint)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if (
        not port_ok
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or not _HEADER_VALUE.fullmatch(endpoint)
        or " " in endpoint
    ):
        raise ConfigurationError(
            f"{where}: {endpoint!r} is not an http(s) URL with a host, such as "
            "http://collector:4318"
        )
    if parts.path.rstrip("/").endswith(("/v1/traces", "/v1/logs")):
        raise ConfigurationError(
            f"{where}: give the base endpoint, without /v1/traces or /v1/logs "
            "(each signal's path is added)"
        )
    return endpoint


def _headers(where: str, headers: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(headers, Mapping):
        raise ConfigurationError(f"{where} must be a mapping of header names to strings")
    checked = []
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigurationError(f"{where}: {name!r} is not a valid header name")
        if not isinstance(value, str):
            raise ConfigurationError(
                f"{where}[{name!r}] must be a string, not {type(value).__name__}"
            )
        if not _HEADER_VALUE.fullmatch(value):
            raise ConfigurationError(
                f"{where}[{name!r}] may hold printable ASCII only (no line breaks)"
            )
        checked.append((name, value))
    return tuple(sorted(checked))


def _timeout(where: str, timeout: object) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigurationError(f"{where} must be a number of seconds above zero")
    return float(timeout)
