"""Picklable receivers and senders for tests that run on every backend.

Everything here is module-level, so a worker process (a process pool, a dask
worker) can import it when it unpickles a call.  Receivers are instances of
small classes, so one test can connect several distinct receivers of a kind
and check that the result holds the very objects it connected.
"""

from __future__ import annotations

import gc
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from concsignals import Signal

#: A module-level signal: a worker's ``SignalRef`` resolves to its own copy.
announced = Signal()


class Signals:
    """A signal as a class attribute: its ``SignalRef`` name is dotted."""

    paid = Signal()


class Shop:
    """A sender (classes pickle by reference)."""


class Bank:
    """Another sender."""


class Nobody:
    """A sender nothing is connected for specifically."""


class Reply:
    """Waits ``delay`` seconds, then returns its ``tag``."""

    def __init__(self, tag: str, delay: float = 0.0) -> None:
        self.tag = tag
        self.delay = delay

    def __call__(self, signal: Any, sender: Any, **named: Any) -> str:
        if self.delay:
            time.sleep(self.delay)
        return self.tag

    def __repr__(self) -> str:
        return f"Reply({self.tag!r})"


class Fail:
    """Waits ``delay`` seconds, then raises ``ValueError(tag)`` from ``fail_deep``."""

    def __init__(self, tag: str, delay: float = 0.0) -> None:
        self.tag = tag
        self.delay = delay

    def __call__(self, signal: Any, sender: Any, **named: Any) -> str:
        if self.delay:
            time.sleep(self.delay)
        fail_deep(self.tag)
        return "unreachable"

    def __repr__(self) -> str:
        return f"Fail({self.tag!r})"


def fail_deep(tag: str) -> None:
    """A frame with a name the tests look for in tracebacks."""
    raise ValueError(tag)


class Stop(BaseException):
    """A BaseException that is not an Exception: never caught by concsignals."""


class Halt:
    """Waits ``delay`` seconds, then raises :class:`Stop`."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def __call__(self, signal: Any, sender: Any, **named: Any) -> None:
        if self.delay:
            time.sleep(self.delay)
        raise Stop("halt")

    def __repr__(self) -> str:
        return "Halt()"


class Trace:
    """Touches ``<path>.began``, waits ``delay`` seconds, touches ``<path>.ended``:
    evidence, readable from any process, of whether and when it ran."""

    def __init__(self, path: str, delay: float = 0.0) -> None:
        self.path = path
        self.delay = delay

    def __call__(self, signal: Any, sender: Any, **named: Any) -> str:
        open(self.path + ".began", "w").close()
        time.sleep(self.delay)
        open(self.path + ".ended", "w").close()
        return "traced"

    def began(self) -> bool:
        return os.path.exists(self.path + ".began")

    def ended(self) -> bool:
        return os.path.exists(self.path + ".ended")

    def __repr__(self) -> str:
        return "Trace()"


class Die:
    """Kills the worker process it runs in (a broken process pool)."""

    def __call__(self, signal: Any, sender: Any, **named: Any) -> None:
        os._exit(3)


def echo(signal: Any, sender: Any, **named: Any) -> tuple[str, str, dict[str, Any]]:
    """Returns what it was given, as picklable plain values."""
    return (str(signal), getattr(sender, "__name__", repr(sender)), named)


def where(signal: Any, sender: Any, **named: Any) -> tuple[int, bool, bool]:
    """The worker's pid; whether ``signal`` equals and resolves to ``announced``."""
    resolves = signal.resolve() is announced if hasattr(signal, "resolve") else False
    return (os.getpid(), signal == announced, resolves)


class Token:
    """Returns a fresh random token per call, after ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def __call__(self, signal: Any, sender: Any, **named: Any) -> str:
        time.sleep(self.delay)
        return uuid.uuid4().hex


class WaitForFile:
    """Waits until ``path`` exists (at most ``max_wait`` seconds), then returns
    its ``tag``: a slow receiver that a test can release from any process.
    With ``began``, it first creates that file: the test sees the call begin."""

    def __init__(
        self, tag: str, path: str, max_wait: float, began: str | None = None
    ) -> None:
        self.tag = tag
        self.path = path
        self.max_wait = max_wait
        self.began = began

    def __call__(self, signal: Any, sender: Any, **named: Any) -> str:
        if self.began is not None:
            open(self.began, "w").close()
        give_up = time.monotonic() + self.max_wait
        while not os.path.exists(self.path) and time.monotonic() < give_up:
            time.sleep(0.01)
        return self.tag

    def __repr__(self) -> str:
        return f"WaitForFile({self.tag!r})"


def kills(holder: list[Any], result: Any = "killer") -> Callable[..., Any]:
    """A receiver that drops the objects in ``holder`` (the next receiver's,
    say, so that it dies mid-send) and returns ``result``; a send with
    ``kill=False`` spares them."""

    def kill(**named: Any) -> Any:
        if named.get("kill", True):
            holder.clear()
            # Free-threaded builds free an object dropped by a thread that
            # did not make it only once its maker merges the count; a
            # collection merges it now.
            gc.collect()
        return result

    return kill


class Carried:
    """A monitor's carrier (pickled to a worker): logs its context to
    ``Carried.log`` as ``(what, name, exception type or None)``."""

    log: list[tuple[str, str, Any]] = []

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        Carried.log.append(("enter", self.name, None))

    def __exit__(self, kind: Any, err: Any, tb: Any) -> None:
        Carried.log.append(("exit", self.name, kind))


class Parcel:
    """A picklable object to send, or send as an argument, and watch die."""


async def pid_async(signal: Any, sender: Any, **named: Any) -> int:
    """An async receiver that reports the process it ran in."""
    return os.getpid()
