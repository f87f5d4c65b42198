"""Calls to other services: the trace, and where configured the tenant, go along.

`inject` writes the current trace context (``traceparent``, ``tracestate`` and baggage, as
the global propagator does) into outgoing headers; the receiving service's tenant-trace
middleware continues the trace from them. The tenant goes along only when you name a
header for it (``tenant_header="X-Internal-Tenant-ID"``), which the receiving service reads
only where it is configured as trusted (``build_policy(trusted_internal_header=...)``).

    client = tenant_trace.propagate_httpx(httpx.AsyncClient(), tenant_header=INTERNAL)
    session = tenant_trace.propagate_requests(requests.Session(), tenant_header=INTERNAL)
    urllib.request.Request(url, headers=tenant_trace.outbound_headers())

W3C baggage never carries the tenant unless you ask for it with `baggage_key`: a
``tenant.id`` entry that arrived from a client is dropped from outgoing baggage, so it can
never pass downstream as if this service had vouched for it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from opentelemetry import baggage, propagate
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator

from ..context import current

if TYPE_CHECKING:
    import httpx
    import requests
    from requests.adapters import HTTPAdapter

__all__ = [
    "BAGGAGE_TENANT_KEY",
    "INTERNAL_TENANT_HEADER",
    "inject",
    "outbound_headers",
    "propagate_httpx",
    "propagate_requests",
    "requests_adapter",
]

#: The header this library suggests for the tenant between your own services.
INTERNAL_TENANT_HEADER = "X-Internal-Tenant-ID"
#: The baggage entry that `BaggageResolver` reads by default and `inject` never forwards.
BAGGAGE_TENANT_KEY = "tenant.id"

logger = logging.getLogger("tenant_trace")

C = TypeVar("C", bound="httpx.Client | httpx.AsyncClient")
S = TypeVar("S", bound="requests.Session")


def inject(
    headers: MutableMapping[str, str],
    *,
    tenant_header: str | None = None,
    baggage_key: str | None = None,
) -> None:
    """Write the current trace context into `headers`, replacing values already there.

    Args:
        headers: the outgoing headers (a dict, ``httpx.Headers``, a requests header dict).
        tenant_header: also send the current tenant under this header, percent-encoded
            as UTF-8 (``café`` is ``caf%C3%A9``, as in W3C baggage; `TrustedHeaderResolver`
            decodes it); without a tenant the header is removed, so a value copied from an
            incoming request never passes.
        baggage_key: also send the current tenant as this W3C baggage entry (off by default;
            only for a receiver that trusts this service's baggage, `BaggageResolver`).
    """
    tenant = current()
    context = otel_context.get_current()
    for key in {BAGGAGE_TENANT_KEY, baggage_key or BAGGAGE_TENANT_KEY}:
        context = baggage.remove_baggage(key, context)
    if baggage_key is not None and tenant is not None:
        context = baggage.set_baggage(baggage_key, tenant.id, context)
    propagator = propagate.get_global_textmap()
    for field in propagator.fields:
        headers.pop(field, None)
    propagator.inject(headers, context=context)
    if baggage_key is not None:
        # Even when the global propagator leaves baggage out (OTEL_PROPAGATORS=tracecontext).
        W3CBaggagePropagator().inject(headers, context=context)
    if tenant_header is not None:
        if tenant is None:
            headers.pop(tenant_header, None)
        else:
            headers[tenant_header] = quote(tenant.id, safe="")


def outbound_headers(
    *, tenant_header: str | None = None, baggage_key: str | None = None
) -> dict[str, str]:
    """The headers `inject` writes, as a new dict to pass to any HTTP client."""
    headers: dict[str, str] = {}
    inject(headers, tenant_header=tenant_header, baggage_key=baggage_key)
    return headers


class _Options:
    __slots__ = ("baggage_key", "tenant_header")

    def __init__(self, tenant_header: str | None, baggage_key: str | None) -> None:
        self.tenant_header = tenant_header
        self.baggage_key = baggage_key

    def __repr__(self) -> str:
        return f"tenant_header={self.tenant_header!r}, baggage_key={self.baggage_key!r}"

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """`inject`, from a client's hook: a failure is logged, never raised into the call."""
        try:
            inject(headers, tenant_header=self.tenant_header, baggage_key=self.baggage_key)
        except Exception:
            logger.warning("tenant_trace: could not add the trace context to a call", exc_info=True)


class _HttpxHook(_Options):
    """An httpx ``request`` event hook (sync client)."""

    __slots__ = ()

    def __call__(self, request: httpx.Request) -> None:
        self.inject(request.headers)


class _AsyncHttpxHook(_Options):
    """An httpx ``request`` event hook (async client)."""

    __slots__ = ()

    async def __call__(self, request: httpx.Request) -> None:
        self.inject(request.headers)


def propagate_httpx(
    client: C, *, tenant_header: str | None = None, baggage_key: str | None = None
) -> C:
    """Add a request hook to an ``httpx.Client`` or ``httpx.AsyncClient`` that sends the
    context of the code making each call (see `inject`); returns the client. Idempotent."""
    import httpx

    hook_type = _AsyncHttpxHook if isinstance(client, httpx.AsyncClient) else _HttpxHook
    hooks = client.event_hooks
    others = [h for h in hooks.get("request", []) if not isinstance(h, _Options)]
    client.event_hooks = {
        **hooks,
        "request": [*others, hook_type(tenant_header, baggage_key)],
    }
    return client


def requests_adapter(
    *, tenant_header: str | None = None, baggage_key: str | None = None, **adapter_options: Any
) -> HTTPAdapter:
    """A requests ``HTTPAdapter`` that sends the caller's context with every request (see
    `inject`); `adapter_options` (``max_retries=...``) go to ``HTTPAdapter``."""
    adapter: HTTPAdapter = _adapter_class()(**adapter_options)
    adapter.tenant_trace = _Options(tenant_header, baggage_key)  # type: ignore[attr-defined]
    return adapter


@functools.cache
def _adapter_class() -> type[Any]:
    from requests.adapters import HTTPAdapter

    class PropagatingAdapter(HTTPAdapter):
        tenant_trace = _Options(None, None)

        def __repr__(self) -> str:
            return f"requests_adapter({self.tenant_trace!r})"

        def add_headers(self, request: requests.PreparedRequest, **kwargs: Any) -> None:
            super().add_headers(request, **kwargs)
            self.tenant_trace.inject(request.headers)

    return PropagatingAdapter


def propagate_requests(
    session: S, *, tenant_header: str | None = None, baggage_key: str | None = None
) -> S:
    """Mount `requests_adapter` on a ``requests.Session`` for ``http://`` and ``https://``;
    returns the session. An adapter you mount for a longer prefix takes precedence, so build
    it with `requests_adapter` too."""
    adapter = requests_adapter(tenant_header=tenant_header, baggage_key=baggage_key)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
