"""OTLP exporters for traces and metrics, chosen like the OpenTelemetry SDK chooses them."""

from __future__ import annotations

import importlib
import os
from typing import Any, Literal

from ..errors import ConfigurationError, MissingDependencyError

__all__ = ["env", "otlp_exporter"]

_CLASSES = {
    "traces": ("trace_exporter", "OTLPSpanExporter"),
    "metrics": ("metric_exporter", "OTLPMetricExporter"),
}


def env(name: str) -> str | None:
    """An environment variable, ``None`` when unset or blank."""
    return os.environ.get(name, "").strip() or None


def otlp_exporter(
    signal: Literal["traces", "metrics"], endpoint: str | None, protocol: str | None
) -> Any:
    """An OTLP exporter of `signal`; without an explicit `endpoint` the exporter reads the
    OTEL_* variables itself.

    Args:
        endpoint: a base endpoint, as in ``OTEL_EXPORTER_OTLP_ENDPOINT`` (over HTTP the
            signal's path, ``/v1/traces`` or ``/v1/metrics``, is added).
        protocol: ``http/protobuf`` or ``grpc``; default:
            ``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL``, ``OTEL_EXPORTER_OTLP_PROTOCOL``,
            ``http/protobuf``.
    """
    protocol = (
        protocol
        or env(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or env("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    transports = {"grpc": "grpc", "http/protobuf": "http", "http": "http"}
    if protocol not in transports:
        raise ConfigurationError(f"unknown OTLP protocol {protocol!r} (http/protobuf or grpc)")
    transport = transports[protocol]
    module, name = _CLASSES[signal]
    try:
        exporter = getattr(
            importlib.import_module(f"opentelemetry.exporter.otlp.proto.{transport}.{module}"), name
        )
    except ImportError:
        raise MissingDependencyError("opentelemetry-exporter-otlp", "otlp") from None
    if not endpoint:
        return exporter()
    if transport == "http":
        endpoint = endpoint.rstrip("/") + f"/v1/{signal}"
    return exporter(endpoint=endpoint)
