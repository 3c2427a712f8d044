"""What runs right now: the calls ``disconnect(wait=True)`` and ``drain`` wait for.

``disconnect`` makes the entry's ``get`` return ``None`` (``_registry``), so
no call of it begins afterwards: every gate reads ``get`` immediately before
the call.  Waiting is then the second half of an RCU update
(``synchronize_rcu`` after unpublishing): wait until every reader that may
have read the entry live has finished with it.  The readers leave two kinds
of marks, each written only by the thread making the call, read by a waiter
without any lock a receiver could need:

* **Inline sends** (the plain loops, which must stay as cheap as a plain
  loop): the sending thread pushes a :data:`Mark` on its own stack
  (``local.stack``) before its first call and pops it after its last; what
  it writes anyway (its responses) and a count of skips tell where it is,
  so a call costs nothing more.  A waiter reads the skips, the length of
  the responses, and the skips again (until the two agree): the entry at
  that position is the one that may run; a later one can only begin after
  that read, and so after ``get`` returns ``None``.
* **Calls** made through a gate (``Send.begin``/``Send.end``, the lean jobs):
  a :class:`Running` in the set :data:`calls` from just before the gate
  reads ``get`` until the call has ended (a call abandoned at a deadline is
  still running, and still marked; a call handed to another process is
  marked until its future is done).

A mark is made *before* its reader reads ``get``, and a waiter scans only
*after* ``get`` returns ``None``: a reader the scan misses reads ``None``
and makes no call.

What a waiter never waits for: its own thread's sends (a receiver may
disconnect itself, or another receiver of a send it is part of, with
``wait=True``: those calls are up its own stack) and the call of its own
task.  A sync wait on an event loop's thread for a call running as a task on
that very loop refuses with ``RuntimeError``: the loop could not run it to
its end (``adisconnect`` waits without blocking it).

Fire-and-forget Futures not yet done are in :data:`futures` (with their
signal), for ``drain``.

Waiting polls the marks with a backoff (from 50 µs to 10 ms): the readers
pay nothing to wake a waiter, which is what keeps the inline send cheap.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ._signal import Signal
    from ._snapshot import Entry

#: An inline send under way: ``[signal, entries, responses, skipped]``.  The
#: sending thread appends to ``responses`` when a call has returned and
#: counts in ``skipped`` each entry its gate found gone, so the entry it is
#: at (calling, or about to read) is ``entries[len(responses) + skipped]``.
Mark = list[Any]


class Running:
    """One call under way: its signal and entry, the thread it runs in and
    its task there (``None``: not a task; ``thread`` ``None``: out of
    process)."""

    __slots__ = ("entry", "signal", "task", "thread")

    def __init__(self, signal: Signal, entry: Entry, here: bool = True) -> None:
        self.signal = signal
        self.entry = entry
        self.thread = threading.get_ident() if here else None
        self.task = current_task() if here else None


#: Every call under way (``set.add``/``discard`` are atomic).
calls: set[Running] = set()

#: Every fire-and-forget Future not yet done, with its signal.
futures: dict[Future[Any], Signal] = {}

# Each thread's stack of inline sends under way, by thread ident.  A thread
# adds its own on first use (under _stacks_lock) and only it writes it;
# waiters copy it.
_stacks: dict[int, list[Mark]] = {}
_stacks_lock = threading.Lock()


class _Local(threading.local):
    def __init__(self) -> None:
        self.stack: list[Mark] = []
        with _stacks_lock:
            _stacks[threading.get_ident()] = self.stack


#: ``local.stack``: this thread's inline sends under way, innermost last.
local = _Local()


def enter(signal: Signal, entry: Entry, here: bool = True) -> Running:
    """Mark a call about to pass its gate (before ``get`` is read)."""
    mark = Running(signal, entry, here)
    calls.add(mark)
    return mark


def leave(mark: Running | None) -> None:
    if mark is not None:
        calls.discard(mark)


def track(fut: Future[Any], signal: Signal) -> None:
    """A fire-and-forget Future, until it is done (for ``drain``)."""
    futures[fut] = signal
    fut.add_done_callback(_untrack)


def _untrack(fut: Future[Any]) -> None:
    futures.pop(fut, None)


# -- what a waiter sees -------------------------------------------------------------


def current_task() -> object:
    aio = sys.modules.get("asyncio")
    if aio is None or aio.events._get_running_loop() is None:
        return None
    return aio.current_task()


def thread_name(ident: int) -> str:
    for t in threading.enumerate():
        if t.ident == ident:
            return f"thread {t.name!r}"
    return f"thread {ident}"


def receiver_of(entry: Entry) -> str:
    r = entry.get()
    return "a receiver" if r is None else repr(r)


Match = Callable[["Signal", "Entry"], bool]


def busy(match: Match, gone: Sequence[Entry], blocking: bool) -> list[str]:
    """What still runs of the entries ``match`` accepts, not counting this
    thread's sends and this task's call; ``gone``: the entries being waited
    for (named in the description).  ``blocking``: the waiter blocks its
    thread, so a call of a task on this thread's loop can never end."""
    me = threading.get_ident()
    task = current_task()
    found: list[str] = []
    for mark in list(calls):
        if not match(mark.signal, mark.entry):
            continue
        if mark.thread == me:
            if mark.task is None or mark.task is task:
                continue  # up this thread's stack, or this very task
            if blocking:
                raise RuntimeError(
                    f"a call of {describe_gone(mark.entry, gone)} runs as a task "
                    "on the event loop of the thread that waits for it: it could "
                    "never end.  Use 'await signal.adisconnect(...)' or "
                    "'await signal.adrain(...)' there."
                )
        found.append(f"{describe_gone(mark.entry, gone)} in {where(mark)}")
    for ident, marks in list(_stacks.items()):
        if ident == me:
            continue
        for send in list(marks):
            entry = at(send)
            if entry is not None and match(send[0], entry):
                name = describe_gone(entry, gone)
                found.append(f"{name} in {thread_name(ident)}")
    return found


def at(mark: Mark) -> Entry | None:
    """The entry an inline send is at (see :data:`Mark`); ``None``: past
    its last."""
    _, entries, responses, _ = mark
    while True:
        skipped = mark[3]
        k = len(responses) + skipped
        if mark[3] == skipped:
            break
    return entries[k] if k < len(entries) else None


def where(mark: Running) -> str:
    if mark.thread is None:
        return "another process"
    return thread_name(mark.thread)


def describe_gone(entry: Entry, gone: Sequence[Entry]) -> str:
    for e in gone:
        if e is entry:
            return "the disconnected receiver"
    return receiver_of(entry)


def count(entry: Entry) -> int:
    """How many calls of ``entry`` are under way (in any thread)."""
    running = sum(1 for m in list(calls) if m.entry is entry and m.thread is not None)
    handed = sum(1 for m in list(calls) if m.entry is entry and m.thread is None)
    inline = sum(
        1 for marks in list(_stacks.values()) for s in list(marks) if at(s) is entry
    )
    return running + handed + inline


def refuse_inside(match: Match) -> None:
    """A drain from inside a call it would wait for: ``RuntimeError``."""
    me = threading.get_ident()
    task = current_task()
    inside = any(
        m.thread == me
        and (m.task is None or m.task is task)
        and match(m.signal, m.entry)
        for m in list(calls)
    ) or any(
        (entry := at(mark)) is not None and match(mark[0], entry)
        for mark in local.stack
    )
    if inside:
        raise RuntimeError(
            "drain() was called inside a call of a signal it waits for: it would "
            "wait for itself.  Drain from outside every receiver (at shutdown)."
        )


def pending(signal: Signal | None) -> list[str]:
    """Fire-and-forget calls not yet done (of ``signal``; ``None``: any)."""
    return [
        f"a fire-and-forget call of {sig!r}"
        for sig in list(futures.values())
        if signal is None or sig is signal
    ]


BACKOFF = (5e-5, 1e-2)


def pauses(
    check: Callable[[], list[str]], timeout: float | None, what: str
) -> Iterator[float]:
    """How long to pause between looks, until ``check`` finds nothing;
    ``TimeoutError`` naming what it found last once ``timeout`` passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause, longest = BACKOFF
    while found := check():
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{what}: still running after {timeout} s: " + "; ".join(found)
                )
            pause = min(pause, left)
        yield pause
        pause = min(pause * 2, longest)


def wait(check: Callable[[], list[str]], timeout: float | None, what: str) -> None:
    for pause in pauses(check, timeout, what):
        time.sleep(pause)


async def await_(
    check: Callable[[], list[str]], timeout: float | None, what: str
) -> None:
    """:func:`wait` without blocking the running loop."""
    import asyncio

    for pause in pauses(check, timeout, what):
        await asyncio.sleep(pause)


def waiting_for(gone: Sequence[Entry], blocking: bool) -> Callable[[], list[str]]:
    """What still runs of the disconnected entries ``gone``."""

    def match(signal: Signal, entry: Entry) -> bool:
        return any(entry is e for e in gone)

    return lambda: busy(match, gone, blocking)


def draining(signal: Signal | None, blocking: bool) -> Callable[[], list[str]]:
    """What still runs of ``signal`` (``None``: of every signal); refused
    inside a call it would wait for."""

    def match(sig: Signal, entry: Entry) -> bool:
        return signal is None or sig is signal

    refuse_inside(match)
    return lambda: busy(match, (), blocking) + pending(signal)


def drain(timeout: float | None = None) -> None:
    """Wait until no call of any signal is under way: every call begun has
    ended and every fire-and-forget call is done (for shutdown: a gunicorn
    ``worker_exit`` hook, an ASGI lifespan's shutdown).  ``timeout``:
    ``TimeoutError`` naming what still runs.  Refused with ``RuntimeError``
    inside a receiver's call (it would wait for itself)."""
    wait(draining(None, True), timeout, "concsignals.drain()")


async def adrain(timeout: float | None = None) -> None:
    """:func:`drain` without blocking the running loop."""
    await await_(draining(None, False), timeout, "concsignals.adrain()")


def after_fork_in_child() -> None:
    """Only the forking thread goes on in the child: the other threads'
    marks are gone with them."""
    me = threading.get_ident()
    global _stacks_lock
    _stacks_lock = threading.Lock()
    for ident in list(_stacks):
        if ident != me:
            del _stacks[ident]
    for mark in list(calls):
        if mark.thread != me:
            calls.discard(mark)
    futures.clear()
