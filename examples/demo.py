"""The demo: three tenants call the FastAPI example; their spans are printed per tenant.

    make demo        (or: python -m examples.demo)

Requests name their tenant by header, by a signed JWT and by subdomain; a conflicting and a
malformed request are refused with JSON errors. Every span the requests produced is then
printed as a tree, grouped by the tenant stamped on it.
"""

from __future__ import annotations

import time
from collections import defaultdict

import jwt
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # the example's tenant_trace.init() adds to this provider

from fastapi.testclient import TestClient  # noqa: E402

from examples.common import JWT_SECRET  # noqa: E402
from examples.fastapi_app import app  # noqa: E402


def token(tenant: str) -> str:
    return jwt.encode({"tenant_id": tenant, "exp": time.time() + 60}, JWT_SECRET, "HS256")


REQUESTS = [
    ("header X-Tenant-ID: acme", {"X-Tenant-ID": "acme"}),
    ("Bearer JWT with tenant_id=globex", {"Authorization": f"Bearer {token('globex')}"}),
    ("Host: initech.example.com", {"Host": "initech.example.com"}),
    (
        "header acme + JWT globex (conflict)",
        {"X-Tenant-ID": "acme", "Authorization": f"Bearer {token('globex')}"},
    ),
    ("header with a line break", {"X-Tenant-ID": "evil\r\nSet-Cookie: x"}),
    ("no tenant at all", {}),
]


def print_tree(span: ReadableSpan, children: dict[int, list[ReadableSpan]], depth: int) -> None:
    attributes = span.attributes or {}
    duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    extra = {
        k: v for k, v in attributes.items() if k in ("http.route", "http.response.status_code")
    }
    print(
        f"    {'  ' * depth}{span.name:<28} {duration:7.2f} ms  tenant.id={attributes.get('tenant.id')}  {extra}"
    )
    for child in sorted(children[span.context.span_id], key=lambda s: s.start_time or 0):
        print_tree(child, children, depth + 1)


def main() -> None:
    client = TestClient(app)
    print("tenant-trace demo: the FastAPI example app, three tenants and three bad requests\n")
    for label, headers in REQUESTS:
        response = client.post("/chat", json={"message": "hello"}, headers=headers)
        print(f"  {label:<40} -> {response.status_code} {response.json()}")
    spans = exporter.get_finished_spans()
    children: dict[int, list[ReadableSpan]] = defaultdict(list)
    ids = {s.context.span_id for s in spans}
    roots_by_tenant: dict[str, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        if span.parent is not None and span.parent.span_id in ids:
            children[span.parent.span_id].append(span)
        else:
            roots_by_tenant[str((span.attributes or {}).get("tenant.id", "(no tenant)"))].append(
                span
            )
    print(f"\n{len(spans)} spans, grouped by tenant:\n")
    for tenant, roots in sorted(roots_by_tenant.items()):
        print(f"  tenant {tenant}")
        for root in roots:
            print_tree(root, children, 0)
        print()
    provider.shutdown()


if __name__ == "__main__":
    main()
