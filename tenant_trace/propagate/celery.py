"""Celery: the tenant and the trace go with every task.

`instrument_celery()` connects Celery signal handlers, in the process that publishes tasks
and in the worker:

- ``before_task_publish``: the current trace context (``traceparent``) and tenant go into
  the task message's headers; a task published without a tenant carries none;
- ``task_prerun``: the task runs with that tenant current, under a CONSUMER span
  ``celery.run {task name}`` that is a child of the span that published it;
- ``task_failure``: the exception is recorded on the span;
- ``task_postrun``: the outcome is recorded, the span ends and the context is reset, after
  every task, in the processes of the prefork pool and the threads of the threads pool.

Tasks that publish more tasks (chains, callbacks, retries) pass the tenant on. A task run
eagerly (``apply()``, ``task_always_eager``) stays in its caller's context.

Requires the ``celery`` extra: ``pip install 'tenant-trace[celery]'``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, MutableMapping
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind

from ..agent.handles import TENANT_CARRIER_KEY
from ..context import Tenant, attach, detach, validate_tenant_id
from ..errors import ConfigurationError, InvalidTenantError, MissingDependencyError
from ..telemetry import record_error, tracer
from .http import inject

__all__ = ["TENANT_HEADER", "instrument_celery", "uninstrument_celery"]

logger = logging.getLogger("tenant_trace")

#: The task message header that carries the tenant id.
TENANT_HEADER = TENANT_CARRIER_KEY
_UID = "tenant_trace.celery"


class _Running:
    """A task in progress in this context: its span and what to reset after it."""

    __slots__ = ("otel_token", "span", "stack_token", "task_id", "tenant_token")

    def __init__(
        self, task_id: str, span: trace.Span, tenant_token: Token[Tenant | None] | None
    ) -> None:
        self.task_id = task_id
        self.span = span
        self.tenant_token = tenant_token
        self.otel_token: object = None
        self.stack_token: Token[tuple[_Running, ...]] | None = None

    def __repr__(self) -> str:
        return f"_Running({self.task_id!r})"


_running: ContextVar[tuple[_Running, ...]] = ContextVar("tenant_trace.celery", default=())


class _RequestGetter(Getter[Any]):
    """Reads a task request, where the message headers that `_on_publish` wrote are
    attributes."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = getattr(carrier, key, None)
        if value is None:
            return None
        if isinstance(value, str) or not isinstance(value, Iterable):
            return [str(value)]
        return [str(v) for v in value]

    def keys(self, carrier: Any) -> list[str]:
        return []


_GETTER = _RequestGetter()


def _celery() -> Any:
    try:
        return importlib.import_module("celery")  # the optional dependency, not this module
    except ImportError:
        raise MissingDependencyError("celery", "celery") from None


def instrument_celery(app: Any = None) -> None:
    """Connect the signal handlers (idempotent); call it where the Celery app is defined,
    so that both the publishers and the workers run it, after `tenant_trace.init()`.

    Args:
        app: the Celery app, to check that its message protocol carries headers (protocol
            2, Celery's default). The handlers serve every app in the process.

    Raises:
        MissingDependencyError: Celery is not installed.
        ConfigurationError: `app` uses task message protocol 1.
    """
    celery = _celery()
    if app is not None and int(app.conf.task_protocol) < 2:
        raise ConfigurationError("tenant_trace needs Celery's task message protocol 2")
    signals = celery.signals
    signals.before_task_publish.connect(_on_publish, weak=False, dispatch_uid=_UID)
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid=_UID)
    signals.task_failure.connect(_on_failure, weak=False, dispatch_uid=_UID)
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid=_UID)


def uninstrument_celery() -> None:
    """Disconnect the signal handlers."""
    signals = _celery().signals
    for signal in (
        signals.before_task_publish,
        signals.task_prerun,
        signals.task_failure,
        signals.task_postrun,
    ):
        signal.disconnect(dispatch_uid=_UID)


def _on_publish(headers: MutableMapping[str, Any] | None = None, **_: Any) -> None:
    if headers is None:
        return
    try:
        inject(headers, tenant_header=TENANT_HEADER)
    except Exception:
        logger.exception("tenant_trace: could not add the context to a task message")


def _on_prerun(task_id: str, task: Any, **_: Any) -> None:
    tenant_token = None
    try:
        request = task.request
        if getattr(request, "is_eager", False):
            parent = otel_context.get_current()  # run inline: stay in the caller's context
        else:
            # A fresh context: nothing left in this worker thread may become the parent.
            parent = propagate.extract(request, otel_context.Context(), _GETTER)
            tenant_token = attach(_tenant(request))  # before the span, which it stamps
        attributes = {
            "messaging.system": "celery",
            "messaging.operation.type": "process",
            "messaging.operation.name": "run",
            "messaging.message.id": task_id,
            "celery.task.name": task.name,
        }
        queue = (getattr(request, "delivery_info", None) or {}).get("routing_key")
        if queue:
            attributes["messaging.destination.name"] = queue
        span = tracer("tenant_trace.celery").start_span(
            f"celery.run {task.name}", parent, SpanKind.CONSUMER, attributes
        )
    except Exception:
        logger.exception("tenant_trace: could not start the task span")
        if tenant_token is not None:
            detach(tenant_token)
        return
    running = _Running(task_id, span, tenant_token)
    running.otel_token = otel_context.attach(trace.set_span_in_context(span, parent))
    running.stack_token = _running.set((*_running.get(), running))


def _tenant(request: Any) -> Tenant | None:
    values = _GETTER.get(request, TENANT_HEADER)
    if not values:
        return None
    try:
        return Tenant(validate_tenant_id(values[0]), "celery")
    except InvalidTenantError as exc:
        logger.warning("tenant_trace: task message with an invalid tenant (%s); run without", exc)
        return None


def _find(task_id: str) -> _Running | None:
    for running in reversed(_running.get()):
        if running.task_id == task_id:
            return running
    return None


def _on_failure(task_id: str, exception: BaseException | None = None, **_: Any) -> None:
    running = _find(task_id)
    if running is None or exception is None:
        return
    record_error(running.span, exception)


def _on_postrun(task_id: str, state: str | None = None, **_: Any) -> None:
    stack = _running.get()
    if _find(task_id) is None:
        return
    # Normally the top of the stack; tasks above it (eager ones whose postrun never came)
    # are closed first, so that every reset happens in reverse order.
    for running in reversed(stack):
        try:
            if running.task_id == task_id and state:
                running.span.set_attribute("celery.task.state", state)
            running.span.end()
        except Exception:
            logger.debug("tenant_trace: could not end a task span", exc_info=True)
        finally:
            _running.reset(running.stack_token)  # type: ignore[arg-type]
            otel_context.detach(running.otel_token)  # type: ignore[arg-type]
            if running.tenant_token is not None:
                detach(running.tenant_token)
        if running.task_id == task_id:
            return
