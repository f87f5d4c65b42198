"""A step to open, as a context manager (sync and async) and as a decorator of functions,
coroutines, generators and async generators; for a generator the step covers the whole
iteration."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar, cast

from .handles import LLMCall, Step

__all__ = ["StepSpec"]

H = TypeVar("H", bound=Step)
F = TypeVar("F", bound=Callable[..., Any])


class StepSpec(Generic[H]):
    """A step to open: ``with`` / ``async with`` give a fresh handle each time, and as a
    decorator every call of the function is one step."""

    __slots__ = ("_open", "_stack")

    def __init__(self, open_: Callable[[], H]) -> None:
        self._open = open_
        self._stack: list[H] = []

    def __enter__(self) -> H:
        handle = self._open()
        handle._activate()
        self._stack.append(handle)
        return handle

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        handle = self._stack.pop()
        handle._deactivate()
        handle._close(exc)

    async def __aenter__(self) -> H:
        return self.__enter__()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        if inspect.isasyncgenfunction(func):
            return cast(F, self._wrap_async_generator(func))
        if inspect.isgeneratorfunction(func):
            return cast(F, self._wrap_generator(func))
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._open_for_call() as handle:
                    return _observe(handle, await func(*args, **kwargs))

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._open_for_call() as handle:
                return _observe(handle, func(*args, **kwargs))

        return cast(F, wrapper)

    @contextmanager
    def _open_for_call(self) -> Iterator[H]:
        handle = self._open()
        handle._activate()
        try:
            yield handle
        except BaseException as exc:
            handle._deactivate()
            handle._close(exc)
            raise
        handle._deactivate()
        handle._close(None)

    def _wrap_generator(
        self, func: Callable[..., Generator[Any, Any, Any]]
    ) -> Callable[..., Generator[Any, Any, Any]]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            handle = self._open()
            error: BaseException | None = None
            try:
                # The step is current only while the generator runs, never across a yield,
                # so interleaved consumers cannot see each other's steps.
                with handle._active():
                    inner = func(*args, **kwargs)
                first = True
                while True:
                    with handle._active():
                        try:
                            item = next(inner)
                        except StopIteration as stop:
                            return stop.value
                    if first:
                        handle._first_chunk()
                        first = False
                    yield item
            except BaseException as exc:
                error = exc
                if isinstance(exc, GeneratorExit):
                    with handle._active():
                        inner.close()
                raise
            finally:
                handle._close(error)

        return wrapper

    def _wrap_async_generator(
        self, func: Callable[..., AsyncGenerator[Any, Any]]
    ) -> Callable[..., AsyncGenerator[Any, Any]]:
        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            handle = self._open()
            error: BaseException | None = None
            try:
                with handle._active():
                    inner = func(*args, **kwargs)
                first = True
                while True:
                    with handle._active():
                        try:
                            item = await inner.__anext__()
                        except StopAsyncIteration:
                            return
                    if first:
                        handle._first_chunk()
                        first = False
                    yield item
            except BaseException as exc:
                error = exc
                if isinstance(exc, GeneratorExit):
                    with handle._active():
                        await inner.aclose()
                raise
            finally:
                handle._close(error)

        return wrapper


def _observe(handle: Step, result: Any) -> Any:
    """A decorated LLM function that returns a provider response records its usage."""
    if isinstance(handle, LLMCall) and result is not None:
        handle.record_response(result)
    return result
