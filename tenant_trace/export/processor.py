"""`TenantSpanProcessor`: stamps the current tenant on every span as it starts."""

from __future__ import annotations

import logging
from typing import Any

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
            who = identity_attributes(None if tenant is None else tenant.id)
            stamp = (
                who
                if tenant is None
                else {"tenant.id": tenant.id, "tenant.source": tenant.source, **who}
            )
            if not stamp:
                return
            attributes = _unlocked(span, stamp)
            existing = (span.attributes or {}) if attributes is None else attributes
            if tenant is not None and existing.get("tenant.id") == tenant.id:
                stamp = who  # stamped already (the request's root span is given it)
            if not stamp:
                return
            if attributes is None:
                span.set_attributes(stamp)
            else:
                attributes.update(stamp)
        except Exception:
            logger.debug("tenant_trace: could not stamp the tenant on a span", exc_info=True)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _unlocked(span: Span, stamp: dict[str, Any]) -> dict[str, Any] | None:
    """The SDK span's own attribute dict when the stamp can go straight into it, else
    ``None`` (then `Span.set_attributes`, which validates and counts each value again).

    At ``on_start`` the span is not yet returned to anyone, so no other thread touches it;
    the stamp's values are strings, which the SDK keeps as they are. Straight in only when
    the span's limits cannot apply: no value length limit, and room for the stamp under the
    attribute count limit."""
    bounded = getattr(span, "_attributes", None)
    store = getattr(bounded, "_dict", None)
    if type(store) is not dict or getattr(bounded, "max_value_len", 0) is not None:
        return None
    maxlen = getattr(bounded, "maxlen", 0)
    if maxlen is not None and (type(maxlen) is not int or len(store) + len(stamp) > maxlen):
        return None
    return store if all(type(v) is str for v in stamp.values()) else None
