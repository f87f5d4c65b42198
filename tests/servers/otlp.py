"""A real OTLP/HTTP receiver on loopback for a test: decodes ``ExportTraceServiceRequest`` and
``ExportLogsServiceRequest`` protobuf bodies posted to ``/v1/traces`` and ``/v1/logs``, and
remembers every span, log record and request header it got.

``Receiver(hold=True)`` is a collector that sleeps: each request is held (up to 30 s) until
`Receiver.release` is called; `Receiver.held` counts the requests that arrived, and
`Receiver.answered` those it answered.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

HOLD_SECONDS = 30


def value(any_value: AnyValue) -> Any:
    """The Python value of an OTLP ``AnyValue``."""
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def eventually(condition: Callable[[], bool], timeout: float = 30) -> bool:
    """Whether `condition()` became true within `timeout` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Receiver:
    """Spans and log records received, in arrival order, with the headers they came with."""

    def __init__(self, hold: bool = False) -> None:
        self.spans: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.held = 0
        self.answered = 0
        self._release = threading.Event()
        if not hold:
            self._release.set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def release(self) -> None:
        """Answer the held requests, and every later one at once."""
        self._release.set()

    def wait(self, ready: Callable[[Receiver], bool], timeout: float = 30) -> bool:
        """Whether `ready(self)` became true within `timeout` seconds."""
        return eventually(lambda: ready(self), timeout)

    def trace_ids(self) -> set[str]:
        with self._lock:
            return {s["trace_id"] for s in self.spans}

    def _receive(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        with self._lock:
            self.headers.append(headers)
        if path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            spans = [
                {
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_id": span.parent_span_id.hex() or None,
                    "name": span.name,
                    "scope": scope.scope.name,
                    "attributes": {a.key: value(a.value) for a in span.attributes},
                }
                for resource in request.resource_spans
                for scope in resource.scope_spans
                for span in scope.spans
            ]
            with self._lock:
                self.spans.extend(spans)
            return ExportTraceServiceResponse().SerializeToString()
        logs = ExportLogsServiceRequest.FromString(body)
        records = [
            {
                "trace_id": record.trace_id.hex(),
                "span_id": record.span_id.hex(),
                "body": value(record.body),
                "attributes": {a.key: value(a.value) for a in record.attributes},
            }
            for resource in logs.resource_logs
            for scope in resource.scope_logs
            for record in scope.log_records
        ]
        with self._lock:
            self.logs.extend(records)
        return ExportLogsServiceResponse().SerializeToString()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path not in ("/v1/traces", "/v1/logs"):
                    self.send_error(404)
                    return
                with receiver._lock:
                    receiver.held += 1
                receiver._release.wait(HOLD_SECONDS)
                with receiver._lock:
                    receiver.answered += 1
                answer = receiver._receive(
                    self.path, body, {k.lower(): v for k, v in self.headers.items()}
                )
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the exporter gave up waiting

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[Receiver]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.release()
            self._server.shutdown()
            self._server.server_close()
