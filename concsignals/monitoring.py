"""Monitors: see every send and every receiver call; slow-receiver warnings.

A *monitor* is an object with up to five methods (see :class:`Monitor`); any
number may be installed with :func:`install`.  While none is, nothing here
runs: the engine tests one module global, :data:`installed`, and takes its
usual paths.  While one is, every send reports to it (a send with nobody to
call too, no receiver connected or all muted: with no slots, through
``_run.nobody``; not yet ``concsignals.django``'s own send methods):

``send_began(send)``
    once, in the sender's thread, before any call begins (a :class:`SendEvent`:
    signal, sender, the receivers it will call, executor, deadline);
``call_began(call)``
    once per call that begins, on the thread that runs it, right after the
    send's begin gate let it begin (for a call handed to another process: at
    hand-off, in the sender's process); what it returns, if anything, is a
    context manager entered around the call;
``carrier(call)``
    for a call handed to another process: a picklable context manager that
    travels with the call and is entered around it in the worker (how
    ``concsignals.otel`` joins a worker's spans to the sender's trace);
``call_ended(call)``
    exactly once per slot of the send, with the slot's outcome as the engine
    recorded it (a :class:`CallEvent`): ``"result"``, ``"exception"``,
    ``"timed out"`` (overran the deadline, was still running at the send's
    end, or was not begun because the deadline passed), ``"skipped"``
    (disconnected or dead before it began) or ``"not begun"`` (the send was
    closed first: a failure, or cancellation);
``send_ended(send)``
    once, after every ``call_ended`` of the send.

Where the engine reports (its call sites are marked ``# monitor:``)::

    _run.run / arun / submit   watch(): SendEvent, send_began
      Send.begin(i) admits     SendEvent.enter: CallEvent, call_began,
        (on the running thread)  enter its context managers
      receiver(...)
      Send.end(i, ...)         SendEvent.stop (the clock), then, after the
                                 send's lock, call_ended with the outcome
      ... assemble             SendEvent.finish: every slot not yet reported
                                 (skipped, not begun, still running), send_ended

An inline send without a deadline (the common case) does not build a
``Send``: ``_inline.call_watched`` is the same loop as the unmonitored one,
reporting as it goes.

Calls that run in another process (processes, Dask) begin at hand-off; their
end is when the sender hears of it; ``thread``/``process`` are ``None``.

Errors
------
A monitor that raises never breaks a send: its error is logged on logger
``concsignals`` once per monitor, and the send's results are unchanged.

Locking rules
-------------
``_lock`` guards replacing ``_monitors``, ``_hooks`` and ``installed``
(install, uninstall, thresholds) and calling the switches; readers read
``_hooks`` once, without it, so a send reports to the monitors installed when
it began.  No monitor is called while it is held.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._monitor_events import (
    EXCEPTION,
    NOT_BEGUN,
    RESULT,
    SKIPPED,
    TIMED_OUT,
    CallEvent,
    Hooks,
    Monitor,
    SendEvent,
    notify,
)
from ._send import describe
from .executors import SignalRef

if TYPE_CHECKING:
    from ._send import Send

__all__ = [
    "EXCEPTION",
    "NOT_BEGUN",
    "RESULT",
    "SKIPPED",
    "TIMED_OUT",
    "CallEvent",
    "Monitor",
    "SendEvent",
    "install",
    "installed",
    "monitors",
    "slow_call_threshold",
    "uninstall",
]

# -- installing -----------------------------------------------------------------

_lock = threading.Lock()
_monitors: tuple[object, ...] = ()
#: The hooks every send that begins now reports to; ``None``: nothing is.
_hooks: Hooks | None = None
#: True while a monitor is installed or a slow-call threshold is set.  The
#: engine's paths read it (one global read) and stay unmonitored if false.
installed = False

#: Called with the new value of ``installed`` whenever it changes, under
#: ``_lock``: engine code that keeps its own copy for a hot path (one global
#: read is cheaper than a module attribute).  Never user code.
_switches: list[Callable[[bool], None]] = []


def on_switch(switch: Callable[[bool], None]) -> None:
    """Call ``switch(installed)`` now and whenever ``installed`` changes."""
    with _lock:
        _switches.append(switch)
        switch(installed)


def _rebuild_locked() -> None:
    global installed, _hooks
    watchers: tuple[object, ...] = _monitors
    if _slow.on:
        watchers = (*watchers, _slow_warner)
    _hooks = Hooks(watchers) if watchers else None
    installed = _hooks is not None
    for switch in _switches:
        switch(installed)


def install(monitor: object) -> None:
    """Install ``monitor``: every send that begins from now on reports to it.

    Its hooks are looked up now, once (a monitor that gains a method later
    must be installed again).  Installing one already installed does
    nothing.  Safe from any thread; a send already under way does not report
    to it.
    """
    global _monitors
    with _lock:
        if not any(m is monitor for m in _monitors):
            _monitors = (*_monitors, monitor)
        _rebuild_locked()


def uninstall(monitor: object) -> bool:
    """Remove ``monitor``; return whether it was installed.

    Sends that began before may still report to it until they end.
    """
    global _monitors
    with _lock:
        kept = tuple(m for m in _monitors if m is not monitor)
        found = len(kept) != len(_monitors)
        _monitors = kept
        _rebuild_locked()
        return found


def monitors() -> tuple[object, ...]:
    """The monitors installed now, in the order they were installed."""
    return _monitors


# -- the engine's entry points ----------------------------------------------------


def watch(send: Send, executor: object) -> SendEvent | None:
    """Start reporting ``send`` (``send.watch``); ``None`` if nothing watches."""
    hooks = _hooks
    if hooks is None:
        return None
    w = SendEvent(hooks, send.signal, send.entries, send.sender, send.named)
    w.executor, w.deadline, w.robust = executor, send.deadline, send.robust
    w.deferred = send.deferred
    send.watch = w
    notify(hooks.send_began, w)
    return w


def watch_inline(
    signal: object,
    entries: Sequence[Any],
    sender: object,
    named: dict[str, Any],
    robust: bool,
) -> SendEvent | None:
    """Start reporting an inline send without a deadline (no ``Send``)."""
    hooks = _hooks
    if hooks is None:
        return None
    w = SendEvent(hooks, signal, entries, sender, named)
    w.robust = robust
    notify(hooks.send_began, w)
    return w


# -- slow-call warnings -----------------------------------------------------------


class _Thresholds:
    """The global and per-signal slow-call thresholds, in seconds."""

    def __init__(self) -> None:
        self.default: float | None = None
        self.per_signal: weakref.WeakKeyDictionary[object, float | None] = (
            weakref.WeakKeyDictionary()
        )
        #: Whether any threshold is set.
        self.on = False

    def is_set(self) -> bool:
        return self.default is not None or any(
            v is not None for v in self.per_signal.values()
        )

    def of(self, signal: object) -> float | None:
        try:
            if signal in self.per_signal:
                return self.per_signal[signal]
        except TypeError:
            pass
        return self.default


_slow = _Thresholds()


def slow_call_threshold(seconds: float | None, signal: object = None) -> None:
    """Log a warning for every receiver call that lasts ``seconds`` or more.

    Like asyncio's ``slow_callback_duration``.  With ``signal``, the threshold
    is that signal's (``None`` there: never warn for it), else the global one
    (``None``: off).  The warning is logged on logger ``concsignals`` with the
    receiver, the signal (by its module path, as :class:`SignalRef` finds it),
    the duration and the executor.
    """
    if seconds is not None and not seconds >= 0:
        raise ValueError(f"a slow-call threshold must be None or >= 0, not {seconds!r}")
    with _lock:
        if signal is None:
            _slow.default = seconds
        else:
            _slow.per_signal[signal] = seconds
        _slow.on = _slow.is_set()
        _rebuild_locked()


class _SlowWarner:
    """The internal monitor behind :func:`slow_call_threshold`."""

    def call_ended(self, call: CallEvent) -> None:
        limit = _slow.of(call.send.signal)
        if limit is None or call.duration is None or call.duration < limit:
            return
        executor = call.send.executor
        import logging  # only when a call was slow: keeps ``import concsignals`` light

        logging.getLogger("concsignals").warning(
            "Slow receiver %s of %s: %.3f s (threshold %.3f s) on %s",
            describe(call.receiver),
            SignalRef.of(call.send.signal),
            call.duration,
            limit,
            "inline" if executor is None else repr(executor),
        )

    def __repr__(self) -> str:
        return "<concsignals slow-call warnings>"


_slow_warner = _SlowWarner()
