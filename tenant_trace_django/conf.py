"""The ``TENANT_TRACE`` setting: one dict of options, read through a small conf object.

Its keys are the options of `tenant_trace.resolve.policy.build_policy` (``header``, ``jwt``,
``subdomain``, ``path_prefix``, ``resolver``, ``required``, ``default``, ``allowed``,
``pattern``, ``exclude_paths``, or a ready ``policy``) and of the middleware (``tracing``,
``tracer_provider``). Keys are matched case-insensitively, so ``"HEADER"`` works too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

from tenant_trace.errors import ConfigurationError
from tenant_trace.resolve.policy import POLICY_OPTIONS, TenantPolicy, build_policy
from tenant_trace.server.lifecycle import MIDDLEWARE_OPTIONS, TRACER_OPTIONS, RequestTracer

__all__ = ["OPTIONS", "Settings", "build", "conf", "parse"]

OPTIONS = frozenset(MIDDLEWARE_OPTIONS)


class Settings:
    """Django's settings as tenant-trace reads them, looked up on every access (so that
    ``override_settings`` applies to middleware built afterwards)."""

    @property
    def TENANT_TRACE(self) -> object:
        return getattr(settings, "TENANT_TRACE", {})

    @property
    def MIDDLEWARE(self) -> list[str]:
        return list(getattr(settings, "MIDDLEWARE", None) or [])


conf = Settings()


def parse(value: object) -> dict[str, Any]:
    """The options in a ``TENANT_TRACE`` value, with lower-case keys.

    Raises:
        ConfigurationError: `value` is not a dict, or has unknown or repeated keys.
    """
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"TENANT_TRACE must be a dict, not {type(value).__name__}")
    options: dict[str, Any] = {}
    problems = []
    for key, option in value.items():
        name = key.lower() if isinstance(key, str) else key
        if name not in OPTIONS:
            problems.append(f"unknown option {key!r}")
        elif name in options:
            problems.append(f"option {name!r} given twice")
        options[name] = option
    if problems:
        raise ConfigurationError("TENANT_TRACE has " + ", ".join(problems))
    return options


def build(options: Mapping[str, Any]) -> tuple[TenantPolicy, RequestTracer]:
    """The policy and tracer described by parsed options.

    Raises:
        ConfigurationError: the options do not describe a valid policy.
    """
    policy = build_policy(**{k: v for k, v in options.items() if k in POLICY_OPTIONS})
    tracer = RequestTracer(**{k: v for k, v in options.items() if k in TRACER_OPTIONS})
    return policy, tracer
