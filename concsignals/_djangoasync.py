"""The async paths of :class:`concsignals.django.Signal`, in Django's shape.

Django runs an async send's sync receivers one after another in one job
through asgiref's thread-sensitive ``sync_to_async``, and its async receivers
together; a sync send runs the async ones through ``async_to_sync``.  Its
results list the sync receivers first.  :func:`gather` does the same, through
the signal's ``_offload_sync`` hook, with concsignals' rules on top:

* each receiver is checked (``entry.get()``) as its call begins, so a
  receiver whose disconnect returned is never called;
* without ``robust``, the first failure stops the send: the job begins no
  further receiver, the tasks are cancelled, everything is awaited (nothing
  of the send outlives it), and the earliest failure is raised, sync
  receivers first and then connection order, the others attached as notes;
* cancelling the awaiting task does the same and re-raises.

``SyncJob.stopped`` is the one piece of state shared between threads: written
by the loop's thread, read by the job's between calls (one attribute: atomic).

monitor: with a monitor installed, each call is reported to the send's
:class:`~concsignals._monitor_events.SendEvent` (``watch``), whose slots list
the sync receivers first (Django's order of results); the caller ends it.
The job's calls and the tasks' report different slots, and every call has
ended before the send does (see above).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._carriers import exit_all
from ._snapshot import Entry, Receiver

if TYPE_CHECKING:
    from ._monitor_events import SendEvent
    from .django import Signal

Responses = list[tuple[Receiver, Any]]


class Skip(enum.Enum):
    SKIPPED = "disconnected before its call began"


SKIPPED = Skip.SKIPPED


async def gather(
    signal: Signal,
    sync: Sequence[Entry] | None,
    entries: Sequence[Entry],
    sender: Any,
    named: dict[str, Any],
    robust: bool,
    watch: SendEvent | None = None,
    first: int | None = None,
) -> Responses:
    """Run the ``sync`` entries in one offloaded job and the async ``entries``
    as tasks, all at once; return the results, sync ones first.

    ``first``: the slot of ``entries[0]`` in ``watch`` (default: after the
    sync entries).

    Without ``robust``, the first failure stops the rest (see the module
    docstring).  Safe from any number of loops and threads at once: the
    send's state is its own.
    """
    run = SyncJob(signal, sync, sender, named, robust, watch) if sync else None
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = []
    if run is not None:
        futures.append(asyncio.ensure_future(signal._offload_sync(run)))
    if first is None:
        first = len(sync or ())
    futures += [
        loop.create_task(call_async(signal, e, sender, named, robust, watch, first + k))
        for k, e in enumerate(entries)
    ]
    try:
        _, pending = await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        await stop(run, futures)
        raise
    if pending:
        await stop(run, pending)
    return collect(futures, run is not None)


async def call_async(
    signal: Signal,
    entry: Entry,
    sender: Any,
    named: dict[str, Any],
    robust: bool,
    watch: SendEvent | None = None,
    slot: int = 0,
) -> tuple[Receiver, Any] | Skip:
    """One async receiver's call, checked for a disconnect as it begins
    (``slot``: its slot in ``watch``)."""
    r = entry.get()
    if r is None:
        if watch is not None:
            watch.skip(slot)
        return SKIPPED
    entered = None if watch is None else watch.enter(slot, r)
    try:
        value = await r(signal=signal, sender=sender, **named)
    except BaseException as err:
        ended(watch, slot, entered, None, err)
        if not robust or not isinstance(err, Exception):
            raise
        signal._log_robust_failure(r, err)
        return (r, err)
    ended(watch, slot, entered, value, None)
    return (r, value)


def ended(
    watch: SendEvent | None,
    slot: int,
    entered: Any,
    value: Any,
    err: BaseException | None,
) -> None:
    """monitor: call ``slot`` ended; exit what its monitors entered."""
    if entered is not None:
        exit_all(entered, err)
    if watch is not None:
        watch.returned(slot, value, err)


class SyncJob:
    """The sync receivers of an async send, called in order in one thread."""

    def __init__(
        self,
        signal: Signal,
        entries: Sequence[Entry],
        sender: Any,
        named: dict[str, Any],
        robust: bool,
        watch: SendEvent | None = None,
    ) -> None:
        self.signal = signal
        self.watch = watch  # its calls are slots 0, 1, ...
        self.entries = entries
        self.sender = sender
        self.named = named
        self.robust = robust
        #: Set (from the loop's thread) when the send fails elsewhere: no
        #: further receiver begins.  A plain flag: one writer, read between calls.
        self.stopped = False

    def __call__(self) -> Responses:
        signal, watch, responses = self.signal, self.watch, []
        for slot, entry in enumerate(self.entries):
            r = entry.get()
            if self.stopped:
                break
            if r is None:
                if watch is not None:
                    watch.skip(slot)
                continue
            entered = None if watch is None else watch.enter(slot, r)
            try:
                value = r(signal=signal, sender=self.sender, **self.named)
            except BaseException as err:
                ended(watch, slot, entered, None, err)
                if not self.robust or not isinstance(err, Exception):
                    raise
                signal._log_robust_failure(r, err)
                value = err
            else:
                ended(watch, slot, entered, value, None)
            responses.append((r, value))
        return responses


async def stop(run: SyncJob | None, pending: Iterable[asyncio.Future[Any]]) -> None:
    """Stop what is still running of a send and wait until it has ended."""
    if run is not None:
        run.stopped = True
    pending = list(pending)
    for fut in pending:
        if isinstance(fut, asyncio.Task):
            fut.cancel()  # a thread's job cannot be cancelled: it is awaited
    while pending:
        _, pending_set = await asyncio.wait(pending)
        pending = list(pending_set)


def collect(futures: list[asyncio.Future[Any]], has_sync: bool) -> Responses:
    """The results (sync ones first), or the earliest failure with notes."""
    failures = [
        err for f in futures if not f.cancelled() and (err := f.exception()) is not None
    ]
    if failures:
        raised = next(
            (e for e in failures if not isinstance(e, Exception)), failures[0]
        )
        for err in failures:
            if err is not raised:
                raised.add_note(
                    f"concsignals: another receiver also failed in this send: "
                    f"{type(err).__name__}: {err}"
                )
        raise raised
    responses: Responses = list(futures[0].result()) if has_sync else []
    rest = futures[1:] if has_sync else futures
    responses += [
        res for f in rest if not f.cancelled() and (res := f.result()) is not SKIPPED
    ]
    return responses
