"""The span ends after the last chunk: response bodies that a server iterates after the
middleware returned, each chunk made in its request's context.

`ActiveRequest.stream` wraps a body in one of these. The request's span ends when the body
is exhausted, raises, or is closed by the server (a client that went away), whichever
comes first; a server that never closes it still cannot leak the request's context, since
the context is entered and reset around each chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import AbstractContextManager
from contextvars import Context
from typing import Protocol

__all__ = ["AsyncBody", "SyncBody"]


class Streamed(Protocol):
    """What a body needs of its request (`ActiveRequest`)."""

    def activated(self) -> AbstractContextManager[None]: ...

    def record_exception(self, exc: BaseException) -> None: ...

    def finish(self) -> None: ...


class SyncBody:
    """An iterable body (WSGI, Django's sync streaming responses).

    Args:
        chunks: the application's body.
        request: the request whose span the body ends.
        context: the WSGI middleware's copy of the context: each chunk runs in it, and the
            span ends at ``close()``, which PEP 3333 servers always call (after the last
            chunk, work such as Flask's teardown still belongs to the request).
    """

    __slots__ = ("_chunks", "_context", "_iter", "_request")

    def __init__(
        self, chunks: Iterable[bytes], request: Streamed, context: Context | None = None
    ) -> None:
        self._chunks = chunks
        self._request = request
        self._context = context
        self._iter: Iterator[bytes] | None = None

    def __iter__(self) -> SyncBody:
        return self

    def __next__(self) -> bytes:
        if self._context is not None:
            return self._context.run(self._next)
        return self._next()

    def _next(self) -> bytes:
        with self._request.activated():
            try:
                if self._iter is None:
                    self._iter = iter(self._chunks)
                return next(self._iter)
            except StopIteration:
                if self._context is None:
                    self._request.finish()
                raise
            except BaseException as exc:
                self._request.record_exception(exc)
                if self._context is None:
                    self._request.finish()
                raise

    def close(self) -> None:
        if self._context is not None:
            self._context.run(self._close)
        else:
            self._close()

    def _close(self) -> None:
        try:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                with self._request.activated():
                    close()
        except BaseException as exc:
            self._request.record_exception(exc)
            raise
        finally:
            self._request.finish()


class AsyncBody:
    """An async iterable body (Django's async streaming responses under ASGI)."""

    __slots__ = ("_chunks", "_request")

    def __init__(self, chunks: AsyncIterator[bytes], request: Streamed) -> None:
        self._chunks = chunks
        self._request = request

    def __aiter__(self) -> AsyncBody:
        return self

    async def __anext__(self) -> bytes:
        with self._request.activated():
            try:
                return await self._chunks.__anext__()
            except StopAsyncIteration:
                self._request.finish()
                raise
            except BaseException as exc:  # an error, or the server cancelled the request
                self._request.record_exception(exc)
                self._request.finish()
                raise

    def close(self) -> None:
        self._request.finish()
