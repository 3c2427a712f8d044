"""asend/asend_robust, and running async receivers from sync code."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from ._snapshot import Entry, Receiver

if TYPE_CHECKING:
    from ._signal import Signal

Responses = list[tuple[Receiver, Any]]


def is_async_receiver(receiver: object) -> bool:
    """Whether calling ``receiver`` returns an awaitable to be awaited.

    Coroutine functions, bound async methods, ``functools.partial`` of these,
    objects marked with ``inspect.markcoroutinefunction`` and callable objects
    whose ``__call__`` is ``async def``.
    """
    while isinstance(receiver, functools.partial):
        receiver = receiver.func
    if inspect.iscoroutinefunction(receiver):
        return True
    if inspect.isfunction(receiver) or inspect.ismethod(receiver):
        return False
    return inspect.iscoroutinefunction(type(receiver).__call__)


async def asend(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor | None,
    timeout: float | None = None,
    robust: bool = False,
) -> Responses:
    """Run one send on the running loop (issue 4)."""
    raise NotImplementedError("asend is not built yet")


def send_from_sync(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor | None,
    timeout: float | None,
    robust: bool,
) -> Responses:
    """A sync send with async receivers connected (issue 4)."""
    raise NotImplementedError("async receivers from sync send are not built yet")
