"""`TenantSpanProcessor`: stamps the current tenant on every span as it starts."""

from __future__ import annotations

import logging

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from ..context import current
from ..identity import identity_attributes

__all__ = ["TenantSpanProcessor"]

logger = logging.getLogger("tenant_trace")


class TenantSpanProcessor(SpanProcessor):
    """Adds ``tenant.id`` and ``tenant.source`` from the current context to each span, and
    the current `identity` (``user.id``, ``session.id``, ``gen_ai.conversation.id``).

    It sees every span of the provider, including those of other instrumentation (an LLM
    client, httpx, a database driver), so all of a request's spans carry its tenant. It never
    raises: a failure is logged and the span goes on unstamped.
    """

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            tenant = current()
            if tenant is not None and (span.attributes or {}).get("tenant.id") != tenant.id:
                span.set_attributes({"tenant.id": tenant.id, "tenant.source": tenant.source})
            who = identity_attributes(None if tenant is None else tenant.id)
            if who:
                span.set_attributes(who)
        except Exception:
            logger.debug("tenant_trace: could not stamp the tenant on a span", exc_info=True)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
