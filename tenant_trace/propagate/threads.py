"""Context across threads: work handed to a thread runs in a copy of the context that handed
it over, so the tenant and the current span follow it.

asyncio tasks (`create_task`, `gather`, `TaskGroup`) and `asyncio.to_thread` copy the context
on their own; `ThreadPoolExecutor.submit` (and so `loop.run_in_executor`) and
`threading.Thread` do not. `instrument_threads()`, which `tenant_trace.init()` calls, makes
them; code that prefers no patching uses `carry_context(fn)` or a `ContextExecutor`.

Every submission runs in its own copy, so whatever the work sets, even without resetting it,
stays in that copy: a pool thread reused by a later request never carries this one's tenant.
A thread started inside a request keeps that request's context for as long as it runs, so
start long-lived workers at startup, outside any request.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import Context, copy_context
from typing import Any, Generic, ParamSpec, TypeVar

__all__ = ["ContextExecutor", "carry_context", "instrument_threads", "uninstrument_threads"]

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_enabled = False
_OWN_CONTEXT = sys.version_info >= (3, 14)  # threads take a context= argument


class _Carried(Generic[P, R]):
    """`fn` with the context captured when it was handed over. Each call runs in a fresh copy
    of that context: calls never see each other's changes, and may overlap in threads."""

    __slots__ = ("_context", "_fn")

    def __init__(self, fn: Callable[P, R], context: Context) -> None:
        self._fn = fn
        self._context = context

    def __repr__(self) -> str:
        return f"carry_context({self._fn!r})"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._context.copy().run(self._fn, *args, **kwargs)


def carry_context(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` bound to a copy of the current context (tenant, span, request), to hand to a
    thread, a pool or a callback API: wherever it is called, it sees this context.

    Wrap at the moment of handing over, not where `fn` is defined::

        pool.submit(tenant_trace.carry_context(work), item)
    """
    if isinstance(fn, _Carried):
        return fn
    return _Carried(fn, copy_context())


def _submit(
    submit: Callable[..., Future[R]], fn: Callable[..., R], args: Any, kwargs: Any
) -> Future[R]:
    """Call a pool's `submit` with `fn` carrying the caller's context."""
    carried = carry_context(fn)
    # The pool may start a worker thread in this call: start it in an empty context, since
    # it outlives the submitter and serves later submissions of other tenants.
    return Context().run(submit, carried, *args, **kwargs)


class ContextExecutor(ThreadPoolExecutor):
    """A `ThreadPoolExecutor` whose work runs in a copy of the submitter's context, with no
    patching. Its worker threads themselves never hold a submitter's context."""

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        return _submit(super().submit, fn, args, kwargs)


class _RunInContext:
    """A started thread's ``run``, bound to the context of the code that started it."""

    __slots__ = ("_context", "_run", "_thread")

    def __init__(self, thread: threading.Thread, context: Context) -> None:
        self._thread = thread
        self._run = thread.run
        self._context = context

    def __repr__(self) -> str:
        return f"carry_context({self._run!r})"

    def __call__(self) -> None:
        try:
            self._context.run(self._run)
        finally:
            self._thread.__dict__.pop("run", None)  # no reference cycle once it has run


def instrument_threads() -> None:
    """Make `ThreadPoolExecutor.submit` (so also `loop.run_in_executor` and every subclass)
    and `threading.Thread.start` run the work in a copy of the caller's context.

    Idempotent; `uninstrument_threads` undoes it. A thread takes the context of the code
    that calls its ``start()``.
    """
    global _enabled
    with _lock:
        if _enabled:
            return
        _enabled = True
        original_submit = ThreadPoolExecutor.submit
        original_start = threading.Thread.start

        def submit(
            self: ThreadPoolExecutor, fn: Callable[..., R], /, *args: Any, **kwargs: Any
        ) -> Future[R]:
            if not _enabled:
                return original_submit(self, fn, *args, **kwargs)
            return _submit(functools.partial(original_submit, self), fn, args, kwargs)

        def start(self: threading.Thread) -> None:
            # The instance attribute shadows run() of the class and of any subclass; a second
            # start() (an error) leaves the first one's alone, and so does a thread given its
            # own context (Python 3.14's Thread(context=...)).
            if (
                _enabled
                and not isinstance(self.__dict__.get("run"), _RunInContext)
                and not (_OWN_CONTEXT and self._context is not None)  # type: ignore[attr-defined]
            ):
                self.run = _RunInContext(self, copy_context())  # type: ignore[method-assign]
                try:
                    original_start(self)
                except BaseException:
                    self.__dict__.pop("run", None)
                    raise
            else:
                original_start(self)

        _mark(submit, original_submit)
        _mark(start, original_start)
        ThreadPoolExecutor.submit = submit  # type: ignore[method-assign,assignment]
        threading.Thread.start = start  # type: ignore[method-assign]


def _mark(patched: Any, original: object) -> None:
    patched.__wrapped__ = original
    patched._tenant_trace = True


def uninstrument_threads() -> None:
    """Undo `instrument_threads` (threads already started keep their context). When other
    code has wrapped the methods since, ours stay in place but pass calls straight through."""
    global _enabled
    with _lock:
        _enabled = False
        for cls, name in ((ThreadPoolExecutor, "submit"), (threading.Thread, "start")):
            method = cls.__dict__[name]
            if getattr(method, "_tenant_trace", False):
                setattr(cls, name, method.__wrapped__)


def threads_instrumented() -> bool:
    """Whether `instrument_threads` is in effect."""
    return _enabled
