"""The pieces of the ``quiesce`` scenario: after ``disconnect(wait=True)``
returns, nothing of the receiver runs, and nothing of it runs again.

The promise, in ticks
---------------------
``disconnect(wait=True)`` returns only once every call of the connection that
began before it has ended; a call that had not begun by then never begins
(its gate reads the dead entry).  The one exception: a call the
disconnecting thread (or task) is making itself, so a receiver may disconnect
itself with ``wait=True``.  Let ``R`` be a tick taken just after the
disconnect returned (``rec.disc_ret``).  Then every call of the receiver but
the disconnecting one itself must have both begun and ended before ``R``.
Unlike a plain ``disconnect`` (see ``Probe._checked_after``), no race
excuses a call here: a gate marks its call as running *before* it reads the
entry (``concsignals/_inflight.py``), so a call whose gate saw the entry
live is waited for, and one whose gate did not is never made.

How it is checked
-----------------
Each :class:`QuietProbe` keeps a :class:`Call` per call (its begin and end
ticks, taken in the receiver's own body: the end is stored before the
receiver returns, so before the dispatcher can count the call as ended).
Three looks, each of which may miss a race but never invents one:

* when a call begins: if the probe's ``quiet`` tick (``R``, stored just
  after it is taken) is set and earlier, the call began after the
  disconnect returned;
* when a call ends: if ``quiet`` is set and earlier than its end, it was
  still running when the disconnect returned;
* just after the disconnecter stored ``quiet`` (:func:`settle`): every call
  recorded so far, the disconnecting call excepted, must have ended before
  ``R``.

The second and third make a Dekker pair (store one's own tick, then read
the other's): a call running at ``R`` is caught by at least one of them;
:func:`flag` reports each call once.

Writers disconnect with ``signal.disconnect(..., wait=True)``, sometimes with
a generous ``timeout``, or with ``await signal.adisconnect(...)`` on their own
event loop; some sync probes disconnect themselves, with ``wait=True``, from
inside a call.  A ``TimeoutError`` or any other error from the disconnect is
a violation (no call here runs for long: a wait that times out is a wait
that missed an end).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .perconnection import (
    KINDS,
    AsyncDeliveredProbe,
    DeliveredProbe,
    Spans,
    _own_loop,
)
from .record import Record, SendContext, Violations, tick

#: A generous bound on a wait: the watchdog calls a stuck wait a deadlock
#: long before it (``--deadlock-after``, 10 s by default).
TIMEOUT = 60.0

_flag_lock = threading.Lock()  # guards Call.flagged: each call reported once
_local = threading.local()  # .call: the call this thread's probe is making


class Call:
    """One call of a probe: its begin and end ticks (``end`` None while it
    runs).  Written by the thread making the call."""

    __slots__ = ("begin", "end", "flagged")

    def __init__(self, begin: int) -> None:
        self.begin = begin
        self.end: int | None = None
        self.flagged = False


def flag(v: Violations, rec: Record, call: Call, quiet: int) -> None:
    """Report ``call`` of ``rec`` as breaking the promise (once)."""
    with _flag_lock:
        if call.flagged:
            return
        call.flagged = True
    if call.begin > quiet:
        v.add(
            "called after disconnect(wait=True)",
            f"{rec!r}: its disconnect(wait=True) returned at tick {quiet}, "
            f"a call began at {call.begin}",
        )
    else:
        v.add(
            "running after disconnect(wait=True)",
            f"{rec!r}: a call began at tick {call.begin} and was still running "
            f"when its disconnect(wait=True) returned at {quiet} "
            f"(ended at {call.end})",
        )


class QuietProbe(DeliveredProbe):
    """A probe that keeps every call's begin and end, and checks them
    against the tick its ``disconnect(wait=True)`` returned at."""

    __slots__ = ("calls", "own", "quiet")

    def __init__(self, rec: Record, wait: bool, phase: int) -> None:
        super().__init__(rec, wait, phase)
        #: Every call so far (``list.append`` is atomic).
        self.calls: list[Call] = []
        #: The call that disconnected this probe from inside itself, if any
        #: (set by :func:`settle`, before ``quiet``).
        self.own: Call | None = None
        #: When its ``disconnect(wait=True)`` returned (set just after).
        self.quiet: int | None = None

    def timed(
        self, signal: Any, sender: object, ctx: SendContext | None, spans: Spans | None
    ) -> Any:
        call = Call(tick())
        self.calls.append(call)
        quiet = self.quiet
        if quiet is not None and quiet < call.begin and ctx is not None:
            flag(ctx.violations, self.rec, call, quiet)
        _local.call = call
        try:
            time.sleep(0)  # yield: let a disconnect come while the call runs
            return super().timed(signal, sender, ctx, spans)
        finally:
            _local.call = None
            call.end = tick()
            quiet = self.quiet
            if (
                quiet is not None
                and quiet < call.end
                and call is not self.own
                and ctx is not None
            ):
                flag(ctx.violations, self.rec, call, quiet)


class AsyncQuietProbe(QuietProbe):
    """The same, as an ``async def`` receiver (a task on its loop)."""

    __slots__ = ()

    async def __call__(  # type: ignore[override]
        self,
        signal: Any = None,
        sender: Any = None,
        ctx: Any = None,
        spans: Spans | None = None,
        **named: Any,
    ) -> Any:
        return self.timed(signal, sender, ctx, spans)


#: Every kind of connection of ``per-connection`` (every target, sync and
#: async, ``wait=True``/``False``), made with quiet probes.
QUIET_KINDS: tuple[tuple[str, bool, type[DeliveredProbe]], ...] = tuple(
    (via, wait, AsyncQuietProbe if cls is AsyncDeliveredProbe else QuietProbe)
    for via, wait, cls in KINDS
)

Unplug = Callable[[Any, Any], bool]


def unplug(v: Violations, signal: Any, how: str) -> Unplug:
    """A ``disconnect(receiver, sender)`` that waits, the way ``how`` says:
    ``wait``, ``timeout`` (generous), or ``async`` (``adisconnect`` on this
    thread's own loop; never from inside a call, whose thread may be running
    a loop already).  An error is a violation; the receiver is then
    disconnected all the same (the contract says so for a timeout)."""

    def disconnect(receiver: Any, target: Any) -> bool:
        try:
            if how == "async":
                coro = signal.adisconnect(receiver, sender=target, timeout=TIMEOUT)
                return bool(_own_loop().run_until_complete(coro))
            timeout = TIMEOUT if how == "timeout" else None
            return bool(
                signal.disconnect(receiver, sender=target, wait=True, timeout=timeout)
            )
        except Exception as err:
            v.add("disconnect(wait=True) raised", f"{how}: {err!r}")
            return True

    return disconnect


def settle(
    v: Violations, probe: QuietProbe, quiet: int, own: Call | None = None
) -> None:
    """Just after ``probe``'s ``disconnect(wait=True)`` returned (``quiet``):
    every call of it but the disconnecting one (``own``) has ended by then."""
    probe.own = own  # before quiet: the own call's end check reads them so
    probe.quiet = quiet
    for call in list(probe.calls):
        end = call.end
        if call is not own and (end is None or end > quiet):
            flag(v, probe.rec, call, quiet)


def current_call() -> Call | None:
    """The call this thread's quiet probe is making (for a self-disconnect)."""
    call: Call | None = getattr(_local, "call", None)
    return call


def needs_wait(factory: Callable[[], Any]) -> str:
    """Why ``disconnect(wait=True)`` cannot be stressed, or ''."""
    signal = factory()
    try:
        signal.disconnect(lambda **named: None, wait=True, timeout=1.0)
    except TypeError as err:
        return f"{factory.__qualname__}.disconnect takes no wait=/timeout= ({err})"
    if not hasattr(signal, "adisconnect"):
        return f"{factory.__qualname__} has no adisconnect()"
    return ""
