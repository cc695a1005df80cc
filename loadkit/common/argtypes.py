"""argparse value types shared by every subcommand: each turns bad text into one clear
line (argparse reports an ``ArgumentTypeError`` as ``loadkit <cmd>: error: ...``)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _parse(text: str, kind: Callable[[str], float], noun: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def positive_int(text: str) -> int:
    value = int(_parse(text, int, "an integer"))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _parse(text, float, "a number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A share in [0, 1)."""
    value = _parse(text, float, "a number")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def confidence_level(text: str) -> float:
    """A confidence strictly between 0.5 and 1."""
    value = _parse(text, float, "a number")
    if not 0.5 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0.5 and 1 (exclusive), got {text}")
    return value


def port_number(text: str) -> int:
    """A TCP port, 0 meaning any free one."""
    value = int(_parse(text, int, "an integer"))
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port in 0..65535, got {text}")
    return value
