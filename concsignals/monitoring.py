"""Monitors: see every send and every receiver call; slow-receiver warnings.

A *monitor* is an object with up to five methods (see :class:`Monitor`); any
number may be installed with :func:`install`.  While none is, nothing here
runs: the engine tests one module global, :data:`installed`, and takes its
usual paths.  While one is, every send reports to it:

``send_began(send)``
    once, in the sender's thread, before any call begins (a :class:`SendEvent`:
    signal, sender, the receivers it will call, executor, deadline);
``call_began(call)``
    once per call that begins, on the thread that runs it, right after the
    send's gate let it begin (for a call handed to another process: at
    hand-off, in the sender's process);
``call_ended(call)``
    exactly once per slot of the send, with the slot's outcome (a
    :class:`CallEvent`): ``"result"``, ``"exception"``, ``"timed out"``,
    ``"skipped"`` (disconnected before it began) or ``"not begun"`` (the send
    was closed by a failure first);
``send_ended(send)``
    once, in the sender's thread, after every ``call_ended`` of the send.

Shape of one monitored send (the engine's call sites are marked
``# monitor:`` in the code)::

    sender thread                         thread that runs slot i
    -------------                         -----------------------
    watch_send: SendEvent, send_began
      the engine runs the send  ------>   invoke: gate passed -> call_began
                                          enter the monitors' contexts
                                          receiver(...)
                                          exit them; call_ended (the outcome)
      finish: slots with no outcome yet
      ("timed out", "skipped", "not begun") -> call_ended
    send_ended

The one outcome per slot is kept by :meth:`SendEvent._settle`: whichever of
the calling thread and the sender's ``finish`` comes first decides it, under
the send's own lock; the other reports nothing.  A call still running at the
send's deadline is ended as ``"timed out"`` by the sender (``ended`` is
``None``); one that overran the deadline and then returned is ``"timed out"``
too, with its end time.

Calls that run in another process (processes, Dask) begin at hand-off; their
end is when the sender hears of it, and ``thread``/``process`` are ``None``.
A monitor's :meth:`Monitor.carrier` may return a picklable context manager
that travels with the call and is entered around it in the worker (this is
how ``concsignals.otel`` joins a worker's spans to the sender's trace).

Errors
------
A monitor that raises never breaks a send: its error is logged on logger
``concsignals`` once per monitor, and the send's results are unchanged.

Locking rules
-------------
``_lock`` guards replacing ``_monitors`` and ``installed`` (install and
uninstall); readers read the tuple once, without it.  ``SendEvent._lock``
guards the ``outcome`` of that send's slots; no monitor is called while
either is held.  Every function here is safe from any thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import pickle
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

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

from ._monitor_events import (
    EXCEPTION,
    NOT_BEGUN,
    RESULT,
    SKIPPED,
    TIMED_OUT,
    CallEvent,
    Monitor,
    SendEvent,
)

logger = logging.getLogger("concsignals")
T = TypeVar("T")

# -- installing -----------------------------------------------------------------

_lock = threading.Lock()
_monitors: tuple[Any, ...] = ()
#: True while a monitor is installed or a slow-call threshold is set.  The
#: engine's hot paths read it (one global read) and stay unmonitored if false.
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


def _set_installed_locked(on: bool) -> None:
    global installed
    installed = on
    for switch in _switches:
        switch(on)


def install(monitor: object) -> None:
    """Install ``monitor``: every send that begins from now on reports to it.

    Installing one already installed does nothing.  Safe from any thread; a
    send already under way does not report to it.
    """
    global _monitors
    with _lock:
        if not any(m is monitor for m in _monitors):
            _monitors = (*_monitors, monitor)
        _set_installed_locked(True)


def uninstall(monitor: object) -> bool:
    """Remove ``monitor``; return whether it was installed.

    Sends that began before may still report to it until they end.
    """
    global _monitors
    with _lock:
        kept = tuple(m for m in _monitors if m is not monitor)
        found = len(kept) != len(_monitors)
        _monitors = kept
        _set_installed_locked(bool(kept) or _slow.is_set())
        return found


def monitors() -> tuple[object, ...]:
    """The monitors installed now, in the order they were installed."""
    return _monitors


# -- slow-call warnings -----------------------------------------------------------


class _Thresholds:
    """The global and per-signal slow-call thresholds, in seconds."""

    def __init__(self) -> None:
        self.default: float | None = None
        self.per_signal: weakref.WeakKeyDictionary[object, float | None] = (
            weakref.WeakKeyDictionary()
        )
        #: Whether any threshold is set (read without the lock: one bool).
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
    receiver, the signal, the duration and the executor.
    """
    if seconds is not None and not seconds >= 0:
        raise ValueError(f"a slow-call threshold must be None or >= 0, not {seconds!r}")
    with _lock:
        if signal is None:
            _slow.default = seconds
        else:
            _slow.per_signal[signal] = seconds
        _slow.on = _slow.is_set()
        _set_installed_locked(bool(_monitors) or _slow.on)


def _warn_if_slow(call: CallEvent) -> None:
    if not _slow.on:
        return
    limit = _slow.of(call.send.signal)
    if limit is None or call.duration is None or call.duration < limit:
        return
    executor = call.send.executor
    logger.warning(
        "Slow receiver %s of %r: %.3f s (threshold %.3f s) on %s",
        _describe(call.receiver),
        call.send.signal,
        call.duration,
        limit,
        "inline" if executor is None else repr(executor),
    )


def _describe(receiver: object) -> str:
    name = getattr(receiver, "__qualname__", None)
    return name if isinstance(name, str) else repr(receiver)


# -- calling monitors safely --------------------------------------------------------

_broken: set[int] = set()


def _notify(monitors: Sequence[object], method: str, event: object) -> list[Any]:
    """Call ``method(event)`` on each monitor that has it; what each returned
    (``None`` for a monitor without it, or that raised), in monitor order."""
    found: list[Any] = []
    for m in monitors:
        fn = getattr(m, method, None)
        try:
            found.append(None if fn is None else fn(event))
        except Exception as err:
            found.append(None)
            _report(m, method, err)
    return found


def _report(monitor: object, what: str, err: Exception) -> None:
    """Log a monitor's failure, once per monitor."""
    if id(monitor) in _broken:
        return
    _broken.add(id(monitor))
    logger.error(
        "Monitor %r failed in %s (%s); its later failures are not logged",
        monitor,
        what,
        err,
        exc_info=err,
    )


@contextlib.contextmanager
def _entered(monitors: Sequence[object], managers: list[Any]) -> Iterator[None]:
    """Enter the monitors' context managers around a call; never raise for them."""
    stack: list[tuple[object, Any]] = []
    for m, cm in zip(monitors, managers, strict=False):
        if cm is None:
            continue
        try:
            cm.__enter__()
            stack.append((m, cm))
        except Exception as err:
            _report(m, "entering its context", err)
    try:
        yield
    except BaseException as err:
        _exit(stack, err)
        raise
    _exit(stack, None)


def _exit(stack: list[tuple[object, Any]], err: BaseException | None) -> None:
    """Exit what :func:`_entered` entered, telling them of ``err``; never
    suppress it."""
    info = (None, None, None) if err is None else (type(err), err, err.__traceback__)
    for m, cm in reversed(stack):
        try:
            cm.__exit__(*info)
        except Exception as exc:
            _report(m, "exiting its context", exc)


# -- the engine's call sites ----------------------------------------------------------

#: The send being run, as seen by the engine's own code (not by receivers:
#: :func:`invoke` clears it around each call, so a nested send is its own).
current: contextvars.ContextVar[SendEvent | None] = contextvars.ContextVar(
    "concsignals_send", default=None
)


def _begin(
    signal: object,
    entries: Sequence[Any],
    sender: object,
    executor: object,
    timeout: float | None,
    robust: bool,
) -> SendEvent:
    receivers = tuple(r for e in entries if (r := e.get()) is not None)
    deadline = None if timeout is None else time.monotonic() + timeout
    send = SendEvent(signal, sender, receivers, executor, deadline, robust)
    send.notes[_monitors_key] = mons = _monitors
    _notify(mons, "send_began", send)
    return send


_monitors_key = object()


def _finish(send: SendEvent) -> None:
    """Give every slot without an outcome one, then report the send's end."""
    late = send.deadline is not None and time.monotonic() >= send.deadline
    for call in send.calls:
        if call.begun:
            outcome = TIMED_OUT  # still running, or overran: see invoke
        elif late:
            outcome = TIMED_OUT
        elif send.error is not None or any(
            c.outcome in (EXCEPTION, TIMED_OUT) for c in send.calls
        ):
            outcome = NOT_BEGUN
        else:
            outcome = SKIPPED
        if send._settle(call, outcome):
            _notify(send.notes[_monitors_key], "call_ended", call)
    send.ended = time.time_ns()
    _notify(send.notes[_monitors_key], "send_ended", send)


def watch_send(
    run: Callable[..., T],
    signal: object,
    entries: Sequence[Any],
    sender: object,
    named: dict[str, Any],
    executor: object,
    timeout: float | None,
    robust: bool,
) -> T:
    """Run ``run(signal, entries, ...)`` as one monitored send."""
    send = _begin(signal, entries, sender, executor, timeout, robust)
    token = current.set(send)
    try:
        return run(signal, entries, sender, named, executor, timeout, robust)
    except BaseException as err:
        send.error = err
        raise
    finally:
        current.reset(token)
        _finish(send)


async def watch_asend(
    run: Callable[..., Awaitable[T]],
    signal: object,
    entries: Sequence[Any],
    sender: object,
    named: dict[str, Any],
    executor: object,
    timeout: float | None,
    robust: bool,
) -> T:
    """``await run(...)`` as one monitored send (``asend``)."""
    send = _begin(signal, entries, sender, executor, timeout, robust)
    token = current.set(send)
    try:
        return await run(signal, entries, sender, named, executor, timeout, robust)
    except BaseException as err:
        send.error = err
        raise
    finally:
        current.reset(token)
        _finish(send)


def _start_call(receiver: object, here: bool) -> tuple[CallEvent | None, list[Any]]:
    send = current.get()
    call = None if send is None else send._claim(receiver)
    if call is None:
        return None, []
    call._start(here)
    return call, _notify(send.notes[_monitors_key], "call_began", call)  # type: ignore[union-attr]


def _end_call(call: CallEvent, result: Any, error: BaseException | None) -> None:
    call._stop()
    call.result, call.error = result, error
    _warn_if_slow(call)
    send = call.send
    if send.deadline is not None and time.monotonic() > send.deadline:
        return  # overran: the sender's _finish says "timed out"
    if send._settle(call, RESULT if error is None else EXCEPTION):
        _notify(send.notes[_monitors_key], "call_ended", call)


def invoke(receiver: Any, signal: Any, sender: object, named: dict[str, Any]) -> Any:
    """``receiver(signal=signal, sender=sender, **named)``, monitored if the
    current send is; called on the thread that runs it, after the gate."""
    if current.get() is None:
        return receiver(signal=signal, sender=sender, **named)
    call, managers = _start_call(receiver, True)
    if call is None:
        return receiver(signal=signal, sender=sender, **named)
    token = current.set(None)
    try:
        if managers.count(None) != len(managers):
            with _entered(call.send.notes[_monitors_key], managers):
                result = receiver(signal=signal, sender=sender, **named)
        else:
            result = receiver(signal=signal, sender=sender, **named)
    except BaseException as err:
        _end_call(call, None, err)
        raise
    finally:
        current.reset(token)
    _end_call(call, result, None)
    return result


async def ainvoke(receiver: Any, start: Callable[[], Awaitable[T]]) -> T:
    """``await start()``: the call of async ``receiver``, monitored."""
    if current.get() is None:
        return await start()
    call, managers = _start_call(receiver, True)
    if call is None:
        return await start()
    token = current.set(None)
    try:
        with _entered(call.send.notes[_monitors_key], managers):
            result = await start()
    except BaseException as err:
        _end_call(call, None, err)
        raise
    finally:
        current.reset(token)
    _end_call(call, result, None)
    return result


def hand_off(receiver: Any, submit: Callable[[tuple[bytes, ...]], Any]) -> Any:
    """``submit(carriers)`` for a call run in another process; returns its future.

    The call begins at hand-off; it ends when its future is done.
    """
    call, _ = _start_call(receiver, False) if current.get() is not None else (None, [])
    if call is None:
        return submit(())
    mons = call.send.notes[_monitors_key]
    carriers = []
    for m, c in zip(mons, _notify(mons, "carrier", call), strict=True):
        if c is not None:
            try:  # pickled here, so a monitor's bad carrier cannot fail the call
                carriers.append(pickle.dumps(c, pickle.HIGHEST_PROTOCOL))
            except Exception as err:
                _report(m, "pickling its carrier", err)
    fut = submit(tuple(carriers))
    fut.add_done_callback(lambda f: _remote_done(call, f))
    return fut


def _remote_done(call: CallEvent, fut: Any) -> None:
    """A handed-off call's future is done (on whatever thread finished it)."""
    send = call.send
    if fut.cancelled():  # it never began: by the deadline, or after a failure
        late = send.deadline is not None and time.monotonic() >= send.deadline
        if send._settle(call, TIMED_OUT if late else NOT_BEGUN):
            _notify(send.notes[_monitors_key], "call_ended", call)
        return
    err = fut.exception()
    _end_call(call, None if err is not None else fut.result(), err)


@contextlib.contextmanager
def carried(carriers: Sequence[bytes]) -> Iterator[None]:
    """In a worker: enter the carriers that came with a call, around it.

    A carrier that cannot be unpickled here (its monitor's package is not
    installed in the worker, say), entered or exited is skipped: the call
    runs anyway.
    """
    managers: list[Any] = []
    for blob in carriers:
        try:
            managers.append(pickle.loads(blob))
        except Exception as err:
            _report(carried, "unpickling a carrier", err)
    with _entered(managers, managers):
        yield
