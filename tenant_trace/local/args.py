"""Argument types the ``tenant-trace`` subcommands share."""

from __future__ import annotations

import argparse

from ..config import parse_duration
from ..errors import ConfigurationError

__all__ = ["duration"]


def duration(text: str) -> float:
    """``90s``, ``10m``, ``12h``, ``90d`` as seconds (`parse_duration`), for argparse."""
    try:
        return parse_duration(text, "AGE")
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
