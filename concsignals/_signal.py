"""Signal and receiver(): the writer side and the send entry points.

Writers (connect, disconnect, pruning of dead weak references) serialise on
``Signal._lock`` and publish a new :class:`~concsignals._snapshot.Snapshot` with
one attribute write.  Senders never take the lock: they read ``_snapshot``
once and run it (see ``_snapshot.py`` for the memory-model assumptions).

Locking rules
-------------
``Signal._lock`` guards the *replacement* of ``Signal._snapshot`` and the
one-way ``Entry.get -> DEAD`` transition of a disconnected entry.  Nothing
else.  While it is held:

* no user code is called: receivers are inspected (``callable``, signature,
  ``hasattr``) and weak references are made before it is taken, and no
  receiver is called;
* nothing blocks but the lock itself.

One exception no library can rule out: an allocation may start the garbage
collector, which may run a user's ``__del__`` right here, and that ``__del__``
may connect or disconnect on this very signal.  So the lock is reentrant, and
every writer publishes with :meth:`Signal._publish_locked`, which refuses if
the snapshot changed under it; the writer then rebuilds on the new snapshot.
The nested write is neither deadlocked nor lost.

Weak-reference callbacks never take the lock (``DeathNotice`` only sets a
flag); readers only ever *try* it (``blocking=False``) to prune dead entries,
so a send never waits for a writer.
"""

from __future__ import annotations

import inspect
import threading
import types
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Executor, Future
from typing import Any, ClassVar, TypeVar

from . import _inline, _run, monitoring
from ._callables import is_async_receiver
from ._send import Send
from ._snapshot import (
    EMPTY,
    DeathNotice,
    Entry,
    LookupKey,
    Receiver,
    Snapshot,
    build,
    receiver_getter,
    receiver_id,
    sender_getter,
)
from ._view import SignalView

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

    ``Signal(use_caching=False, *, executor=None)``.  Every method may be
    called from any number of threads at once, and from inside a receiver.

    ``use_caching`` is accepted for compatibility with ``django.dispatch``; the
    per-sender index it asks for is always built, so it changes nothing.
    ``executor`` makes every ``send``, ``send_robust``, ``asend``,
    ``asend_robust`` and ``submit`` of this signal use it (see :meth:`using`);
    concsignals never shuts it down.
    """

    def __init__(
        self, use_caching: bool = False, *, executor: Executor | None = None
    ) -> None:
        self.use_caching = use_caching
        self._executor = executor
        # Guards replacing _snapshot and marking entries DEAD; see the module
        # docstring.  Readers read _snapshot without it: one attribute read of
        # an immutable object.  Reentrant for the garbage collector's sake
        # only: see _publish_locked.
        self._lock = threading.RLock()
        self._snapshot: Snapshot = EMPTY
        # Set by weak-reference callbacks (any thread, inside the GC); read and
        # cleared by writers under _lock.
        self._notice = DeathNotice()

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} at {id(self):#x}>"

    # -- writers --------------------------------------------------------------

    def connect(
        self,
        receiver: Receiver,
        sender: object = None,
        weak: bool = True,
        dispatch_uid: object = None,
    ) -> None:
        """Connect ``receiver`` to this signal, for ``sender`` or (``None``) any.

        Idempotent per (``dispatch_uid`` or receiver, sender).  A receiver that
        is not callable, lacks ``**kwargs`` or cannot be weakly referenced
        (with ``weak=True``) is refused and nothing changes.

        Concurrency: atomic.  A send that begins after ``connect`` returns calls
        the receiver; a send already under way does not.
        """
        check_receiver(receiver)
        is_async = is_async_receiver(receiver)
        get, hold = receiver_getter(receiver, weak, self._notice)
        key = _lookup_key(receiver, sender, dispatch_uid)
        with self._lock:
            while True:  # again if a finalizer wrote meanwhile: see _publish_locked
                snap = base = self._fresh_locked(sender)
                existing = snap.by_key.get(key)
                if existing is not None:
                    if existing.is_live():
                        return
                    snap = snap.without(existing)  # dead; its id() was reused
                sender_get = None
                if sender is not None:
                    route = snap.routes.get(key[1])
                    sender_get = sender_getter(sender, route, self._notice)
                entry = Entry(key, get, sender_get, is_async=is_async, hold=hold)
                if self._publish_locked(base, snap.with_entry(entry)):
                    if existing is not None:
                        existing.retire()
                    return

    def disconnect(
        self,
        receiver: Receiver | None = None,
        sender: object = None,
        dispatch_uid: object = None,
    ) -> bool:
        """Disconnect a receiver; return whether one was connected.

        Concurrency: atomic.  Once it returns, no send calls the receiver
        again, not even a send already under way that has not reached it yet.
        A call already begun runs to its end, and so does a call already
        handed to an out-of-process executor (processes, Dask), which cannot
        be recalled from the worker.
        """
        key = _lookup_key(receiver, sender, dispatch_uid)
        with self._lock:
            while True:  # again if a finalizer wrote meanwhile: see _publish_locked
                snap = self._fresh_locked(sender)
                entry = snap.by_key.get(key)
                if entry is None:
                    return False
                if not entry.is_live():
                    self._prune_locked()
                    return False
                if self._publish_locked(snap, snap.without(entry)):
                    entry.retire()
                    return True

    def _publish_locked(self, base: Snapshot, new: Snapshot) -> bool:
        """Publish ``new``, built from ``base``, unless a nested write came first.

        Building a snapshot allocates, an allocation may run the garbage
        collector, and the collector may run a user's ``__del__`` that connects
        or disconnects on this signal, in this thread, while we hold the
        (reentrant) lock.  That nested write completes; then ``_snapshot`` is
        no longer ``base`` and the caller must rebuild on top of it rather
        than lose it.  The check and the store allocate nothing, so no
        collection can slip between them.
        """
        if self._snapshot is not base:
            return False
        self._snapshot = new
        return True

    def _fresh_locked(self, sender: object) -> Snapshot:
        """The current snapshot, pruned of dead entries if any died.

        Also prunes when ``sender`` reuses the ``id()`` of a dead sender that
        still has a route, even if its death was not noticed yet.
        """
        snap = self._snapshot
        if not self._notice.pending and sender is not None:
            route = snap.routes.get(id(sender))
            if route is None or route.sender_get() is sender:
                return snap
        elif not self._notice.pending:
            return snap
        return self._prune_locked()

    def _prune_locked(self) -> Snapshot:
        while True:
            # Clear the flag first: a death during the scan sets it again.
            self._notice.pending = False
            snap = self._snapshot
            live = [e for e in snap.entries if e.is_live()]
            if len(live) == len(snap.entries):
                return snap
            pruned = build(live)
            if self._publish_locked(snap, pruned):
                for entry in snap.entries:
                    if not entry.is_live():
                        entry.retire()
                return pruned

    def _collect_dead(self) -> None:
        """Prune dead entries if the lock is free right now; never blocks."""
        if self._notice.pending and self._lock.acquire(blocking=False):
            try:
                self._prune_locked()
            finally:
                self._lock.release()

    # -- readers --------------------------------------------------------------

    @property
    def receivers(self) -> list[Receiver]:
        """The live receivers, in connection order (a new list each time).

        Lock-free; prunes dead entries only if the writer lock is free.
        """
        self._collect_dead()
        entries = self._snapshot.entries
        return [r for e in entries if e.is_live() and (r := e.get()) is not None]

    def has_listeners(self, sender: object = None) -> bool:
        """Whether a send for ``sender`` would call any receiver right now.

        Lock-free; the answer may be stale by the time the caller acts on it.
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
            return []
        if self._executor is not None or _monitored:  # monitor: off the fast path
            return self._send_general(snap, sender, named)
        # The hot loop.  entry.get() is the disconnect-and-liveness check and
        # runs immediately before each call (see _snapshot.py).
        responses: Responses = []
        for entry in entries:
            r = entry.get()
            if r is None:
                self._collect_dead()
                continue
            responses.append((r, r(signal=self, sender=sender, **named)))
        return responses

    def _send_general(
        self, snap: Snapshot, sender: Any, named: dict[str, Any]
    ) -> Responses:
        """``send`` off the fast path: sender routes, an executor, async."""
        entries = snap.lookup(sender)
        if not entries:
            return []
        if self._executor is not None or snap.has_async:
            return _run.run(Send(self, entries, sender, named), self._executor)
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
        entries = self._snapshot.lookup(sender)
        if not entries:
            return []
        if self._executor is None and not any(e.is_async for e in entries):
            if _monitored:  # monitor: the inline loop, reporting as it goes
                return _inline.send_watched(self, entries, sender, named, True)
            return _inline.call_robust(self, entries, sender, named)
        return _run.run(Send(self, entries, sender, named, None, True), self._executor)

    async def asend(self, /, sender: Any, **named: Any) -> Responses:
        """Async :meth:`send`: async receivers run concurrently on the running
        loop, sync ones off it; results in connection order.

        Reads the snapshot when awaited.  Lock-free; safe from many loops and
        threads at once.  Cancelling the awaiting task closes the send: the
        receivers it started are cancelled and waited for, and no call not yet
        begun begins.
        """
        entries = self._snapshot.lookup(sender)
        if not entries:
            return []
        return await _run.arun(Send(self, entries, sender, named), self._executor)

    async def asend_robust(self, /, sender: Any, **named: Any) -> Responses:
        """Async :meth:`send_robust`: every receiver runs; each ``Exception``
        is logged and returned in its slot.

        Reads the snapshot when awaited.  Lock-free; safe from many loops and
        threads at once.  Cancelling the awaiting task behaves as for
        :meth:`asend`.
        """
        entries = self._snapshot.lookup(sender)
        if not entries:
            return []
        send = Send(self, entries, sender, named, None, True)
        return await _run.arun(send, self._executor)

    def submit(self, /, sender: Any, **named: Any) -> Future[Responses]:
        """Start a robust send and return at once with a Future of its results.

        On an executor, the last call to finish resolves the Future; otherwise
        the send runs on a thread pool concsignals owns (shut down at exit;
        after that, at interpreter exit, the send runs in the caller's thread
        and the Future returned is done).  The Future is held until done.
        Cancelling it before it is done succeeds, and no call of the send that
        had not begun begins.  Called from a worker of the pool it would wait
        on, it runs the send at once and returns a done Future, so it cannot
        deadlock.
        """
        entries = self._snapshot.lookup(sender)
        send = Send(self, entries, sender, named, None, True)
        return _run.submit(send, self._executor)

    def using(
        self, executor: Executor | None, *, timeout: float | None = None
    ) -> SignalView:
        """A light view of this signal whose sends run on ``executor``.

        ``executor=None`` means inline, in the caller's thread.  ``timeout`` is
        a deadline in seconds for each whole send.

        Cheap: the view holds no connections and sees every connect and
        disconnect of the signal.
        """
        return SignalView(self, executor, timeout)

    # -- hooks (overridden by concsignals.django) -------------------------------

    #: The logger robust sends log receiver failures on.
    _logger_name: ClassVar[str] = "concsignals"

    def _executor_for(self, entry: Entry, executor: Executor | None) -> Executor | None:
        """The executor that runs ``entry``'s call in a send on ``executor``
        (``None``: inline, or off the loop for ``asend``).  Override to give a
        receiver an executor of its own; the default keeps the send's."""
        return executor

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


def _lookup_key(
    receiver: Receiver | None, sender: object, dispatch_uid: object
) -> LookupKey:
    sender_key = None if sender is None else id(sender)
    if dispatch_uid is not None:
        return (("uid", dispatch_uid), sender_key)
    return (receiver_id(receiver), sender_key)


def check_receiver(receiver: object) -> None:
    """Refuse what cannot be a receiver, with Django's errors."""
    if not callable(receiver):
        raise TypeError("Signal receivers must be callable.")
    if not _accepts_kwargs(receiver):
        raise ValueError("Signal receivers must accept keyword arguments (**kwargs).")


def _accepts_kwargs(receiver: object) -> bool:
    # Plain functions and methods: read the code flags (cheap, and connect is
    # on the churn path); everything else: inspect.signature.
    func = getattr(receiver, "__func__", receiver)
    if type(func) is types.FunctionType and not hasattr(func, "__wrapped__"):
        return bool(func.__code__.co_flags & inspect.CO_VARKEYWORDS)
    try:
        parameters = inspect.signature(receiver).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True  # No signature to read (some builtins): cannot check, accept.
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


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
