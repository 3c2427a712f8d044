"""Running one snapshot: the inline loop, parallel fan-out, result assembly.

Everything here reads entries that a send took from one snapshot, and checks
``entry.get()`` immediately before each call: that check is where "a receiver
disconnected before its call begins is not called" is kept (see
``_snapshot.py``).  Nothing here takes a lock.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

from ._snapshot import Entry, Receiver

if TYPE_CHECKING:
    from ._signal import Signal

logger = logging.getLogger("concsignals")

Responses = list[tuple[Receiver, Any]]


def describe(receiver: object) -> str:
    """The receiver's ``__qualname__`` as Django logs it, or its repr."""
    name = getattr(receiver, "__qualname__", None)
    return name if isinstance(name, str) else repr(receiver)


def log_robust_failure(receiver: object, err: BaseException) -> None:
    """Log a receiver's failure exactly as Django's ``send_robust`` does."""
    logger.error(
        "Error calling %s in Signal.send_robust() (%s)",
        describe(receiver),
        err,
        exc_info=err,
    )


def run(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor | None = None,
    timeout: float | None = None,
    robust: bool = False,
) -> Responses:
    """Run ``entries`` for one send and return the results in connection order."""
    if executor is None:
        executor = signal._executor
    if any(e.is_async for e in entries):
        from . import _asyncio

        return _asyncio.send_from_sync(
            signal, entries, sender, named, executor, timeout, robust
        )
    if executor is None and timeout is None:
        if robust:
            return call_robust(signal, entries, sender, named)
        return call_inline(signal, entries, sender, named)
    return run_parallel(signal, entries, sender, named, executor, timeout, robust)


def call_inline(
    signal: Signal, entries: Sequence[Entry], sender: object, named: dict[str, Any]
) -> Responses:
    """Call each live entry in order in this thread; the first error propagates."""
    return [
        (r, r(signal=signal, sender=sender, **named))
        for e in entries
        if (r := e.get()) is not None
    ]


def call_robust(
    signal: Signal, entries: Sequence[Entry], sender: object, named: dict[str, Any]
) -> Responses:
    """Call each live entry in order in this thread, catching ``Exception``."""
    responses: Responses = []
    for entry in entries:
        r = entry.get()
        if r is None:
            continue
        try:
            response = r(signal=signal, sender=sender, **named)
        except Exception as err:
            log_robust_failure(r, err)
            response = err
        responses.append((r, response))
    return responses


def run_parallel(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor | None,
    timeout: float | None,
    robust: bool,
) -> Responses:
    """Fan the entries out on ``executor`` (issue 3)."""
    raise NotImplementedError("parallel fan-out is not built yet")


def submit(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor | None,
    timeout: float | None = None,
) -> Future[Responses]:
    """Start a robust send and return a Future of its results (issue 3)."""
    raise NotImplementedError("submit is not built yet")
