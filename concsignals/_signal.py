"""Signal and receiver(): the writer side and the send entry points.

Writers (connect, disconnect, compaction) serialise on ``Signal._lock`` and
publish a new :class:`~concsignals._snapshot.Snapshot` with one attribute
write (see ``_registry.py`` for a write step by step).  Senders never take the
lock: they read ``_snapshot`` once and run it (see ``_snapshot.py`` for the
memory-model assumptions).

Locking rules
-------------
``Signal._lock`` guards the writers' state: replacing ``Signal._snapshot``,
appending to and marking entries in its :class:`~concsignals._snapshot.State`,
and the one-way ``Entry.get -> DEAD`` transition.  Nothing else.  While it is
held:

* no user code is called: receivers are inspected (``callable``, signature,
  ``hasattr``), weak references are made and ``dispatch_uid`` is hashed and
  compared before it is taken; references a write drops (a ``weak=False``
  receiver, a uid, a sender held strongly) are dropped after it is released,
  so no ``__del__`` runs under it;
* nothing blocks but the lock itself.

One exception no library can rule out: an allocation may start the garbage
collector, which may run some unrelated ``__del__`` right here, and that
``__del__`` may connect or disconnect on this very signal.  So the lock is
reentrant, and a write commits only if the snapshot it started from is still
current; otherwise it starts again on top of the nested write.

Weak-reference callbacks never take the lock (they append to a queue); readers
only ever *try* it (``blocking=False``), so a send never waits for a writer.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from . import (
    _commit,
    _errors,
    _fork,
    _inflight,
    _inline,
    _mute,
    _registry,
    _run,
    monitoring,
)
from ._callables import accepts_kwargs, is_async_receiver
from ._connection import Connection
from ._inflight import local as _reading
from ._mute import Mute, Rule
from ._send import Send
from ._snapshot import (
    Entry,
    Receiver,
    Snapshot,
    any_live_async,
    any_options,
    empty,
    receiver_getter,
)
from ._view import SignalView

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: monitor: a copy of ``monitoring.installed`` for the fast path of ``send``
#: (one global read costs less than a module attribute).
_monitored = False


def _switch_monitoring(on: bool) -> None:
    global _monitored
    _monitored = on


monitoring.on_switch(_switch_monitoring)  # monitor: keeps _monitored current
Responses = list[tuple[Receiver, Any]]


class Signal:
    """A signal: receivers connect to it, senders send through it.

    ``Signal(use_caching=False, *, executor=None, errors=None,
    on_error=None)``.  Every method may be called from any number of threads
    at once, and from inside a receiver.

    ``use_caching`` is accepted for compatibility with ``django.dispatch``; the
    per-sender index it asks for is always built, so it changes nothing.
    ``executor`` makes every ``send``, ``send_robust``, ``asend``,
    ``asend_robust`` and ``submit`` of this signal use it (see :meth:`using`);
    concsignals never shuts it down.  ``errors`` (``"first"``, Django's, or
    ``"group"``: a :class:`~concsignals.SendError` of every failure) and
    ``on_error`` (``"cancel"`` or ``"continue"``) are the error policy of
    its ``send``, ``asend`` and ``submit`` (see :meth:`using`).
    """

    def __init__(
        self,
        use_caching: bool = False,
        *,
        executor: Executor | None = None,
        errors: str | None = None,
        on_error: str | None = None,
    ) -> None:
        self.use_caching = use_caching
        self._executor = executor
        #: The error policy (``_errors.py``); ``None``: Django's.
        self._policy = _errors.policy(errors, on_error)
        #: The policy as asked for: ``using`` fills what a view leaves out.
        self._asked = (errors, on_error)
        #: Whether ``send`` must leave the fast path for the executor or
        #: the policy (one read there: both are fixed at construction).
        self._routed = executor is not None or self._policy is not None
        # Guards the writers' state; see the module docstring.  Readers read
        # _snapshot without it: one attribute read of an immutable view.
        # Reentrant for the garbage collector's sake only (see _registry.py).
        self._lock = threading.RLock()
        self._snapshot: Snapshot = empty()
        # Weak-reference callbacks (any thread, inside the GC) append the dead
        # reference here; compaction pops what it counted (_snapshot.py, 4).
        self._deaths = _registry.new_deaths()
        self._notice = self._deaths.append
        # len(_deaths) when a send last refreshed the snapshot's cached tuples
        # (written under _lock, read without it).
        self._dead_seen = 0
        _fork.register(self)  # a forked child gets a fresh _lock: see _fork.py

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} at {id(self):#x}>"

    # -- writers --------------------------------------------------------------

    def connect(
        self,
        receiver: Receiver,
        sender: object = None,
        weak: bool = True,
        dispatch_uid: object = None,
        *,
        via: object = None,
        wait: bool = True,
        phase: int = 0,
        on_commit: bool | str = False,
    ) -> Connection:
        """Connect ``receiver`` to this signal, for ``sender`` or (``None``) any;
        return the :class:`~concsignals.Connection` (Django returns ``None``).

        Idempotent per (``dispatch_uid`` or receiver, sender): connecting
        again changes nothing, options included.  A bound method sender is
        identified by its object and function, as in Django.  A receiver that
        is not callable, lacks ``**kwargs``, cannot be weakly referenced
        (with ``weak=True``) or cannot be pickled for an out-of-process
        ``via`` is refused and nothing changes.

        Where and when its calls run (see "Where receivers run" in the docs):
        ``via`` (``None``: where the send runs its calls; ``concsignals.INLINE``,
        an executor, an event loop, a ``concsignals.Serial``), ``wait``
        (``False``: the send does not wait; the response is a Future of the
        call's result) and ``phase`` (lower phases end before higher ones
        begin).  ``on_commit`` (``True``: database ``"default"``, or an
        alias): a call from a send made while that database's transaction is
        open in the sending thread waits for its commit, and is dropped by
        its rollback (see "Sends that wait for the commit" in docs/django.md).

        Concurrency: atomic, O(1) amortised.  A send that begins after
        ``connect`` returns calls the receiver; a send already under way does
        not.
        """
        check_receiver(receiver)
        opts = None
        if via is not None or wait is not True or phase != 0 or on_commit is not False:
            from . import _targets  # only for options: keeps imports light

            opts = _targets.options(receiver, via, wait, phase, on_commit)
        is_async = is_async_receiver(receiver)
        get, hold = receiver_getter(receiver, weak, self._notice)
        key = _registry.lookup_key(receiver, sender, dispatch_uid)
        req = _registry.Request(key, dispatch_uid, get, hold, is_async, opts)
        released: list[object] = []
        while True:  # again only if another writer changed this uid's bucket
            resolved = None
            if _registry.is_bucket_key(key):
                resolved = _registry.resolve_uid(self, key, dispatch_uid)
            with self._lock:
                done = _registry.connect_locked(self, req, sender, resolved, released)
            if done:
                assert req.entry is not None
                if _registry.on_connect is not None:  # pytest --concsignals-strict
                    _registry.on_connect(req.entry)
                return Connection(self, req.entry, key, dispatch_uid)
        # ``released`` is dropped here, after the lock: see _registry.py

    def disconnect(
        self,
        receiver: Receiver | None = None,
        sender: object = None,
        dispatch_uid: object = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> bool:
        """Disconnect a receiver; return whether one was connected.

        Concurrency: atomic, O(1) amortised.  Once it returns, no send calls
        the receiver again, not even a send already under way that has not
        reached it yet.  ``wait=False``: a call already begun runs on to its
        end.  ``wait=True``: returns once every call of the connection that
        began before has ended, on every target, but a call this thread or
        task is making (a receiver may disconnect itself); ``timeout``:
        else ``TimeoutError`` naming what still runs, the receiver staying
        disconnected.  No lock is held while waiting (``_inflight.py``).
        """
        gone: list[Entry] = []
        found = _registry.disconnect(self, receiver, sender, dispatch_uid, gone)
        if wait and gone:
            _inflight.wait(
                _inflight.waiting_for(gone, True), timeout, f"disconnect from {self!r}"
            )
        return found

    async def adisconnect(
        self,
        receiver: Receiver | None = None,
        sender: object = None,
        dispatch_uid: object = None,
        *,
        timeout: float | None = None,
    ) -> bool:
        """:meth:`disconnect` with ``wait=True``, awaiting the calls without
        blocking the running loop (a call running as a task on it included)."""
        gone: list[Entry] = []
        found = _registry.disconnect(self, receiver, sender, dispatch_uid, gone)
        if gone:
            await _inflight.await_(
                _inflight.waiting_for(gone, False), timeout, f"disconnect from {self!r}"
            )
        return found

    def drain(self, timeout: float | None = None) -> None:
        """Wait until no call of this signal is under way: every call begun
        has ended and every fire-and-forget call is done (for shutdown).
        ``timeout``: ``TimeoutError`` naming what still runs.  Refused with
        ``RuntimeError`` inside a call of this signal (it would wait for
        itself)."""
        _inflight.wait(_inflight.draining(self, True), timeout, f"drain of {self!r}")

    async def adrain(self, timeout: float | None = None) -> None:
        """:meth:`drain` without blocking the running loop."""
        what = f"drain of {self!r}"
        await _inflight.await_(_inflight.draining(self, False), timeout, what)

    def _collect_dead(self) -> None:
        """A send met a dead entry: have later sends rebuild their tuples
        without it.  O(1); never blocks (skips if a writer holds the lock).

        Freeing memory is left to the writers' compaction, so a send never
        does work proportional to the registry.
        """
        if len(self._deaths) > self._dead_seen and self._lock.acquire(blocking=False):
            try:
                base = self._snapshot
                fresh = base.refreshed()
                if self._snapshot is base:
                    self._snapshot = fresh
                    self._dead_seen = len(self._deaths)
            finally:
                self._lock.release()

    # -- readers --------------------------------------------------------------

    @property
    def receivers(self) -> list[Receiver]:
        """The live receivers, in connection order (a new list each time).

        Reads one snapshot.  O(n) anyway, so if deaths were reported and
        the writer lock is free right now, it first compacts them away (which
        releases a ``weak=False`` receiver whose sender died); never blocks.
        """
        _registry.drop_dead(self, blocking=False)
        entries = self._snapshot.entries
        return [r for e in entries if e.is_live() and (r := e.receiver()) is not None]

    def has_listeners(self, sender: object = None) -> bool:
        """Whether a send for ``sender`` would call any receiver right now.

        Mutes are not counted: it says whether receivers are connected, the
        same in every thread (see docs/muting.md).  Lock-free; the answer may
        be stale by the time the caller acts on it.
        """
        return any(e.get() is not None for e in self._snapshot.lookup(sender))

    def send(self, /, sender: Any, **named: Any) -> Responses:
        """Call every receiver for ``sender``; return ``[(receiver, response)]``.

        Receivers are called as ``receiver(signal=self, sender=sender,
        **named)``, in connection order.  The exception of the earliest failing
        receiver in connection order propagates, with the send's other
        failures attached as notes.  Inline, later receivers are not called; in
        parallel, receivers not yet started are not started, and ``send``
        returns only when the started ones have finished.

        Concurrency: lock-free.  Reads one snapshot; a receiver disconnected
        before its call begins is skipped (with an out-of-process executor,
        the check is made when the call is handed to it).
        """
        snap = self._snapshot
        entries = snap.inline
        if not entries:  # None: no fast path; (): nobody to call
            if entries is None:
                return self._send_general(snap, sender, named)
            return _run.nobody(self, sender, named, False) if _monitored else []
        if self._routed or _monitored:  # monitor: off the fast path
            return self._send_general(snap, sender, named)
        if _mute.active and _mute.held.get():  # mute: this context mutes some
            return self._send_general(snap, sender, named)
        # The hot loop.  entry.get() is the disconnect-and-liveness check and
        # runs immediately before each call (see _snapshot.py).  The send is
        # marked in this thread while it runs (disconnect(wait=True) and drain:
        # _inflight.py): a skip counts in the mark, a call once it returned.
        responses: Responses = []
        mark: list[Any] = [self, entries, responses, 0]
        stack = _reading.stack
        stack.append(mark)
        try:
            for entry in entries:
                r = entry.get()
                if r is None:
                    mark[3] += 1
                    self._collect_dead()
                    continue
                responses.append((r, r(signal=self, sender=sender, **named)))
        finally:
            stack.pop()
        return responses

    def _send_general(
        self, snap: Snapshot, sender: Any, named: dict[str, Any]
    ) -> Responses:
        """``send`` off the fast path: sender routes, an executor, async."""
        entries = snap.lookup(sender)
        if _mute.active:  # mute: leave out what this context muted
            entries = _mute.unmuted(self, entries, sender)
        if not entries:
            return _run.nobody(self, sender, named, False) if _monitored else []
        policy = self._policy
        if (
            self._routed
            or (snap.has_async and any_live_async(entries))
            or (snap.has_opts and any_options(entries))
        ):
            if snap.has_opts:  # on_commit: calls that wait leave the send
                entries = _commit.withhold(self, entries, sender, named, self._executor)
                if not entries:
                    return _run.nobody(self, sender, named, False) if _monitored else []
            if snap.has_opts and not _monitored and policy is None:
                made = _run.lean(self, entries, sender, named, False)
                if made is not None:
                    return made
            send = Send(self, entries, sender, named, None, False, policy)
            return _run.run(send, self._executor)
        if _monitored:  # monitor: the inline loop, reporting as it goes
            return _inline.send_watched(self, entries, sender, named, False)
        responses = _inline.call_inline(self, entries, sender, named)
        if len(responses) != len(entries):
            self._collect_dead()
        return responses

    def send_robust(self, /, sender: Any, **named: Any) -> Responses:
        """Like :meth:`send`, but every receiver runs; an ``Exception`` raised
        by one, or met in running it (pickling, the executor), is logged on
        logger ``concsignals`` and returned in its slot.

        A ``BaseException`` that is not an ``Exception`` propagates, once every
        call the send began has ended.
        """
        snap = self._snapshot
        entries = self._entries(snap, sender, named)
        if not entries:
            return _run.nobody(self, sender, named, True) if _monitored else []
        if (
            self._executor is None
            and not any(e.is_async for e in entries)
            and not (snap.has_opts and any_options(entries))
        ):
            if _monitored:  # monitor: the inline loop, reporting as it goes
                return _inline.send_watched(self, entries, sender, named, True)
            return _inline.call_robust(self, entries, sender, named)
        if snap.has_opts and not _monitored:
            made = _run.lean(self, entries, sender, named, True)
            if made is not None:
                return made
        return _run.run(Send(self, entries, sender, named, None, True), self._executor)

    async def asend(self, /, sender: Any, **named: Any) -> Responses:
        """Async :meth:`send`: async receivers run concurrently on the running
        loop, sync ones off it; results in connection order.

        Reads the snapshot when awaited.  Lock-free; safe from many loops and
        threads at once.  Cancelling the awaiting task closes the send: the
        receivers it started are cancelled and waited for, and no call not yet
        begun begins.
        """
        entries = self._entries(self._snapshot, sender, named)
        if not entries:
            return _run.nobody(self, sender, named, False) if _monitored else []
        send = Send(self, entries, sender, named, None, False, self._policy)
        return await _run.arun(send, self._executor)

    async def asend_robust(self, /, sender: Any, **named: Any) -> Responses:
        """Async :meth:`send_robust`: every receiver runs; each ``Exception``
        is logged and returned in its slot.

        Reads the snapshot when awaited.  Lock-free; safe from many loops and
        threads at once.  Cancelling the awaiting task behaves as for
        :meth:`asend`.
        """
        entries = self._entries(self._snapshot, sender, named)
        if not entries:
            return _run.nobody(self, sender, named, True) if _monitored else []
        send = Send(self, entries, sender, named, None, True)
        return await _run.arun(send, self._executor)

    def submit(self, /, sender: Any, **named: Any) -> Future[Responses]:
        """Start a robust send and return at once with a Future of its results
        (with ``errors="group"``: a send of that policy, whose Future's
        exception is the :class:`~concsignals.SendError`).

        On an executor, the last call to finish resolves the Future; otherwise
        the send runs on a thread pool concsignals owns (shut down at exit;
        after that, at interpreter exit, the send runs in the caller's thread
        and the Future returned is done).  The Future is held until done.
        Cancelling it before it is done succeeds, and no call of the send that
        had not begun begins.  Called from a worker of the pool it would wait
        on, it runs the send at once and returns a done Future, so it cannot
        deadlock.
        """
        entries = self._entries(self._snapshot, sender, named)
        policy = self._policy
        robust = policy is None or not policy.group
        send = Send(self, entries, sender, named, None, robust, policy)
        return _run.submit(send, self._executor)

    def _entries(
        self,
        snap: Snapshot,
        sender: Any,
        named: dict[str, Any],
        executor: Any = SignalView.SAME,
    ) -> tuple[Entry, ...]:
        """What a send for ``sender`` calls now: not what this context muted,
        nor the calls that wait for a commit (registered with it)."""
        entries = snap.lookup(sender)
        if _mute.active:  # mute: leave out what this context muted
            entries = _mute.unmuted(self, entries, sender)
        if snap.has_opts:  # on_commit: calls that wait leave the send
            if executor is SignalView.SAME:
                executor = self._executor
            entries = _commit.withhold(self, entries, sender, named, executor)
        return entries

    def after_commit(self, using: str | None = None) -> _commit.AfterCommit:
        """A view whose ``send`` and ``send_robust`` wait for the commit of
        the transaction open on database ``using`` (``None``: ``"default"``)
        in the sending thread, and return ``None``: the whole send is made
        at the commit, robustly, with the arguments given now, and dropped
        by a rollback; with no transaction open, it is made at once.  Needs
        Django only when a send is made (docs/django.md)."""
        return _commit.AfterCommit(self, using)

    def using(
        self,
        executor: Executor | Any | None = SignalView.SAME,
        *,
        timeout: float | None = None,
        errors: str | None = None,
        on_error: str | None = None,
    ) -> SignalView:
        """A light view of this signal whose sends run on ``executor``, with
        a deadline and an error policy.

        ``executor=None`` means inline, in the caller's thread; left out, the
        signal's own.  ``timeout`` is a deadline in seconds for each whole
        send.  ``errors``/``on_error``: the error policy of the view's
        ``send``, ``asend`` and ``submit``, see docs/errors.md.  Each left
        out is the signal's, as the signal was given it; left out there too,
        its default (``on_error``'s follows ``errors``):

        * ``errors="first"`` (Django's): the earliest failure in connection
          order is raised, the others attached as notes;
        * ``errors="group"``: a :class:`~concsignals.SendError` (an
          ``ExceptionGroup``) of every failure, in connection order;
        * ``on_error="cancel"``: a failure stops the calls not yet begun
          (the default with ``"first"``); ``"continue"``: every receiver
          runs (the default with ``"group"``).

        ``send_robust`` and ``asend_robust`` keep their own policy (every
        receiver runs; failures logged and returned).  Bad values are
        refused with ``ValueError``.

        Cheap: the view holds no connections and sees every connect and
        disconnect of the signal.
        """
        if executor is SignalView.SAME:
            executor = self._executor
        asked_errors, asked_on_error = self._asked
        policy = _errors.policy(
            asked_errors if errors is None else errors,
            asked_on_error if on_error is None else on_error,
        )
        return SignalView(self, executor, timeout, policy)

    def muted(self, receiver: Receiver | None = None, *, sender: object = None) -> Mute:
        """A context manager (and decorator) that silences this signal's calls
        (only ``receiver``'s, identified as by :meth:`disconnect`; only in
        sends for ``sender``) in the sends made in the current context.

        Concurrency: it applies while it lasts to sends in this thread or task
        and in copies of its context (tasks created inside it, calls handed to
        pools, loops, ``Serial``s), never to another thread's or task's.  Mutes
        nest.  A muted call does not begin; its slot is absent.  Connections,
        ``receivers`` and ``has_listeners`` do not change (see docs/muting.md).
        """
        return Mute((Rule(self, receiver, sender),))

    # -- hooks (overridden by concsignals.django) -------------------------------

    #: The logger robust sends log receiver failures on.
    _logger_name: ClassVar[str] = "concsignals"

    #: Whether ``asend`` begins an async receiver only once every earlier
    #: call began (connection order).  ``concsignals.django`` turns it off:
    #: Django starts its async receivers together with the job of its sync
    #: ones (``asyncio.gather``).
    _begins_in_order: ClassVar[bool] = True

    def _offload_sync(self, job: Callable[[], T]) -> Awaitable[T]:
        """How ``asend`` (no executor) runs a job of sync receivers off the
        loop; called on the loop's thread.  Default: the loop's default
        executor."""
        from ._async import offload_default

        return offload_default(job)

    def _run_coroutine(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """How a sync send with async receivers runs them to completion, from
        a thread with no running loop.  Default: a private event loop."""
        from ._async import run_private

        return run_private(make)


def check_receiver(receiver: object) -> None:
    """Refuse what cannot be a receiver, with Django's errors."""
    if not callable(receiver):
        raise TypeError("Signal receivers must be callable.")
    if not accepts_kwargs(receiver):
        raise ValueError("Signal receivers must accept keyword arguments (**kwargs).")


def receiver(
    signal: Signal | Sequence[Signal], **connect_kwargs: Any
) -> Callable[[F], F]:
    """Decorator: connect the function to ``signal`` (or to each of a list).

    ``@receiver(post_save, sender=Model)``.  The function is returned unchanged.
    Every signal is checked before any is connected, so a refused receiver is
    connected to none of them.  Each connect is atomic on its own: a send in
    between may see some of the signals connected and not yet the others.
    """
    signals: list[Signal] = (
        list(signal) if isinstance(signal, list | tuple) else [signal]  # type: ignore[list-item]
    )
    for sig in signals:
        if not isinstance(sig, Signal):
            raise TypeError(f"receiver() needs Signal objects, not {sig!r}")

    def decorator(func: F) -> F:
        check_receiver(func)
        for sig in signals:
            sig.connect(func, **connect_kwargs)
        return func

    return decorator


def muted(*signals: Signal) -> Mute:
    """Silence every call of each of ``signals`` in the sends made in the
    current context only: :meth:`Signal.muted` for several signals at once."""
    if not signals:
        raise TypeError("muted() needs at least one signal to silence")
    for sig in signals:
        if not isinstance(sig, Signal):
            raise TypeError(f"muted() needs Signal objects, not {sig!r}")
    return Mute(tuple(Rule(sig, None, None) for sig in signals))
