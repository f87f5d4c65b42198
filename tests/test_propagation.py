"""Calls to other services (tenant_trace.propagation) and the resolvers that read what they
send: the internal tenant header, trusted only where configured, and W3C baggage, never
trusted unless configured."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
import requests
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context

import tenant_trace
from tenant_trace import BaggageResolver, ConfigurationError, Rejection, RequestView
from tenant_trace.propagate.http import (
    INTERNAL_TENANT_HEADER,
    inject,
    outbound_headers,
    propagate_httpx,
    propagate_requests,
    requests_adapter,
)
from tenant_trace.resolve.policy import TenantPolicy, build_policy
from tenant_trace.server.wsgi import TenantTraceWSGIMiddleware
from tests.conftest import Spans

tracer = trace.get_tracer("tests.propagation")


def span_ids(span: trace.Span) -> tuple[str, str]:
    context = span.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


@pytest.fixture
def client_baggage() -> Iterator[None]:
    """The context of a request whose client sent ``baggage: tenant.id=evil,other=kept``
    (the middleware extracts incoming baggage with the trace context)."""
    context = baggage.set_baggage("tenant.id", "evil")
    token = otel_context.attach(baggage.set_baggage("other", "kept", context))
    yield
    otel_context.detach(token)


# The headers written.


def test_outside_any_span_or_tenant_nothing_is_sent() -> None:
    assert outbound_headers(tenant_header=INTERNAL_TENANT_HEADER) == {}


def test_the_trace_goes_along_and_the_tenant_only_when_asked(client_baggage: None) -> None:
    with tenant_trace.tenant_context("acme"), tracer.start_as_current_span("call") as span:
        plain = outbound_headers()
        internal = outbound_headers(tenant_header=INTERNAL_TENANT_HEADER)
    trace_id, span_id = span_ids(span)
    assert plain["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
    assert plain["baggage"] == "other=kept"  # the client's tenant.id is dropped
    assert "acme" not in json.dumps(plain)
    assert internal == {**plain, INTERNAL_TENANT_HEADER: "acme"}


def test_the_tenant_goes_in_baggage_only_when_configured(client_baggage: None) -> None:
    with tenant_trace.tenant_context("acme"):
        sent = outbound_headers(baggage_key="tenant.id")
    assert sorted(sent["baggage"].split(",")) == ["other=kept", "tenant.id=acme"]
    assert outbound_headers(baggage_key="tenant.id")["baggage"] == "other=kept"  # no tenant


def test_headers_already_there_are_replaced_and_a_forwarded_tenant_removed() -> None:
    """A proxy-like caller that copies incoming headers never forwards a client's values."""
    forwarded = {
        INTERNAL_TENANT_HEADER: "forged",
        "traceparent": f"00-{'1' * 32}-{'2' * 16}-01",
        "baggage": "tenant.id=forged",
        "accept": "text/plain",
    }
    headers = dict(forwarded)
    inject(headers, tenant_header=INTERNAL_TENANT_HEADER)
    assert headers == {"accept": "text/plain"}
    headers = dict(forwarded)
    with tenant_trace.tenant_context("acme"), tracer.start_as_current_span("call") as span:
        inject(headers, tenant_header=INTERNAL_TENANT_HEADER)
    assert headers[INTERNAL_TENANT_HEADER] == "acme"
    assert headers["traceparent"].startswith("00-{}-{}-".format(*span_ids(span)))
    assert "baggage" not in headers


# Real calls to a real (in-process) WSGI server behind tenant-trace's WSGI middleware.


def report(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    span = trace.get_current_span().get_span_context()
    body = json.dumps(
        {
            "tenant": tenant_trace.get_current_tenant(),
            "source": tenant_trace.get_tenant_source(),
            "trace_id": format(span.trace_id, "032x"),
            "baggage": environ.get("HTTP_BAGGAGE"),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


APPS = {
    # A service that clients cannot reach: it trusts the internal header.
    "/internal": TenantTraceWSGIMiddleware(
        report, trusted_internal_header=INTERNAL_TENANT_HEADER, required=False
    ),
    # A public service with the default options: X-Tenant-ID only.
    "/public": TenantTraceWSGIMiddleware(report, required=False),
    # A service that opted in to baggage.
    "/baggage": TenantTraceWSGIMiddleware(report, baggage_key="tenant.id", required=False),
}


def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    return APPS[environ["PATH_INFO"]](environ, start_response)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd: WSGIServer = make_server("127.0.0.1", 0, dispatch, handler_class=QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def call_httpx(url: str, headers: dict[str, str]) -> Any:
    with propagate_httpx(httpx.Client(), tenant_header=INTERNAL_TENANT_HEADER) as client:
        propagate_httpx(client, tenant_header=INTERNAL_TENANT_HEADER)  # idempotent
        assert len(client.event_hooks["request"]) == 1
        return client.get(url, headers=headers).json()


def call_async_httpx(url: str, headers: dict[str, str]) -> Any:
    import asyncio

    async def call() -> Any:
        client = propagate_httpx(httpx.AsyncClient(), tenant_header=INTERNAL_TENANT_HEADER)
        async with client:
            return (await client.get(url, headers=headers)).json()

    # asyncio.run() copies nothing: run it in this context, as a request's handler would.
    return asyncio.run(call())


def call_requests(url: str, headers: dict[str, str]) -> Any:
    session = propagate_requests(requests.Session(), tenant_header=INTERNAL_TENANT_HEADER)
    with session:
        return session.get(url, headers=headers, timeout=10).json()


CLIENTS = [call_httpx, call_async_httpx, call_requests]


@pytest.mark.parametrize("call", CLIENTS)
def test_a_trusting_service_continues_the_trace_and_tenant(
    call: Callable[[str, dict[str, str]], Any], server: str, spans: Spans
) -> None:
    with tenant_trace.tenant_context("acme"), tracer.start_as_current_span("call") as span:
        seen = call(f"{server}/internal", {})
    trace_id, span_id = span_ids(span)
    assert (seen["tenant"], seen["source"], seen["trace_id"]) == ("acme", "internal", trace_id)
    root = spans.one("agent.run")
    assert root.parent is not None
    assert format(root.parent.span_id, "016x") == span_id
    assert (root.attributes or {})["tenant.id"] == "acme"


@pytest.mark.parametrize("call", CLIENTS)
def test_without_a_tenant_the_call_carries_none_even_if_a_header_is_copied(
    call: Callable[[str, dict[str, str]], Any], server: str
) -> None:
    seen = call(f"{server}/internal", {INTERNAL_TENANT_HEADER: "forged"})
    assert seen["tenant"] is None


def test_a_service_not_configured_to_trust_the_internal_header_ignores_it(server: str) -> None:
    seen = httpx.get(f"{server}/public", headers={INTERNAL_TENANT_HEADER: "acme"}).json()
    assert seen["tenant"] is None


def test_client_baggage_is_ignored_unless_configured(server: str) -> None:
    headers = {"baggage": "tenant.id=evil"}
    assert httpx.get(f"{server}/public", headers=headers).json()["tenant"] is None
    assert httpx.get(f"{server}/internal", headers=headers).json()["tenant"] is None
    opted_in = httpx.get(f"{server}/baggage", headers=headers).json()
    assert (opted_in["tenant"], opted_in["source"]) == ("evil", "baggage")


def test_the_requests_adapter_keeps_its_options() -> None:
    adapter = requests_adapter(tenant_header=INTERNAL_TENANT_HEADER, max_retries=3)
    assert adapter.max_retries.total == 3
    assert "X-Internal-Tenant-ID" in repr(adapter)


# The resolvers.


def view(*headers: tuple[str, str]) -> RequestView:
    return RequestView(headers=headers)


@pytest.mark.parametrize(
    ("header", "tenant"),
    [
        ("tenant.id=acme", "acme"),
        ("other=1, tenant.id = acme ;prop=x", "acme"),
        ("tenant.id=caf%C3%A9", "café"),
        ("tenant.id=acme,tenant.id=acme", "acme"),
        ("other=1", None),
        ("tenant.idx=acme", None),
    ],
)
def test_the_baggage_resolver_reads_its_entry(header: str, tenant: str | None) -> None:
    """Members, properties, whitespace and percent-encoding as W3C baggage has them."""
    found = BaggageResolver()(view(("baggage", header)))
    assert (found and found.id) == tenant


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ((("baggage", "tenant.id=a,tenant.id=b"),), "duplicate_header"),
        ((("baggage", "tenant.id=a"), ("baggage", "tenant.id=b")), "duplicate_header"),
        ((("baggage", "tenant.id=%0Aevil"),), "invalid_tenant"),
        ((("baggage", "tenant.id=%FF"),), "invalid_tenant"),
        ((("baggage", "tenant.id="),), "invalid_tenant"),
    ],
)
def test_the_baggage_resolver_refuses_bad_entries(
    headers: tuple[tuple[str, str], ...], code: str
) -> None:
    with pytest.raises(Rejection) as caught:
        BaggageResolver()(view(*headers))
    assert (caught.value.status, caught.value.code) == (400, code)


def test_configured_sources_must_agree() -> None:
    policy = build_policy(header="X-Tenant-ID", trusted_internal_header=INTERNAL_TENANT_HEADER)
    agreeing = view(("X-Tenant-ID", "acme"), (INTERNAL_TENANT_HEADER, "acme"))
    assert policy.resolve(agreeing) == tenant_trace.Tenant("acme", "header")
    with pytest.raises(Rejection) as caught:
        policy.resolve(view(("X-Tenant-ID", "acme"), (INTERNAL_TENANT_HEADER, "globex")))
    assert caught.value.status == 403


@pytest.mark.parametrize("option", ["trusted_internal_header", "baggage_key"])
def test_the_new_options_follow_the_usual_rules(option: str) -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        build_policy(TenantPolicy(), **{option: "x"})
    with pytest.raises(ConfigurationError):
        BaggageResolver("tenant id")
