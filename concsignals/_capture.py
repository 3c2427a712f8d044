"""What ``concsignals.testing`` records: :class:`Sent`, :class:`Capture` and
the one monitor that feeds them.

Design
------
A capture never touches a signal.  It is a monitor (``monitoring.py``): the
engine already reports every send, on every path (``send``,
``send_robust``, ``asend``, ``submit``, views, every executor,
``concsignals.django``; a send with nobody to call too), to the
monitors installed, in the sender's thread
first (``send_began``), then each call's end (``call_ended``, on any
thread), then ``send_ended`` once after them.  One monitor,
:data:`_monitor`, is installed while any capture (or ``wait_for``) is open,
and uninstalled when the last one closes, so a test suite that opens none
pays nothing.

Which captures see a send is decided once, in ``send_began``, in the
sender's thread:

* a ``scope="context"`` capture is in :data:`_open`, a context variable: it
  sees the sends made in the context that entered it (this thread, this
  asyncio task) and in copies of it made while it is open (a task created
  inside, and every call concsignals hands to a pool or a loop, which runs in
  a copy of the sender's context, as ``muted()`` is seen: ``_mute.py``).  A
  thread the user starts does not copy the context: its sends are not seen.
* a ``scope="process"`` capture is in :data:`_everywhere`: it sees every send
  of the process, from any thread.

The send's :class:`Sent` is made there, appended to each capture that wants
it, and kept in the send's ``notes``; its calls' results are added as they
end and it is closed at ``send_ended`` (:meth:`Sent._end`), which then tells
its captures (``wait_for`` waits on that).

Locking rules
-------------
``_lock`` guards ``_everywhere`` and ``_users`` (how many captures are open:
installing and uninstalling the monitor) and nothing else.  Each capture's
``_lock`` guards its list of records and its listeners.  A ``Sent``'s fields
are written by the thread reporting its send's end and published by
``ended`` (a ``threading.Event``), set last.  No lock is held while user
code runs (a listener, a ``check``, ``__eq__`` of an argument).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from typing import Any

from . import monitoring
from ._monitor_events import EXCEPTION, RESULT, CallEvent, SendEvent
from ._signal import Signal
from .executors import SignalRef

SCOPES = ("context", "process")


class _Any:
    """``ANY``: equal to everything (a sender or an argument left open)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()


def same(expected: object, actual: object) -> bool:
    """Whether ``actual`` is what a test asked for (``ANY``: anything)."""
    return expected is ANY or expected is actual or bool(expected == actual)


def name_of(signal: object) -> str:
    """A signal by where it lives (``app.signals.order_placed``)."""
    return str(SignalRef.of(signal))


class Sent:
    """One send a capture recorded.

    ``signal``, ``sender``, ``named`` (its named arguments) and ``thread``
    (the sender's ``threading.Thread``) are set when the send begins;
    ``results`` (``(receiver, value or exception)`` of each call that
    returned or raised, in connection order, as ``send_robust`` gives them)
    and ``error`` (what the send raised, or ``None``) once it ended: see
    ``ended``, a ``threading.Event``.
    """

    __slots__ = (
        "_calls",
        "captures",
        "ended",
        "error",
        "named",
        "results",
        "sender",
        "signal",
        "thread",
    )

    def __init__(self, event: SendEvent, captures: tuple[Capture, ...]) -> None:
        self.signal = event.signal
        self.sender = event.sender
        self.named: dict[str, Any] = dict(event.named)
        self.thread = threading.current_thread()
        self.results: tuple[tuple[Any, Any], ...] = ()
        self.error: BaseException | None = None
        self.ended = threading.Event()
        self.captures = captures
        #: ``(slot, receiver, value)`` as calls end, on any thread (an append
        #: is atomic, with or without the GIL).
        self._calls: list[tuple[int, Any, Any]] = []

    def matches(self, signal: object, sender: object, named: dict[str, Any]) -> bool:
        """Whether this is a send of ``signal`` for ``sender`` with (at least)
        these named arguments (``ANY`` matches anything)."""
        if self.signal is not signal or not same(sender, self.sender):
            return False
        return all(k in self.named and same(v, self.named[k]) for k, v in named.items())

    def _end(self, error: BaseException | None) -> None:
        self.results = tuple((r, v) for _, r, v in sorted(self._calls, key=_slot))
        self.error = error
        self._calls = []
        self.ended.set()
        for capture in self.captures:
            capture._ended(self)

    def __repr__(self) -> str:
        named = "".join(f", {k}={v!r}" for k, v in self.named.items())
        where = self.thread.name
        return (
            f"<Sent {name_of(self.signal)}(sender={self.sender!r}{named}) in {where}>"
        )


def _slot(call: tuple[int, Any, Any]) -> int:
    return call[0]


def describe(
    wanted: str, records: list[Sent] | tuple[Sent, ...], label: str = "sent instead"
) -> str:
    """A failure message: what was wanted, and the sends ``records`` lists."""
    if not records:
        return f"{wanted}; nothing was sent"
    lines = "".join(f"\n  {i}. {s!r}" for i, s in enumerate(records, 1))
    return f"{wanted}; {label}:{lines}"


def wanted(signal: object, sender: object, named: dict[str, Any]) -> str:
    args = "".join(f", {k}={v!r}" for k, v in named.items())
    return f"{name_of(signal)}(sender={sender!r}{args})"


class Capture:
    """``capture(...)``: a context manager; entered, the recorder of the
    sends it sees (see ``concsignals.testing.capture``).

    Safe from any thread: records are appended by the threads that send and
    read as a snapshot (``sent``) by any.
    """

    def __init__(self, signals: tuple[object, ...], sender: object, scope: str) -> None:
        for sig in signals:
            if not isinstance(sig, Signal):
                raise TypeError(f"capture() needs concsignals signals, not {sig!r}")
        if scope not in SCOPES:
            raise ValueError(
                f"capture() scope must be 'context' or 'process', not {scope!r}"
            )
        self.signals = signals
        self.sender = sender
        self.scope = scope
        self._lock = threading.Lock()  # guards _sent and _listeners
        self._sent: list[Sent] = []
        self._listeners: list[Callable[[Sent], None]] = []
        self._token: contextvars.Token[tuple[Capture, ...]] | None = None
        self.open = False

    def __repr__(self) -> str:
        return f"<concsignals capture ({self.scope}) of {len(self._sent)} send(s)>"

    # -- opening and closing ------------------------------------------------------

    def __enter__(self) -> Capture:
        if self.open:
            raise RuntimeError(f"{self!r} is already open: make a capture() per with")
        self.open = True
        _use(+1, self if self.scope == "process" else None)
        if self.scope == "context":
            _open.set((*_open.get(), self))
        return self

    def __exit__(self, *exc: object) -> None:
        self.open = False
        if self.scope == "context":
            _open.set(tuple(c for c in _open.get() if c is not self))
        _use(-1, self if self.scope == "process" else None)

    def wants(self, event: SendEvent) -> bool:
        """Whether this capture records ``event`` (its signal and sender)."""
        if self.signals and not any(event.signal is s for s in self.signals):
            return False
        return same(self.sender, event.sender)

    def listen(self, listener: Callable[[Sent], None]) -> None:
        """Call ``listener(sent)`` (on the thread that ended it, no lock
        held) each time a recorded send ends."""
        with self._lock:
            self._listeners.append(listener)

    def _add(self, sent: Sent) -> None:
        with self._lock:
            self._sent.append(sent)

    def _ended(self, sent: Sent) -> None:
        with self._lock:
            listeners = tuple(self._listeners)
        for listener in listeners:
            listener(sent)

    # -- reading ------------------------------------------------------------------

    @property
    def sent(self) -> tuple[Sent, ...]:
        """Every send recorded so far, in the order they began."""
        with self._lock:
            return tuple(self._sent)

    def __iter__(self) -> Iterator[Sent]:
        return iter(self.sent)

    def __len__(self) -> int:
        return len(self.sent)

    def clear(self) -> None:
        """Forget what was recorded so far."""
        with self._lock:
            self._sent.clear()

    def of(self, signal: object, sender: object = ANY, **named: Any) -> list[Sent]:
        """The recorded sends of ``signal`` that match."""
        return [s for s in self.sent if s.matches(signal, sender, named)]

    # -- asserting ------------------------------------------------------------------

    def assert_sent(
        self, signal: object, /, sender: object = ANY, **named: Any
    ) -> Sent:
        """Fail unless a send of ``signal`` matched; return the first that did."""
        found = self.of(signal, sender, **named)
        if not found:
            want = wanted(signal, sender, named)
            raise AssertionError(describe(f"expected a send of {want}", self.sent))
        return found[0]

    def assert_sent_once(
        self, signal: object, /, sender: object = ANY, **named: Any
    ) -> Sent:
        """Fail unless exactly one send of ``signal`` matched; return it."""
        found = self.of(signal, sender, **named)
        if len(found) != 1:
            want = wanted(signal, sender, named)
            head = f"expected one send of {want}, got {len(found)}"
            raise AssertionError(describe(head, self.sent))
        return found[0]

    def assert_not_sent(
        self, signal: object, /, sender: object = ANY, **named: Any
    ) -> None:
        """Fail if a send of ``signal`` matched."""
        found = self.of(signal, sender, **named)
        if found:
            want = wanted(signal, sender, named)
            head = f"expected no send of {want}, got {len(found)}"
            raise AssertionError(describe(head, found, "these matched"))


# -- the monitor ------------------------------------------------------------------

#: The ``scope="context"`` captures open in this context, innermost last.
_open: contextvars.ContextVar[tuple[Capture, ...]] = contextvars.ContextVar(
    "concsignals_captures", default=()
)
#: Guards ``_everywhere`` and ``_users``; see "Locking rules".
_lock = threading.Lock()
#: The ``scope="process"`` captures open (replaced whole, read without lock).
_everywhere: tuple[Capture, ...] = ()
#: How many captures are open in the process: the monitor is installed while
#: it is not zero.
_users = 0


def _use(step: int, everywhere: Capture | None) -> None:
    global _users, _everywhere
    with _lock:
        if everywhere is not None:
            kept = tuple(c for c in _everywhere if c is not everywhere)
            _everywhere = (*kept, everywhere) if step > 0 else kept
        _users += step
        if step > 0 and _users == 1:  # the first one opens
            monitoring.install(_monitor)
        elif _users == 0:  # the last one closed
            monitoring.uninstall(_monitor)


class _Recorder:
    """The monitor behind every capture (installed while one is open)."""

    def send_began(self, send: SendEvent) -> None:
        if send.deferred:  # recorded when it was sent; its calls run now
            return
        seen = (*_open.get(), *_everywhere)
        wanted = tuple(c for c in seen if c.open and c.wants(send))
        if not wanted:
            return
        sent = send.notes[self] = Sent(send, wanted)
        for capture in wanted:
            capture._add(sent)

    def call_ended(self, call: CallEvent) -> None:
        sent = call.send.notes.get(self)
        if sent is None or call.outcome not in (RESULT, EXCEPTION):
            return
        value = call.result if call.outcome == RESULT else call.error
        sent._calls.append((call.index, call.receiver, value))

    def send_ended(self, send: SendEvent) -> None:
        sent = send.notes.get(self)
        if sent is not None:
            sent._end(send.error)

    def __repr__(self) -> str:
        return "<concsignals.testing capture>"


_monitor = _Recorder()
