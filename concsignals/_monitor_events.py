"""The records monitors receive (:class:`SendEvent`, :class:`CallEvent`), the
:class:`Monitor` protocol, and the engine's side of a monitored send.

Public through :mod:`concsignals.monitoring` (read its docstring for when each
hook is called).  The engine never imports this module: a monitored
:class:`~concsignals._send.Send` carries its :class:`SendEvent` as
``send.watch`` and calls the methods under "the engine's side" below.

Cost
----
:class:`Hooks` is built once per install: for each hook, the bound methods of
the monitors that implement it (a method inherited unchanged from
:class:`Monitor` does not count).  A send with no per-call hook makes no
:class:`CallEvent`; a call whose monitors return no context manager enters
none; ``notes`` dicts are made when first read.

Locking rules
-------------
``_done`` (which slots have had their ``call_ended``), ``_inflight`` (claimed
slots whose ``call_ended`` has not returned yet) and ``_idle`` are read and
written under the lock of the send's ``Send`` (``claim``, ``settled``,
``finish``), or by the one thread of an unlocked inline send.  ``finish``
waits on ``_idle`` (the lock released) until no other thread is reporting a
call's end, so ``send_ended`` comes after every ``call_ended``.  Everything
else on an event is written by one thread before the event is handed on.  No
monitor is called while any lock is held.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ._carriers import Managed, enter_all, report
from ._send import Failed, Mark, Returned, Send, TimedOut, Why

# A slot's outcome as monitors see it (``CallEvent.outcome``): a string, made
# from a ``Send``'s state for the slot (a ``Mark``, or a result or failure) by
# :func:`outcome`.
RESULT = "result"
EXCEPTION = "exception"
TIMED_OUT = "timed out"
SKIPPED = "skipped"
NOT_BEGUN = "not begun"

HOOKS = ("send_began", "call_began", "carrier", "call_ended", "send_ended")


class Monitor(Protocol):
    """What a monitor may implement; every method is optional.

    Methods may be called from any thread, and for several sends at once.
    ``call_began`` may return a context manager, entered around the call on
    the thread that runs it (in-process calls only).  ``carrier`` may return a
    *picklable* context manager, entered around the call in the worker
    process (out-of-process calls only).  Events have a ``notes`` dict where a
    monitor may keep its own state for that send or call.
    """

    def send_began(self, send: SendEvent) -> None:
        """A send began (in the sender's thread, before any call)."""

    def call_began(self, call: CallEvent) -> AbstractContextManager[Any] | None:
        """A call began; what it returns is entered around the call."""

    def carrier(self, call: CallEvent) -> AbstractContextManager[Any] | None:
        """A picklable context manager to enter around the call in the worker."""

    def call_ended(self, call: CallEvent) -> None:
        """A slot has its outcome (once per slot)."""

    def send_ended(self, send: SendEvent) -> None:
        """The send ended, after every ``call_ended``."""


#: Per hook, ``(monitor, hook's name, what the monitor gave for it)``.  The
#: name is the hook's, kept here: what a monitor gives may be any callable
#: (a ``functools.partial``, a callable object) and need have no ``__name__``.
Bound = tuple[tuple[object, str, Any], ...]


def _hook(monitor: object, name: str) -> Any:
    """``monitor``'s own ``name`` method, or ``None``."""
    fn = getattr(monitor, name, None)
    if fn is None or not callable(fn):
        return None
    if getattr(type(monitor), name, None) is getattr(Monitor, name):
        return None  # inherited from Monitor unchanged: a no-op
    return fn


class Hooks:
    """Per hook, ``((monitor, name, bound method), ...)`` of the monitors
    that implement it; built once per install (see ``monitoring.install``)."""

    __slots__ = (*HOOKS, "calls")

    send_began: Bound
    call_began: Bound
    carrier: Bound
    call_ended: Bound
    send_ended: Bound

    def __init__(self, monitors: Sequence[object]) -> None:
        for name in HOOKS:
            found = ((m, _hook(m, name)) for m in monitors)
            bound = tuple((m, name, fn) for m, fn in found if fn is not None)
            setattr(self, name, bound)
        #: Whether any monitor sees calls: if not, no CallEvent is made.
        self.calls = bool(self.call_began or self.carrier or self.call_ended)


def notify(hooks: Bound, event: object) -> None:
    for m, name, fn in hooks:
        try:
            fn(event)
        except Exception as err:
            report(m, name, err)


def _returned(hooks: Bound, event: object) -> Managed:
    """Call each hook; the ``(monitor, value)`` of those that returned one."""
    found: Managed = []
    for m, name, fn in hooks:
        try:
            value = fn(event)
        except Exception as err:
            report(m, name, err)
        else:
            if value is not None:
                found.append((m, value))
    return found


class SendEvent:
    """One monitored send.  Read-only for monitors, but for ``notes``.

    ``named`` is the send's named arguments (besides ``sender``); a send
    with nobody to call (no receiver connected, or all muted) is reported
    too, with no slots.  ``began``/``ended`` are ``time.time_ns()`` values;
    ``deadline`` is a ``time.monotonic()`` value or ``None``; ``error`` is
    what the send raised.
    """

    __slots__ = (
        "_calls",
        "_done",
        "_entries",
        "_idle",
        "_inflight",
        "_notes",
        "_receivers",
        "began",
        "deadline",
        "deferred",
        "ended",
        "error",
        "executor",
        "hooks",
        "named",
        "robust",
        "sender",
        "signal",
    )

    def __init__(
        self,
        hooks: Hooks,
        signal: object,
        entries: Sequence[Any],
        sender: object,
        named: dict[str, Any],
    ) -> None:
        self.hooks = hooks
        self.signal = signal
        self._entries = entries
        self.sender = sender
        #: The send's named arguments (the sender's dict: read, never change).
        self.named = named
        #: Set by whoever starts reporting, before ``send_began``
        #: (``monitoring.watch``/``watch_inline``).
        self.executor: object = None
        self.deadline: float | None = None
        self.robust = False
        #: The calls of an earlier send, reported when that send was made,
        #: that waited for a database commit (``connect(on_commit=...)``,
        #: ``after_commit``): made now, in the committing thread.
        self.deferred = False
        self.began = time.time_ns()
        n = len(entries)
        self._calls: list[CallEvent | None] = [None] * n
        self._done = [False] * n
        self._inflight = 0  # claimed, call_ended not yet returned
        self._idle: threading.Event | None = None
        self.ended: int | None = None
        self.error: BaseException | None = None
        self._notes: dict[object, Any] | None = None
        self._receivers: tuple[Any, ...] | None = None

    @property
    def receivers(self) -> tuple[Any, ...]:
        """The receivers the send will call (live when first read: read it in
        ``send_began``)."""
        if self._receivers is None:
            live = (e.get() for e in self._entries)
            self._receivers = tuple(r for r in live if r is not None)
        return self._receivers

    @property
    def notes(self) -> dict[object, Any]:
        if self._notes is None:
            self._notes = {}
        return self._notes

    def __repr__(self) -> str:
        return f"<SendEvent of {self.signal!r}, {len(self._done)} slots>"

    # -- the engine's side ------------------------------------------------------

    def enter(self, i: int, r: Any) -> Managed | None:
        """Call ``i`` (receiver ``r``) begins on this thread, after the gate:
        ``call_began``, then enter what it returned (for ``exit_all``)."""
        hooks = self.hooks
        if not hooks.calls:
            return None
        call = self._calls[i] = CallEvent(self, i, r)
        call._thread = threading.current_thread()
        call.process = pid[0]
        managers: Managed | None = None
        for m, name, fn in hooks.call_began:
            try:
                cm = fn(call)
            except Exception as err:
                report(m, name, err)
                continue
            if cm is not None:
                if managers is None:
                    managers = []
                managers.append((m, cm))
        return None if managers is None else enter_all(managers)

    def hand_off(self, i: int, r: Any) -> tuple[bytes, ...]:
        """Call ``i`` is handed to another process: ``call_began``, and the
        monitors' carriers, pickled here (a bad one cannot fail the call)."""
        if not self.hooks.calls:
            return ()
        call = self._calls[i] = CallEvent(self, i, r)
        notify(self.hooks.call_began, call)
        if not self.hooks.carrier:
            return ()
        import pickle  # here: only a send out of process pickles carriers

        blobs: list[bytes] = []
        for m, carrier in _returned(self.hooks.carrier, call):
            try:
                blobs.append(pickle.dumps(carrier, pickle.HIGHEST_PROTOCOL))
            except Exception as err:
                report(m, "pickling its carrier", err)
        return tuple(blobs)

    def stop(self, i: int, value: Any, err: BaseException | None) -> None:
        """Call ``i`` returned ``value`` or raised ``err`` (its clock stops)."""
        if self._done[i]:  # reported already (timed out at the send's end)
            return
        call = self._calls[i]
        if call is None:
            return
        call.ended = ended = time.time_ns()
        call.duration = (ended - (call.began or ended)) / 1e9
        call.result, call.error = value, err

    def claim(self, i: int) -> bool:
        """Under the send's lock: whether slot ``i`` is still to be reported."""
        if self._done[i]:
            return False
        self._done[i] = True
        self._inflight += 1
        return True

    def settled(self, send: Send, i: int, out: Any, by_deadline: bool) -> None:
        """Slot ``i``, claimed, settled as ``out`` (``Send``'s outcome):
        ``call_ended``; ``finish`` waits for this to return."""
        try:
            self.report_end(i, outcome(out, by_deadline), getattr(out, "err", None))
        finally:
            with send.lock:
                self._inflight -= 1
                idle = self._idle if self._inflight == 0 else None
            if idle is not None:
                idle.set()

    def report_end(self, i: int, what: str, err: BaseException | None = None) -> None:
        """``call_ended`` for slot ``i``, its outcome ``what``."""
        call = self._calls[i]
        if call is None:
            if not self.hooks.call_ended:
                return
            call = self._calls[i] = CallEvent(self, i, self._entries[i].get(), False)
        call.outcome = what
        if err is not None and call.error is None:
            call.error = err
        notify(self.hooks.call_ended, call)

    def skip(self, i: int) -> None:
        """Unlocked inline send: slot ``i``'s receiver is gone."""
        self._done[i] = True
        self.report_end(i, SKIPPED)

    def returned(self, i: int, value: Any, err: BaseException | None) -> None:
        """Unlocked inline send: call ``i`` ended; ``call_ended``."""
        self._done[i] = True
        call = self._calls[i]
        if call is None:  # no monitor sees calls
            return
        call.ended = ended = time.time_ns()
        call.duration = (ended - (call.began or ended)) / 1e9
        call.result, call.error = value, err
        call.outcome = RESULT if err is None else EXCEPTION
        notify(self.hooks.call_ended, call)

    def finish(self, send: Send | None, error: BaseException | None) -> None:
        """Report every slot not reported yet (its outcome as the engine left
        it), then ``send_ended``.  ``send=None``: an unlocked inline send,
        whose slots not reported never began."""
        self.error = error
        if send is None:
            left = [(i, NOT_BEGUN) for i, done in enumerate(self._done) if not done]
        else:
            with send.lock:
                state, deadline = list(send.state), send.why is Why.DEADLINE
                left = [(i, outcome(state[i], deadline)) for i in self.unclaimed()]
                if self._inflight:  # another thread is reporting a call's end
                    self._idle = threading.Event()
            if self._idle is not None:
                self._idle.wait()
        for i, what in left:
            self.report_end(i, what)
        self.ended = time.time_ns()
        notify(self.hooks.send_ended, self)
        # Each CallEvent holds its SendEvent: drop ours, so no cycle is left
        # for the garbage collector (a call still running reports no more).
        self._calls = [None] * len(self._calls)

    def unclaimed(self) -> list[int]:
        todo = [i for i, done in enumerate(self._done) if not done]
        for i in todo:
            self._done[i] = True
        return todo


def outcome(out: Any, closed_by_deadline: bool) -> str:
    """The monitors' name for a slot's state in a ``Send``."""
    if isinstance(out, Returned):
        return RESULT
    if isinstance(out, Failed):
        return EXCEPTION
    if isinstance(out, TimedOut) or out is Mark.RUNNING:
        return TIMED_OUT  # running at the send's end: still running
    if out is Mark.SKIPPED:
        return SKIPPED
    if out is Mark.CLOSED or out is Mark.NOT_BEGUN:
        return TIMED_OUT if closed_by_deadline else NOT_BEGUN
    assert out is Mark.STOPPED
    return TIMED_OUT if closed_by_deadline else EXCEPTION


class CallEvent:
    """One slot of a monitored send: a receiver and what became of its call.

    ``began``/``ended`` are ``time.time_ns()`` values (``None`` if it did not
    begin, or had not ended when the send did); ``duration`` is in seconds,
    ``ended - began`` (both from ``time.time_ns``).  ``thread`` and ``process`` are the
    name of the thread and the pid that ran it (``None`` out of process).
    """

    __slots__ = (
        "_notes",
        "_thread",
        "began",
        "duration",
        "ended",
        "error",
        "index",
        "outcome",
        "process",
        "receiver",
        "result",
        "send",
    )

    def __init__(
        self, send: SendEvent, index: int, receiver: Any, begins: bool = True
    ) -> None:
        self.send = send
        self.index = index
        self.receiver = receiver
        self.began: int | None = time.time_ns() if begins else None
        self.ended: int | None = None
        self.duration: float | None = None
        self._thread: threading.Thread | None = None
        self.process: int | None = None
        self.outcome: str | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self._notes: dict[object, Any] | None = None

    @property
    def thread(self) -> str | None:
        return None if self._thread is None else self._thread.name

    @property
    def notes(self) -> dict[object, Any]:
        if self._notes is None:
            self._notes = {}
        return self._notes

    def __repr__(self) -> str:
        return f"<CallEvent {self.index} {self.receiver!r}: {self.outcome}>"


#: This process's id (``os.getpid()`` is a system call), updated after a fork.
pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: pid.__setitem__(0, os.getpid()))
