"""The one answer to a `Rejection`, whatever the framework: counted once, then built."""

from __future__ import annotations

from http import HTTPStatus
from typing import NamedTuple

from .. import metrics
from ..errors import Rejection

__all__ = ["Refusal", "refuse"]


class Refusal(NamedTuple):
    """The response to a rejection: status, reason phrase, headers and JSON body."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        """``"401 Unauthorized"``, as WSGI's ``start_response`` takes it."""
        return f"{self.status} {self.reason}"


def refuse(rejection: Rejection) -> Refusal:
    """The response to `rejection`, counted in ``tenant_trace.requests.rejected`` by reason."""
    metrics.record_rejection(rejection.code)
    try:
        reason = HTTPStatus(rejection.status).phrase
    except ValueError:
        reason = "Error"
    return Refusal(rejection.status, reason, rejection.response_headers(), rejection.body())
