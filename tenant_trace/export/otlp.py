"""Exporters chosen as the OpenTelemetry SDK chooses them: by name (``OTEL_TRACES_EXPORTER``,
``OTEL_METRICS_EXPORTER``, ``OTEL_LOGS_EXPORTER``, comma-separated), and OTLP over
``http/protobuf`` or ``grpc`` from the ``OTEL_EXPORTER_OTLP_*`` variables."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from ..errors import ConfigurationError, MissingDependencyError

__all__ = ["Signal", "env", "named_exporters", "otlp_class", "otlp_exporter"]

Signal = Literal["traces", "metrics", "logs"]
T = TypeVar("T")

_CLASSES = {
    "traces": ("trace_exporter", "OTLPSpanExporter"),
    "metrics": ("metric_exporter", "OTLPMetricExporter"),
    "logs": ("_log_exporter", "OTLPLogExporter"),
}
_TRANSPORTS = {"grpc": "grpc", "http/protobuf": "http", "http": "http"}


def env(name: str) -> str | None:
    """An environment variable, ``None`` when unset or blank."""
    return os.environ.get(name, "").strip() or None


def named_exporters(
    signal: Signal,
    names: str | None,
    factories: Mapping[str, Callable[[], T] | None],
    *,
    endpoint: str | None = None,
    fallback: str = "none",
) -> list[T]:
    """The exporters named by `names` (comma-separated) or, when it is ``None``, by
    ``OTEL_<SIGNAL>_EXPORTER``; without either, ``otlp`` when an OTLP endpoint is configured
    (`endpoint` or ``OTEL_EXPORTER_OTLP[_<SIGNAL>]_ENDPOINT``), else `fallback`.

    Args:
        factories: what each known name makes; ``None`` for a name that makes nothing.

    Raises:
        ConfigurationError: a name is not in `factories`.
    """
    upper = signal.upper()
    configured = (
        endpoint
        or env(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT")
        or env("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    chosen = names or env(f"OTEL_{upper}_EXPORTER") or ("otlp" if configured else fallback)
    made: list[T] = []
    for name in (n.strip().lower() for n in chosen.split(",")):
        if name not in factories:
            known = ", ".join(factories)
            raise ConfigurationError(f"unknown {signal} exporter {name!r} ({known})")
        factory = factories[name]
        if factory is not None:
            made.append(factory())
    return made


def otlp_exporter(
    signal: Signal, endpoint: str | None = None, protocol: str | None = None, **options: Any
) -> Any:
    """An OTLP exporter of `signal`; without an explicit `endpoint` the exporter reads the
    OTEL_* variables itself.

    Args:
        endpoint: a base endpoint, as in ``OTEL_EXPORTER_OTLP_ENDPOINT`` (over HTTP the
            signal's path, ``/v1/traces``, ``/v1/metrics`` or ``/v1/logs``, is added).
        protocol: ``http/protobuf`` or ``grpc``; default:
            ``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL``, ``OTEL_EXPORTER_OTLP_PROTOCOL``,
            ``http/protobuf``.
        options: more arguments of the exporter (``headers=``, ``timeout=``).
    """
    protocol = (
        protocol
        or env(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or env("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    exporter = otlp_class(signal, protocol)
    if endpoint:
        if _TRANSPORTS[protocol] == "http":
            endpoint = endpoint.rstrip("/") + f"/v1/{signal}"
        options["endpoint"] = endpoint
    return exporter(**options)


def otlp_class(signal: Signal, protocol: str) -> Any:
    """The OTLP exporter class of `signal` over `protocol` (``http/protobuf`` or ``grpc``).

    Raises:
        ConfigurationError: an unknown protocol.
        MissingDependencyError: the ``otlp`` extra is not installed.
    """
    if protocol not in _TRANSPORTS:
        raise ConfigurationError(f"unknown OTLP protocol {protocol!r} (http/protobuf or grpc)")
    module, name = _CLASSES[signal]
    try:
        package = f"opentelemetry.exporter.otlp.proto.{_TRANSPORTS[protocol]}.{module}"
        return getattr(importlib.import_module(package), name)
    except ImportError:
        raise MissingDependencyError("opentelemetry-exporter-otlp", "otlp") from None
