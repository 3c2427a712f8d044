"""Receivers for the fan-out cases: module-level classes, so they pickle.

Each instance is a distinct receiver (connecting one function ten times would
connect it once).
"""

from __future__ import annotations

import time
from typing import Any


class Sleeper:
    """I/O-bound: sleeps ``seconds``, as a receiver waiting on a network would."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, sender: object, **kwargs: Any) -> int:
        time.sleep(self.seconds)
        return 1


class Burner:
    """CPU-bound: pure-Python arithmetic, ``work`` iterations (holds the GIL)."""

    def __call__(self, sender: object, work: int, **kwargs: Any) -> int:
        return spin(work)


class Noop:
    """Does nothing: what is left is the dispatch overhead."""

    def __call__(self, sender: object, **kwargs: Any) -> int:
        return 1


def spin(work: int) -> int:
    total = 0
    for i in range(work):
        total += i * i
    return total
