"""Per-run totals (tokens, calls, errors, cost), rolled up onto the run's span, and the
optional run budget that stops a runaway agent loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from opentelemetry.trace import Span, Status, StatusCode

from ..errors import RunBudgetExceeded
from ..usage import Usage
from ..usage.track import attach_run

__all__ = [
    "ROLLUP_KEYS",
    "RunBudget",
    "Totals",
    "current_totals",
    "enter",
    "in_request",
    "leave",
]

#: The run span's attributes of its summed `Usage`, in its field order.
ROLLUP_KEYS = (
    "tenant_trace.usage.input_tokens",
    "tenant_trace.usage.output_tokens",
    "tenant_trace.usage.cache_read_tokens",
    "tenant_trace.usage.cache_creation_tokens",
    "tenant_trace.usage.reasoning_tokens",
)

_current: ContextVar[Totals | None] = ContextVar("tenant_trace.run", default=None)
# One lock for every run's counters: updates are a few additions, contention is negligible,
# and a request that records nothing creates no lock.
_lock = threading.Lock()


def current_totals() -> Totals | None:
    """The totals of the innermost run (a `start_trace` block, else the request), if any:
    what a step counts toward."""
    return _current.get()


def in_request() -> bool:
    """Whether the current context is inside a request (its outermost run has no agent)."""
    totals = _current.get()
    while totals is not None:
        if totals.agent is None:
            return True
        totals = totals.parent
    return False


@dataclass(frozen=True)
class RunBudget:
    """Limits for one run. Crossing one records a ``tenant_trace.budget_exceeded`` event and
    the ``tenant_trace.budget.exceeded`` attribute on the run span and, when
    `raise_on_exceed`, raises `RunBudgetExceeded` at the run's next step.

    Args:
        max_llm_calls: LLM calls allowed in the run.
        max_tokens: input plus output tokens allowed.
        max_seconds: wall time allowed.
        raise_on_exceed: stop the run (default) or only record the crossing.
        clock: monotonic seconds, for `max_seconds` (a test passes a fake).
    """

    max_llm_calls: int | None = None
    max_tokens: int | None = None
    max_seconds: float | None = None
    raise_on_exceed: bool = True
    clock: Callable[[], float] = field(
        default=time.monotonic, repr=False, compare=False, kw_only=True
    )


class Totals:
    """What one run used; thread-safe, since a run's steps may run in several threads."""

    __slots__ = (
        "agent",
        "budget",
        "budget_started",
        "cost",
        "exceeded",
        "failure",
        "llm_calls",
        "parent",
        "span",
        "started",
        "tool_calls",
        "tool_errors",
        "unpriced_calls",
        "usage",
    )

    def __init__(
        self,
        span: Span | None,
        budget: RunBudget | None = None,
        parent: Totals | None = None,
        agent: str | None = None,
        started: float | None = None,
    ) -> None:
        self.span = span
        self.agent = agent  # the agent name of a run (None for a request)
        self.budget = budget
        self.parent = parent
        self.started = time.monotonic() if started is None else started
        self.budget_started = budget.clock() if budget is not None else 0.0
        self.usage = Usage()
        self.llm_calls = self.unpriced_calls = self.tool_calls = self.tool_errors = 0
        self.cost: float | None = None  # of the calls that have a price; None: no such call
        self.exceeded: tuple[str, float, float] | None = None
        self.failure: str | None = None
        if span is not None:
            attach_run(span, self)  # the usage of the spans under the run's span comes here

    def __repr__(self) -> str:
        return f"Totals(llm_calls={self.llm_calls}, tokens={self.usage.total})"

    def chain(self) -> Iterator[Totals]:
        """This run and the runs that enclose it: a step counts toward each of them."""
        totals: Totals | None = self
        while totals is not None:
            yield totals
            totals = totals.parent

    def add_usage(self, usage: Usage, cost: float | None, *, new_call: bool) -> None:
        """The usage of one model call under the run (`UsageSpanProcessor` calls this as the
        call's span ends); `new_call`: a call that no `llm_call` counted yet."""
        for totals in self.chain():
            with _lock:
                totals.usage += usage
                if cost is None:
                    totals.unpriced_calls += 1
                else:
                    totals.cost = (totals.cost or 0.0) + cost
                totals.llm_calls += new_call
            totals._check_limits()

    def count_llm_call(self) -> None:
        for totals in self.chain():
            with _lock:
                totals.llm_calls += 1
            totals._check_limits()

    def add_tool(self, *, failed: bool) -> None:
        for totals in self.chain():
            with _lock:
                totals.tool_calls += 1
                totals.tool_errors += failed

    def fail(self, error_type: str) -> None:
        """Mark the run failed (a failed sub-run fails its parent too, at its end)."""
        self.failure = self.failure or error_type

    def before_step(self) -> None:
        """Called as each step starts: raises once a limit of this run or an outer one is
        crossed and the budget says to stop."""
        for totals in self.chain():
            totals._check_limits()
            if totals.exceeded and totals.budget and totals.budget.raise_on_exceed:
                limit, value, allowed = totals.exceeded
                raise RunBudgetExceeded(limit, value, allowed)

    def _check_limits(self) -> None:
        budget = self.budget
        if budget is None or self.exceeded is not None:
            return
        for limit, value, allowed in (
            ("llm_calls", self.llm_calls, budget.max_llm_calls),
            ("tokens", self.usage.total, budget.max_tokens),
            ("seconds", budget.clock() - self.budget_started, budget.max_seconds),
        ):
            if allowed is not None and value > allowed:
                self.exceeded = (limit, value, allowed)
                if self.span is not None:
                    self.span.add_event(
                        "tenant_trace.budget_exceeded",
                        {"limit": limit, "value": value, "allowed": allowed},
                    )
                    self.span.set_attribute("tenant_trace.budget.exceeded", limit)
                return

    def close(self) -> None:
        """Write the totals on the run span; a failure also fails the enclosing run.

        The tokens go under tenant-trace's own names (`ROLLUP_KEYS`), never
        ``gen_ai.usage.*``: a backend that sums those over a trace's spans must count each
        call once. The cost is there when at least one call had a price; calls without one
        are counted in ``tenant_trace.usage.unpriced_calls``."""
        span = self.span
        if span is not None and span.is_recording():
            if self.llm_calls or self.tool_calls or self.usage.total:
                attributes: dict[str, int | float] = dict(zip(ROLLUP_KEYS, self.usage, strict=True))
                attributes.update(
                    {
                        "tenant_trace.usage.unpriced_calls": self.unpriced_calls,
                        "tenant_trace.run.llm_calls": self.llm_calls,
                        "tenant_trace.run.tool_calls": self.tool_calls,
                        "tenant_trace.run.tool_errors": self.tool_errors,
                    }
                )
                if self.cost is not None:
                    attributes["tenant_trace.usage.cost_usd"] = round(self.cost, 6)
                span.set_attributes(attributes)
            if self.failure:
                span.set_attribute("error.type", self.failure)
                span.set_status(Status(StatusCode.ERROR, self.failure))
        if self.failure and self.parent is not None:
            self.parent.fail(self.failure)


def enter(totals: Totals) -> object:
    """Make `totals` the current run; pair with `leave`."""
    return _current.set(totals)


def leave(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
