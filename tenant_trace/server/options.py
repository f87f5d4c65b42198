"""The options every tenant-trace middleware takes, checked once for every framework."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from .. import metrics
from ..errors import ConfigurationError, OptionNameError
from ..resolve.policy import (
    POLICY_OPTIONS,
    PolicyOptions,
    TenantPolicy,
    build_policy,
    unknown_options,
)
from ..resolve.resolvers import check_sync
from .lifecycle import RequestTracer

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "MIDDLEWARE_OPTIONS",
    "TRACER_OPTIONS",
    "MiddlewareOptions",
    "configure",
    "options_from",
]


class MiddlewareOptions(PolicyOptions, total=False):
    """The options of every tenant-trace middleware: the policy's, and the tracer's."""

    tracer_provider: trace.TracerProvider | None
    tracing: bool
    trust_traceparent: bool
    identity_headers: Mapping[str, str]


#: The middleware options that are not policy options.
TRACER_OPTIONS = ("tracer_provider", "tracing", "trust_traceparent", "identity_headers")
#: Every middleware option (`MiddlewareOptions`).
MIDDLEWARE_OPTIONS = POLICY_OPTIONS + TRACER_OPTIONS


def configure(
    *, sync: bool = False, **options: Unpack[MiddlewareOptions]
) -> tuple[TenantPolicy, RequestTracer]:
    """The policy and tracer a middleware with these options uses; `sync`: a middleware
    that cannot await (WSGI).

    Raises:
        ConfigurationError: an option is unknown or invalid (the message names it), or
            `sync` and the resolver is ``async def``.
    """
    tracer = RequestTracer(
        tracer_provider=options.pop("tracer_provider", None),
        tracing=options.pop("tracing", True),
        trust_traceparent=options.pop("trust_traceparent", None),
        identity_headers=options.pop("identity_headers", None),
    )
    policy = build_policy(**options)
    if sync:
        check_sync(policy.resolver)
    if policy.allowed_ids:
        metrics.keep_tenants(policy.allowed_ids)
    return policy, tracer


def options_from(value: object, where: str) -> dict[str, Any]:
    """The middleware options in a settings mapping (Django's ``TENANT_TRACE``), with keys
    matched case-insensitively.

    Raises:
        ConfigurationError: `value` is not a mapping.
        OptionNameError: a key is unknown or given twice (in two spellings).
    """
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where} must be a dict, not {type(value).__name__}")
    options = {str(key).lower(): option for key, option in value.items()}
    if len(options) < len(value):
        raise OptionNameError(f"{where} has an option given twice")
    unknown = sorted(set(options) - set(MIDDLEWARE_OPTIONS))
    if unknown:
        raise OptionNameError(f"{where}: {unknown_options(unknown, MIDDLEWARE_OPTIONS)}")
    return options
