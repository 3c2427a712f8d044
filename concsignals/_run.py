"""Which backend runs a send, and ``submit``: the engine's front door.

``_signal`` builds a :class:`~concsignals._send.Send` and hands it here;
:func:`run` picks the backend (inline, threads, pickled, or asyncio when async
receivers are connected) and assembles the outcome.  The asyncio and pickled
backends are imported on first use, and :mod:`concurrent.futures` (with the
:mod:`logging` it brings) when an executor or ``submit`` needs it:
``import concsignals`` stays light.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import TYPE_CHECKING, Any

from . import _inline, _threads, executors, monitoring
from ._send import Responses, Send, Why
from ._snapshot import any_live_async, any_options

if TYPE_CHECKING:
    from collections.abc import Sequence
    from concurrent.futures import Executor, Future

    from ._signal import Signal
    from ._snapshot import Entry


def run(send: Send, executor: Executor | None) -> Responses:
    """Run ``send`` (``executor=None``: inline) and return its results."""
    if monitoring.installed:  # monitor: send began, send ended
        return watched(send, executor)
    return unwatched(send, executor)


def watched(send: Send, executor: Executor | None) -> Responses:
    watch = monitoring.watch(send, executor)
    if watch is None:  # uninstalled meanwhile
        return unwatched(send, executor)
    try:
        responses = unwatched(send, executor)
    except BaseException as err:
        watch.finish(send, err)
        raise
    watch.finish(send, None)
    return responses


def unwatched(send: Send, executor: Executor | None) -> Responses:
    if directed(send):
        from . import _deliver

        if _deliver.needs_loop(send.entries, executor):
            from . import _async

            return _async.send_from_sync(send, executor, _deliver.arun)
        _deliver.run(send, executor)
        return send.assemble()
    if any_live_async(send.entries):  # dead async ones need no loop
        from . import _async

        return _async.send_from_sync(send, executor)
    if executor is None:
        _inline.run(send)
    elif executors.in_process(executor):
        _threads.run(send, executor)
    else:
        from . import _pickled

        _pickled.run(send, executor)
    return send.assemble()


async def arun(send: Send, executor: Executor | None) -> Responses:
    """``asend``: run ``send`` on the running loop."""
    if directed(send):
        from ._deliver import arun as go
    else:
        from ._async import run as go
    watch = monitoring.watch(send, executor) if monitoring.installed else None
    if watch is None:
        return await go(send, executor)
    try:  # monitor: send began, send ended
        responses = await go(send, executor)
    except BaseException as err:
        watch.finish(send, err)
        raise
    watch.finish(send, None)
    return responses


def nobody(
    signal: Signal, sender: object, named: dict[str, Any], robust: bool
) -> Responses:
    """A send with nobody to call: ``[]``, reported to the monitors if any
    are installed, as a send with no slots (a ``concsignals.testing.capture``
    records it).  Every send path's "nobody to call" comes here."""
    if not monitoring.installed:
        return []
    return _inline.send_watched(signal, (), sender, named, robust)


def lean(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    robust: bool,
) -> Responses | None:
    """A sync send without a deadline or a monitor, made without a Send if
    it can be (``None``: it cannot); see ``_lean.py``."""
    from . import _lean

    fired = _lean.fire_only(signal, entries, sender, named, signal._executor)
    if fired is not None:
        return fired
    return _lean.wait_one(signal, entries, sender, named, robust)


def directed(send: Send) -> bool:
    """Whether a connection of ``send`` has options (``_deliver``'s driver)."""
    return send.signal._snapshot.has_opts and any_options(send.entries)


# -- submit -------------------------------------------------------------------

# Every Future submit() returned, until it is done: nothing a caller drops is
# lost half-way.  set.add/discard are atomic.
_in_flight: set[Future[Responses]] = set()


def submit(send: Send, executor: Executor | None) -> Future[Responses]:
    """Start a robust send; return a Future of its results at once.

    The Future is ours (never an executor's): cancelling it before it is
    done succeeds, and closes the send, so no call not yet begun begins.
    """
    from concurrent.futures import Future

    outer: Future[Responses] = Future()
    if not send.entries:
        outer.set_result(nobody(send.signal, send.sender, send.named, send.robust))
        return outer
    _in_flight.add(outer)
    outer.add_done_callback(_in_flight.discard)
    outer.add_done_callback(Closer(send))
    pool = executors.owned_pool()
    if executors.running_on(pool) or (
        executor is not None and executors.running_on(executor)
    ):
        coordinate(send, executor, outer)  # nested: waiting could deadlock
    elif (
        executor is not None
        and send.deadline is None
        and not any(e.is_async for e in send.entries)
        and not directed(send)
    ):
        start_gathered(send, executor, outer)
    else:
        ctx = contextvars.copy_context()
        # Marked as running on the owned pool: a submit() its receivers make
        # and wait for runs in their thread, not queued behind them.
        ctx.run(executors.on_pools.set, (*executors.on_pools.get(), pool))
        try:
            pool.submit(ctx.run, coordinate, send, executor, outer)
        except RuntimeError:  # the owned pool is shut down: interpreter exit
            coordinate(send, executor, outer)
    return outer


class Closer:
    """``outer``'s done-callback: cancelling it closes ``send``.  It holds the
    send only until ``outer`` is done: a finished Future keeps nothing of
    the send (sender, arguments) alive through its callbacks."""

    __slots__ = ("send",)

    def __init__(self, send: Send) -> None:
        self.send: Send | None = send

    def __call__(self, outer: Future[Responses]) -> None:
        send, self.send = self.send, None
        if send is not None and outer.cancelled():
            send.close(Why.CANCELLED, everything=True)


def coordinate(send: Send, executor: Executor | None, outer: Future[Responses]) -> None:
    """Run ``send`` in this thread and resolve ``outer``."""
    try:
        responses = run(send, executor)
    except BaseException as err:  # handed to whoever waits on the Future
        settle(outer, None, err)
    else:
        settle(outer, responses, None)


def start_gathered(send: Send, executor: Executor, outer: Future[Responses]) -> None:
    """Submit every call; the last one to settle resolves ``outer``."""

    watch = monitoring.watch(send, executor) if monitoring.installed else None

    def resolve() -> None:
        try:
            responses = send.assemble()
        except BaseException as err:
            if watch is not None:  # monitor: send ended
                watch.finish(send, err)
            settle(outer, None, err)
        else:
            if watch is not None:  # monitor: send ended
                watch.finish(send, None)
            settle(outer, responses, None)

    send.on_settled = resolve
    if executors.in_process(executor):
        _threads.start(send, executor, range(len(send.entries)))
        return
    from . import _pickled

    # The send cancels what it hands over when it closes (Send.hand_over).
    _pickled.hand_off(send, executor, range(len(send.entries)))


def settle(outer: Future[Any], value: Any, err: BaseException | None) -> None:
    from concurrent.futures import InvalidStateError

    with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
        if err is not None:
            outer.set_exception(err)
        else:
            outer.set_result(value)
