"""A framework-neutral, read-only view of an incoming request, for resolvers.

Headers are looked up lazily: a request whose resolver reads one header decodes one header.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["RequestView", "header_text"]


def header_text(value: str) -> str:
    """A header value as text. Servers hand header bytes over as latin-1 characters; bytes
    that are valid UTF-8 are read as UTF-8 (``café`` sent by any client is ``café``), any
    others stay latin-1. The same rule for every server and every header."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


class RequestView:
    """What a resolver may read of a request.

    Args:
        method: the HTTP method, upper-case.
        path: the decoded URL path.
        headers: ``(name, value)`` pairs; names are matched case-insensitively.
        query: the raw query string.
        raw: the framework's own request object (ASGI scope, WSGI environ, Django request),
            for custom resolvers that need more than this view offers.
    """

    __slots__ = ("_headers", "identity", "method", "path", "query", "raw")

    def __init__(
        self,
        method: str = "GET",
        path: str = "/",
        headers: Iterable[tuple[str, str]] = (),
        query: str = "",
        raw: Any = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.raw = raw
        #: Identity ids a resolver found (a JWT's ``user_claim``): ``{"user_id": ...}``.
        self.identity: dict[str, str] = {}
        self._headers = [(k.lower(), v) for k, v in headers]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.method} {self.path})"

    def get_all(self, name: str) -> list[str]:
        """Every value of header `name`, in order (empty when absent)."""
        name = name.lower()
        return [header_text(v) for k, v in self._headers if k == name]

    def get(self, name: str) -> str | None:
        """The first value of header `name`, or ``None``."""
        values = self.get_all(name)
        return values[0] if values else None

    @property
    def host(self) -> str | None:
        """The Host header (``None`` when absent)."""
        return self.get("host")

    def cookie(self, name: str) -> str | None:
        """The value of cookie `name`, or ``None``."""
        for header in self.get_all("cookie"):
            for pair in header.split(";"):
                key, sep, value = pair.partition("=")
                if sep and key.strip() == name:
                    return value.strip().strip('"')
        return None

    @classmethod
    def from_asgi(cls, scope: Mapping[str, Any]) -> RequestView:
        """A view over an ASGI ``http`` or ``websocket`` scope (no copy of the headers)."""
        return _AsgiView(scope)

    @classmethod
    def from_wsgi(cls, environ: Mapping[str, Any]) -> RequestView:
        """A view over a WSGI environ (no copy of the headers)."""
        return _WsgiView(environ)


class _AsgiView(RequestView):
    __slots__ = ("_pairs",)

    def __init__(self, scope: Mapping[str, Any]) -> None:
        self.method = scope.get("method", "GET")
        self.path = scope.get("path", "/")
        self.query = scope.get("query_string", b"").decode("latin-1")
        self.raw = scope
        self.identity = {}
        self._pairs: Iterable[tuple[bytes, bytes]] = scope.get("headers") or ()

    def get_all(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        return [header_text(v.decode("latin-1")) for k, v in self._pairs if k.lower() == key]


class _WsgiView(RequestView):
    __slots__ = ()

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self.method = environ.get("REQUEST_METHOD", "GET")
        # PEP 3333 carries the path as latin-1-decoded bytes; browsers send UTF-8.
        self.path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
        self.query = environ.get("QUERY_STRING", "")
        self.raw = environ
        self.identity = {}

    def get_all(self, name: str) -> list[str]:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = self.raw.get(key)
        return [] if value is None else [header_text(value)]
