"""The records monitors receive: :class:`SendEvent`, :class:`CallEvent`, and
the :class:`Monitor` protocol.  Public through :mod:`concsignals.monitoring`
(read its docstring for when each hook is called).

``SendEvent._lock`` guards the ``outcome`` and ``begun`` of that send's
slots, nothing else; no monitor is called while it is held.  Everything
else on an event is written by one thread before the event is handed on.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import AbstractContextManager
from typing import Any, Protocol

RESULT = "result"
EXCEPTION = "exception"
TIMED_OUT = "timed out"
SKIPPED = "skipped"
NOT_BEGUN = "not begun"


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


class SendEvent:
    """One monitored send.  Read-only for monitors, but for ``notes``.

    ``began``/``ended`` are ``time.time_ns()`` values; ``deadline`` is a
    ``time.monotonic()`` value or ``None``; ``error`` is what the send raised.
    """

    __slots__ = (
        "_lock",
        "_slots",
        "began",
        "calls",
        "deadline",
        "ended",
        "error",
        "executor",
        "notes",
        "receivers",
        "robust",
        "sender",
        "signal",
    )

    def __init__(
        self,
        signal: object,
        sender: object,
        receivers: tuple[Any, ...],
        executor: object,
        deadline: float | None,
        robust: bool,
    ) -> None:
        self.signal = signal
        self.sender = sender
        self.receivers = receivers
        self.executor = executor
        self.deadline = deadline
        self.robust = robust
        self.began = time.time_ns()
        self.ended: int | None = None
        self.error: BaseException | None = None
        self.notes: dict[object, Any] = {}
        self.calls = [CallEvent(self, i, r) for i, r in enumerate(receivers)]
        # Guards each CallEvent's ``outcome`` and the slot claims below.
        self._lock = threading.Lock()
        self._slots: dict[int, list[CallEvent]] = {}
        for call in self.calls:
            self._slots.setdefault(id(call.receiver), []).append(call)

    def _claim(self, receiver: object) -> CallEvent | None:
        """The first slot of ``receiver`` not begun yet (``None``: not ours)."""
        with self._lock:
            for call in self._slots.get(id(receiver), ()):
                if not call.begun:
                    call.begun = True
                    return call
        return None

    def _settle(self, call: CallEvent, outcome: str) -> bool:
        """Give ``call`` its one outcome; ``False`` if it already has one."""
        with self._lock:
            if call.outcome is not None:
                return False
            call.outcome = outcome
            return True

    def __repr__(self) -> str:
        return f"<SendEvent of {self.signal!r}, {len(self.calls)} receivers>"


class CallEvent:
    """One slot of a monitored send: a receiver and what became of its call.

    ``began``/``ended`` are ``time.time_ns()`` values (``None`` if it did not
    begin, or had not ended when the send did); ``duration`` is in seconds,
    measured with ``time.perf_counter``.  ``thread`` and ``process`` are the
    name of the thread and the pid that ran it (``None`` out of process).
    """

    __slots__ = (
        "_t0",
        "began",
        "begun",
        "duration",
        "ended",
        "error",
        "index",
        "notes",
        "outcome",
        "process",
        "receiver",
        "result",
        "send",
        "thread",
    )

    def __init__(self, send: SendEvent, index: int, receiver: Any) -> None:
        self.send = send
        self.index = index
        self.receiver = receiver
        self.begun = False
        self.began: int | None = None
        self.ended: int | None = None
        self.duration: float | None = None
        self.thread: str | None = None
        self.process: int | None = None
        self.outcome: str | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.notes: dict[object, Any] = {}
        self._t0 = 0.0

    def _start(self, here: bool) -> None:
        self.began = time.time_ns()
        self._t0 = time.perf_counter()
        if here:
            self.thread = threading.current_thread().name
            self.process = pid[0]

    def _stop(self) -> None:
        self.duration = time.perf_counter() - self._t0
        self.ended = time.time_ns()

    def __repr__(self) -> str:
        return f"<CallEvent {self.index} {self.receiver!r}: {self.outcome}>"


#: This process's id (``os.getpid()`` is a system call), updated after a fork.
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


#: This process's id (``os.getpid()`` is a system call), updated after a fork.
pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: pid.__setitem__(0, os.getpid()))
