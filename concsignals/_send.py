"""One send: its request, its begin gate, its outcomes, and their assembly.

Every backend (``_inline``, ``_threads``, ``_pickled``, ``_async``) runs a
:class:`Send` the same way; they only decide *where* a call runs.

Life of one call (slot ``i``, one per entry, in connection order)::

    NOT_BEGUN --begin(i)--> RUNNING --end(i, ...)--> Returned | Failed | TimedOut
        |                      |
        |                      +--unbegin(i)--> CLOSED   (handed over, then
        |                                                 cancelled in time)
        +--begin(i) refused: SKIPPED (disconnected or dead)
        +--close(): CLOSED (never begins)

* :meth:`Send.begin` is the begin gate: the disconnect check
  (``entry.get()``), the deadline and the closed flag are checked there, under
  the send's lock, immediately before the call.  A call begins only if it
  returns a receiver; whatever it returns, ``on_begin`` (if set) hears that
  the slot left ``NOT_BEGUN`` (an ``asend`` orders its begins on it).
  :meth:`Send.refuse` is the one place a slot that could not be handed over
  gets its executor's error.
* :meth:`Send.hand_over` records a call handed to an executor (its slot and
  Future).  Closing the send cancels the recorded calls that it stops: after
  a failure, those of the slots after the failed one (``cut``: an earlier
  call may still fail and must win); at the deadline or on cancellation, all
  of them.  A Future whose executor cannot promise that a cancelled call
  never ran (Dask's) is cancelled only by ``close(..., everything=True)``,
  from the waiting thread.  A cancelled call returns its slot through :meth:`unbegin`.
  No backend keeps a list of its own: "cancel what was handed over" is the
  send's.
* :meth:`Send.end` records what the call did: ``Returned``, ``Failed``, or,
  if the deadline passed before it ended, ``TimedOut`` (what it raised, if
  anything, becomes the ``TimeoutError``'s cause).  A failure closes a send
  whose error policy cancels (``Send.cancels``: ``send``'s default, never
  ``send_robust``); a ``BaseException`` that is not an ``Exception`` closes
  any send.
* :meth:`Send.close` (a failure, the deadline, cancellation, the sender's own
  ``BaseException``) turns every slot not begun into ``CLOSED``: from then on
  no call of the send begins.  Monitors (``send.watch``) hear of a call's
  end in :meth:`Send.end`; see ``concsignals/monitoring.py``.
* :meth:`Send.assemble` turns the outcomes into the results, in connection
  order, or the exception ``send`` raises: the earliest failed or timed-out
  slot, with the others as notes, or (``errors="group"``) a ``SendError``
  of them all.  A ``BaseException`` that is not an ``Exception`` is raised
  before anything else.

Every slot's state is an :data:`Outcome`: a :class:`Mark` while it has no
result (or never will), else ``Returned``, ``Failed`` or ``TimedOut``.
A slot is *settled* once it has its final state (anything but ``NOT_BEGUN``
and ``RUNNING``).  When the last slot settles, ``on_settled`` runs (once): a
waiting sender wakes, and the handed-over list is dropped.  After
:meth:`close`, only running calls are unsettled, so "wait until settled" is
exactly "wait for every begun call to end".

Locking rules
-------------
``Send.lock`` guards ``state``, ``receivers``, ``why``, ``cut``, ``handed``
and ``unsettled`` of one send.  It is held only to read or change them:
never while a receiver runs, never while anything blocks.  ``on_begin``,
``on_settled``, ``on_close`` and cancelling futures (whose callbacks may run
at once, in this thread) run after it is released.  Any thread may call any
method.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Sequence
from time import monotonic
from typing import TYPE_CHECKING, Any

from . import _inflight
from ._errors import Policy
from ._snapshot import Entry, Receiver

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ._monitor_events import SendEvent
    from ._signal import Signal

Responses = list[tuple[Receiver, Any]]


class Mark(enum.Enum):
    NOT_BEGUN = "not begun yet"
    RUNNING = "begun, not ended"
    SKIPPED = "disconnected before its call began"
    CLOSED = "not begun: the send was closed"
    STOPPED = "cancelled by the send after it began"


NOT_BEGUN = Mark.NOT_BEGUN
RUNNING = Mark.RUNNING
SKIPPED = Mark.SKIPPED
CLOSED = Mark.CLOSED
STOPPED = Mark.STOPPED


class Why(enum.Enum):
    FAILURE = "a call failed"
    DEADLINE = "the deadline passed"
    CANCELLED = "the send was cancelled"


class Returned:
    """A call that returned ``value``."""

    __slots__ = ("receiver", "value")

    def __init__(self, receiver: Receiver, value: Any) -> None:
        self.receiver = receiver
        self.value = value


class Failed:
    """A call that raised ``err``."""

    __slots__ = ("err", "receiver")

    def __init__(self, receiver: Receiver, err: BaseException) -> None:
        self.receiver = receiver
        self.err = err


class TimedOut:
    """A call not ended at the deadline; ``started``: it had begun."""

    __slots__ = ("late", "receiver", "started")

    def __init__(
        self, receiver: Receiver, started: bool, late: Exception | None = None
    ) -> None:
        self.receiver = receiver
        self.started = started
        self.late = late


Outcome = Mark | Returned | Failed | TimedOut

#: A call handed to an executor: its slot, its future, and whether a
#: successful ``cancel()`` proves it never ran and may come from any thread.
Handed = tuple[int, "Future[Any]", bool]


class Send:
    """One send: the request, and the state of each of its calls.

    Safe from any thread; see "Locking rules" in the module docstring.
    """

    __slots__ = (
        "cancels",
        "cut",
        "deadline",
        "deferred",
        "entries",
        "fatal",
        "group",
        "handed",
        "lock",
        "marks",
        "named",
        "on_begin",
        "on_close",
        "on_settled",
        "receivers",
        "robust",
        "sender",
        "signal",
        "stage",
        "state",
        "timeout",
        "unsettled",
        "watch",
        "why",
    )

    def __init__(
        self,
        signal: Signal,
        entries: Sequence[Entry],
        sender: object,
        named: dict[str, Any],
        timeout: float | None = None,
        robust: bool = False,
        policy: Policy | None = None,
    ) -> None:
        self.signal = signal
        self.entries = entries
        self.sender = sender
        self.named = named
        self.timeout = timeout
        #: ``send_robust``'s: every failure logged and returned in its slot.
        self.robust = robust
        #: The error policy (``_errors.py``; ``send_robust`` has none):
        #: whether a failure closes the send, and whether the sender gets a
        #: ``SendError`` of every failure.
        self.cancels = not robust and (policy is None or policy.cancels)
        self.group = not robust and policy is not None and policy.group
        self.deadline = None if timeout is None else monotonic() + timeout
        self.lock = threading.Lock()
        self.why: Why | None = None
        n = len(entries)
        self.state: list[Outcome] = [NOT_BEGUN] * n
        self.receivers: list[Receiver | None] = [None] * n
        #: Each running call's mark (``_inflight``), until the call ends.
        self.marks: list[_inflight.Running | None] = [None] * n
        self.unsettled = n
        #: The slots ``unsettled`` counts (``enter``); ``None``: all of them.
        self.stage: frozenset[int] | None = None
        self.fatal: BaseException | None = None
        #: Calls handed to executors and not yet cancelled (``hand_over``).
        self.handed: list[Handed] = []
        #: Once closed: handed-over calls of slots after ``cut`` are cancelled
        #: (a failure at slot ``cut``; ``-1``: all of them).
        self.cut = n
        self.on_settled: Callable[[], None] | None = None
        self.on_close: Callable[[], None] | None = None
        #: Called (any thread, no lock held) when a slot leaves ``NOT_BEGUN``
        #: through the gate: an ``asend`` that orders its begins waits on it.
        self.on_begin: Callable[[], None] | None = None
        #: monitor: the send's ``monitoring.SendEvent`` while monitors watch.
        self.watch: SendEvent | None = None
        #: The calls of an earlier send that waited for a commit (``_commit``).
        self.deferred = False

    @property
    def closed(self) -> bool:
        return self.why is not None

    def expired(self) -> bool:
        return self.deadline is not None and monotonic() >= self.deadline

    # -- the gate ---------------------------------------------------------------

    def begin(self, i: int, here: bool = True) -> Receiver | None:
        """Begin call ``i``: its live receiver, or ``None`` if it must not run.

        The call is marked as running (``_inflight``) before the entry's
        ``get`` is read, until :meth:`end`; ``here``: it runs in this thread
        (not: handed to another process).
        """
        mark = _inflight.enter(self.signal, self.entries[i], here)
        closing = settled = False
        r = None
        with self.lock:
            if self.state[i] is not NOT_BEGUN:
                _inflight.leave(mark)
                return None  # closed: it never begins
            if self.deadline is not None and monotonic() >= self.deadline:
                closing = self._close_locked(Why.DEADLINE, -1)
            else:
                r = self.entries[i].get()
                if r is not None:
                    self.state[i] = RUNNING
                    self.receivers[i] = r
                    self.marks[i] = mark
                else:
                    self._settle_locked(i, SKIPPED)
                    settled = self.unsettled == 0
        if r is None:
            _inflight.leave(mark)
        if self.on_begin is not None:
            self.on_begin()
        if closing:
            self._after_close()
            return None
        if settled:
            self._settled()
        return r

    def refuse(self, i: int, err: Exception) -> None:
        """Call ``i`` could not be handed over (``err``: the executor refused,
        a job failed): that is its outcome, if it may begin."""
        if self.begin(i) is not None:
            self.end(i, err=err)

    def end(self, i: int, value: Any = None, err: BaseException | None = None) -> None:
        """Call ``i`` returned ``value`` or raised ``err``."""
        _inflight.leave(self.marks[i])
        late = self.deadline is not None and monotonic() > self.deadline
        watch = self.watch
        if watch is not None:  # monitor: the call's clock stops
            watch.stop(i, value, err)
        closing = settled = report = cancel = False
        with self.lock:
            if self.state[i] is not RUNNING:
                return
            r = self.receivers[i]
            assert r is not None
            out: Outcome
            if err is None:
                out = Returned(r, value)
            elif not isinstance(err, Exception):
                out = self._fatal_locked(r, err)
            else:
                out = Failed(r, err)
            if late and not isinstance(out, Mark):
                cause = err if isinstance(err, Exception) else None
                out = TimedOut(r, started=True, late=cause)
            self._settle_locked(i, out)
            cut = None
            if self.fatal is not None:
                cut, why = -1, Why.FAILURE
            elif not isinstance(out, Returned | Mark) and self.cancels:
                # A failure: the calls handed over after this slot go (an
                # earlier one, begun, may still fail and win); a time-out:
                # every call not running goes.
                cut, why = (-1, Why.DEADLINE) if late else (i, Why.FAILURE)
            if cut is not None:
                cancel = cut < self.cut
                closing = self._close_locked(why, cut)
            settled = self.unsettled == 0
            report = watch is not None and watch.claim(i)
            by_deadline = self.why is Why.DEADLINE
        if report:  # monitor: call ended, with this outcome
            assert watch is not None
            watch.settled(self, i, out, by_deadline)
        if closing:
            self._after_close()
            return
        if cancel:
            self._cancel_handed(False)
        if settled:
            self._settled()

    def _fatal_locked(self, r: Receiver, err: BaseException) -> Failed | Mark:
        if isinstance(err, _cancelled_error()) and self.why is not None:
            return STOPPED  # cancelled by this send, after it closed
        if self.fatal is None:
            self.fatal = err
        return Failed(r, err)

    def unbegin(self, i: int) -> None:
        """Call ``i``, handed over, was cancelled before it could begin."""
        _inflight.leave(self.marks[i])
        expired = self.expired()
        with self.lock:
            if self.state[i] is not RUNNING:
                return
            r = self.receivers[i]
            assert r is not None
            # Cancelled because the deadline passed: timed out, not begun.
            self._settle_locked(i, TimedOut(r, started=False) if expired else CLOSED)
            settled = self.unsettled == 0
        if settled:
            self._settled()

    def close(self, why: Why, everything: bool = False) -> None:
        """Let no further call begin, and cancel every call handed over that
        its executor can still cancel (idempotent).  ``everything``: also
        those whose executor cannot promise a cancelled call never ran (Dask):
        only from a thread that is not running a future's callback, and only
        where the send may then abandon them (the deadline, cancellation)."""
        with self.lock:
            self._close_locked(why, -1)
        self._after_close(everything)

    def enter(self, slots: Sequence[int]) -> None:
        """From now on only ``slots`` count as unsettled: ``on_settled``
        means they all settled.  A send whose connections have phases
        enters each phase's slots in turn (see ``_deliver.py``); the slots
        of a phase are all ``NOT_BEGUN`` when it is entered."""
        with self.lock:
            self.stage = frozenset(slots)
            self.unsettled = sum(
                self.state[i] is NOT_BEGUN or self.state[i] is RUNNING for i in slots
            )

    # -- handing over -----------------------------------------------------------

    def hand_over(self, i: int, fut: Future[Any], stops: bool = True) -> None:
        """Call ``i`` was handed to an executor as ``fut``: from now on, closing
        the send cancels it (``stops``: see :data:`Handed`).  Handed over to
        a send already closed, it is cancelled at once."""
        with self.lock:
            self.handed.append((i, fut, stops))
            closed = self.why is not None
        if closed:
            self._cancel_handed(False)

    def _cancel_handed(self, everything: bool) -> None:
        """Cancel the handed-over calls that closing the send stops."""
        with self.lock:
            if self.why is None:
                return
            keep: list[Handed] = []
            stop: list[Handed] = []
            for h in self.handed:
                i, _, stops = h
                ends = (stops or everything) and (
                    i > self.cut or self.state[i] is not RUNNING
                )
                (stop if ends else keep).append(h)
            self.handed = keep
        for i, fut, _ in stop:
            if fut.cancel():
                self.unbegin(i)  # out of process: begun at hand-off, never ran

    # -- internals --------------------------------------------------------------

    def _settle_locked(self, i: int, out: Outcome) -> None:
        self.state[i] = out
        stage = self.stage
        if stage is None or i in stage:
            self.unsettled -= 1

    def _close_locked(self, why: Why, cut: int) -> bool:
        self.cut = min(self.cut, cut)
        if self.why is not None:
            return False
        self.why = why
        state = self.state
        for i, s in enumerate(state):
            if s is NOT_BEGUN:
                self._settle_locked(i, CLOSED)
        return True

    def _after_close(self, everything: bool = False) -> None:
        self._cancel_handed(everything)
        if self.on_close is not None:
            self.on_close()
        if self.unsettled == 0:
            self._settled()

    def _settled(self) -> None:
        with self.lock:  # exactly once, whichever thread settles last
            callback, self.on_settled = self.on_settled, None
            self.handed = []  # nothing left to cancel
        if callback is not None:
            callback()

    # -- assembly ---------------------------------------------------------------

    def assemble(self) -> Responses:
        """The results in connection order, or what ``send`` raises."""
        with self.lock:
            state, receivers, why = list(self.state), list(self.receivers), self.why
        responses: Responses = []
        failures: list[tuple[Receiver, BaseException]] = []
        seen: set[int] = set()
        for i, out in enumerate(state):
            if out is RUNNING:
                r = receivers[i]
                assert r is not None
                out = TimedOut(r, started=True)
            elif out is CLOSED or out is STOPPED:
                if why is not Why.DEADLINE:
                    continue
                r = receivers[i] or self.entries[i].get()
                if r is None:
                    continue
                out = TimedOut(r, started=out is STOPPED)
            elif isinstance(out, Mark):  # SKIPPED (NOT_BEGUN: never, once settled)
                continue
            if isinstance(out, Returned):
                responses.append((out.receiver, out.value))
                continue
            err = self._error(out, seen)
            failures.append((out.receiver, err))
            responses.append((out.receiver, err))
        if self.fatal is not None:
            raise _with_notes(self.fatal, failures)
        if not failures:
            return responses
        if self.group:
            from ._errors import group  # only when something failed

            raise group(self.signal, failures, responses)  # type: ignore[arg-type]
        if not self.robust:
            raise _with_notes(failures[0][1], failures)
        for r, err in failures:
            log_failure(self.signal, r, err)
        return responses

    def _error(self, out: Failed | TimedOut, seen: set[int]) -> BaseException:
        if isinstance(out, TimedOut):
            state = "did not finish" if out.started else "was not started"
            err: BaseException = TimeoutError(
                f"receiver {out.receiver!r} {state} within the {self.timeout} s "
                f"timeout of this send of {self.signal!r}"
            )
            err.__cause__ = out.late
            return err
        err = out.err
        if id(err) in seen:  # one executor failure shared by several slots
            err = own_copy(err)
        seen.add(id(err))
        return err


def own_copy(err: BaseException) -> BaseException:
    """A distinct exception instance equal to ``err``, caused by it."""
    import copy  # only when an executor failure is shared: keeps imports light

    try:
        dup = copy.copy(err)
    except Exception:
        dup = RuntimeError(f"{type(err).__name__}: {err}")
    dup.__cause__ = err
    return dup.with_traceback(err.__traceback__)


def _with_notes(
    raised: BaseException, failures: list[tuple[Receiver, BaseException]]
) -> BaseException:
    for r, err in failures:
        if err is not raised:
            raised.add_note(
                f"concsignals: receiver {r!r} also failed in this send: "
                f"{type(err).__name__}: {err}"
            )
    return raised


def _cancelled_error() -> type[BaseException]:
    """``asyncio.CancelledError`` if asyncio is loaded (it is, if a task ran)."""
    import sys

    aio = sys.modules.get("asyncio")
    return aio.CancelledError if aio is not None else _Never


class _Never(BaseException):
    pass


def describe(receiver: object) -> str:
    """The receiver's ``__qualname__`` as Django logs it, or its repr."""
    name = getattr(receiver, "__qualname__", None)
    return name if isinstance(name, str) else repr(receiver)


def log_failure(signal: Signal, receiver: object, err: BaseException) -> None:
    """Log a receiver's failure exactly as Django's ``send_robust`` does."""
    import logging  # only when something failed: keeps ``import concsignals`` light

    logging.getLogger(signal._logger_name).error(
        "Error calling %s in Signal.send_robust() (%s)",
        describe(receiver),
        err,
        exc_info=err,
    )
