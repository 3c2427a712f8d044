"""concsignals for Django's own signals: ``install()`` and a Django-shaped Signal.

Importing this module imports neither Django nor asgiref; :func:`install` and
the async paths of :class:`Signal` import them when first used.

What ``install()`` does
-----------------------
Django defines every built-in signal (``post_save``, ``request_started``,
``setting_changed``...) as ``Signal()`` or ``ModelSignal()``, a subclass of the
``Signal`` its modules import from ``django.dispatch``.  So replacing
``django.dispatch.Signal`` and ``django.dispatch.dispatcher.Signal`` before any
of those modules runs makes all of them concsignals signals, ``ModelSignal``
included, and nothing else needs to change.  A module that already imported
Django's own ``Signal`` keeps it: ``install()`` then refuses, naming it.

The Django-shaped signal
------------------------
:class:`Signal` is :class:`concsignals.Signal` with what Django's code and
tests (and packages such as factory_boy) read and write:

* ``lock``, ``_clear_dead_receivers()``, ``sender_receivers_cache`` (always
  empty: the snapshot is the index), ``_live_receivers(sender)``;
* ``receivers`` as Django's ``((receiver_key, sender_key), ref, is_async)``
  tuples; assigning a list replaces the connections in one snapshot write;
* failures of ``send_robust`` logged on ``django.dispatch``;
* a ``connect`` the system check framework recognises as Django's;
* Django's result order and threads for mixed sync and async receivers: the
  sync receivers first, in the sender's thread (``send``) or through asgiref's
  thread-sensitive ``sync_to_async`` (``asend``); the async ones together,
  through ``async_to_sync`` from a sync send;
* Django's frame depth: ``send`` and ``send_robust`` call each sync receiver
  straight from their own frame, so ``warnings.warn(stacklevel=...)`` in a
  receiver points where it does on Django.

Concurrency is concsignals': sends read one snapshot and take no lock; each
receiver is checked (``entry.get()``) immediately before its call, so a
disconnect that returned is never followed by a call; writers serialise on
the signal's lock and never call user code under it.
"""

from __future__ import annotations

import logging
import sys
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from . import _djangoasync, _inline, _registry, _replace, _signal, monitoring
from ._snapshot import (
    Entry,
    Receiver,
    receiver_getter,
    receiver_id,
    sender_getter,
)

__all__ = ["Signal", "install", "receiver"]

T = TypeVar("T")
Responses = list[tuple[Receiver, Any]]
ReceiverTuple = tuple[tuple[Any, Any], Any, bool]

#: Django's key for "any sender": ``django.dispatch.dispatcher.NONE_ID``.
NONE_ID = id(None)


class _DjangoTuple(tuple):  # type: ignore[type-arg]
    """One of Django's receiver tuples, remembering the connection it came from.

    So that ``signal.receivers = saved`` (factory_boy's ``mute_signals``)
    restores each connection with its sender and ``dispatch_uid``, which
    Django's tuple holds only as ``id()``s.
    """

    connection: _replace.Connection


class Signal(_signal.Signal):
    """A concsignals signal with the whole surface of Django's ``Signal``.

    Every method may be called from any number of threads at once; sends take
    no lock.  See the module docstring for what differs from
    :class:`concsignals.Signal`.
    """

    _logger_name = "django.dispatch"

    def __init__(self, use_caching: bool = False, **kwargs: Any) -> None:
        super().__init__(use_caching, **kwargs)
        # Django's per-sender cache.  concsignals never fills it (every
        # snapshot has its per-sender index); code that clears it may.
        self.sender_receivers_cache: (
            dict[Any, Any] | weakref.WeakKeyDictionary[Any, Any]
        ) = weakref.WeakKeyDictionary() if use_caching else {}

    # -- Django's internals ------------------------------------------------------

    @property
    def lock(self) -> Any:
        """Django's ``Signal.lock``: the writer lock (reentrant).

        Holding it blocks connects and disconnects, never sends.
        """
        return self._lock

    def _clear_dead_receivers(self) -> None:
        """Prune connections whose receiver or sender died (a writer: waits
        for the writer lock; a receiver released runs no code under it)."""
        _registry.drop_dead(self, blocking=True)

    def _live_receivers(self, sender: object) -> tuple[list[Any], list[Any]]:
        """Django's ``(sync receivers, async receivers)`` for ``sender``."""
        sync: list[Any] = []
        asynchronous: list[Any] = []
        for entry in self._snapshot.lookup(sender):
            r = entry.get()
            if r is not None:
                (asynchronous if entry.is_async else sync).append(r)
        return sync, asynchronous

    def _log_robust_failure(self, receiver: object, err: BaseException) -> None:
        """Log a receiver's failure as Django's ``send_robust`` does."""
        logging.getLogger(self._logger_name).error(
            "Error calling %s in Signal.send_robust() (%s)",
            _describe(receiver),
            err,
            exc_info=err,
        )

    @property  # type: ignore[override]
    def receivers(self) -> list[ReceiverTuple]:
        """Django's ``[((receiver_key, sender_key), ref, is_async)]``, live only.

        ``ref`` is a weak reference, or the receiver itself if held strongly.
        Lock-free.  Assigning a list of such tuples (taken from any signal's
        ``receivers``) replaces every connection in one snapshot write: a send
        that begins after the assignment returns sees exactly the new
        connections, and a receiver the assignment drops is not called once
        it has returned.  A connection assigned back to the signal it was read
        from is kept as it is, never disconnected even for a moment.
        """
        _registry.drop_dead(self, blocking=False)
        return [_as_tuple(c) for c in _replace.connections(self._snapshot)]

    @receivers.setter
    def receivers(self, tuples: Iterable[ReceiverTuple]) -> None:
        # Getters are made and uids compared here: user code, no lock held.
        wanted = [w for t in list(tuples) if (w := self._wanted(t)) is not None]
        wanted = _replace.distinct(wanted)
        released: list[object] = []
        with self._lock:
            _replace.replace_locked(self, wanted, released)
        released.clear()  # after the lock: may run a receiver's __del__

    def _wanted(self, item: ReceiverTuple) -> _replace.Wanted | None:
        """The connection one of Django's receiver tuples asks for; ``None``
        if its receiver or sender died."""
        (receiver_key, sender_key), ref, is_async = item
        weak = isinstance(ref, weakref.ReferenceType)
        r = ref() if weak else ref
        if r is None:
            return None
        get, hold = receiver_getter(r, weak, self._notice)
        conn = getattr(item, "connection", None)
        if isinstance(conn, _replace.Connection):
            origin = conn.entry
            sender_get = None
            if origin.sender_get is not None:
                sender = origin.sender_get()
                if sender is None:
                    return None
                sender_get = sender_getter(sender, self._notice)
            want = _registry.Request(conn.key, conn.uid, get, hold, is_async)
            return _replace.Wanted(want, sender_get, origin)
        if sender_key != NONE_ID:
            raise ValueError(
                f"receiver tuple {item!r} names its sender only by id(): assign "
                f"tuples read from a signal's receivers, or use connect()"
            )
        uid = None if receiver_key == receiver_id(r) else receiver_key
        key = _registry.lookup_key(r, None, uid)
        want = _registry.Request(key, uid, get, hold, is_async)
        return _replace.Wanted(want, None, None)

    # -- connecting ---------------------------------------------------------------

    def connect(
        self,
        receiver: Receiver,
        sender: object = None,
        weak: bool = True,
        dispatch_uid: object = None,
    ) -> None:
        """:meth:`concsignals.Signal.connect`, under the name Django's checks know.

        Concurrency: atomic, as ``concsignals.Signal.connect``.
        """
        super().connect(receiver, sender, weak, dispatch_uid)

    # The system check framework names a pending lazy ``connect`` (a
    # ModelSignal receiver for a model that never loaded) by the function's
    # (__module__, __name__); this is the pair it knows as a signal connect.
    connect.__module__ = "django.dispatch.dispatcher"

    # -- sending ------------------------------------------------------------------

    def send(self, /, sender: Any, **named: Any) -> Responses:
        """Django's ``send``: the sync receivers in order, each called from this
        frame; then the async ones together, through ``_run_coroutine``.

        The first exception propagates; later sync receivers are not called,
        and with async receivers concsignals' rules hold (the others are
        cancelled and awaited, the earliest failure is raised).  Lock-free.
        """
        snap = self._snapshot
        entries = snap.inline
        if entries is None:
            entries = snap.lookup(sender)
        if not entries:  # nobody to call (Django returns at once too)
            return []
        if self._executor is not None:
            return super().send(sender, **named)
        if _signal._monitored:  # monitor: off the fast path
            return self._send_watched(sender, named, robust=False)
        responses: Responses = []
        later: list[Entry] = []
        for entry in entries:
            if entry.is_async:
                later.append(entry)
                continue
            r = entry.get()
            if r is None:
                self._collect_dead()
                continue
            responses.append((r, r(signal=self, sender=sender, **named)))
        if later:
            responses += self._run_coroutine(
                lambda: _djangoasync.gather(
                    self, None, later, sender, named, robust=False
                )
            )
        return responses

    def send_robust(self, /, sender: Any, **named: Any) -> Responses:
        """Django's ``send_robust``: as :meth:`send`, but every receiver runs and
        each ``Exception`` is logged on ``django.dispatch`` and returned in its
        slot.  Lock-free.
        """
        if self._executor is not None:
            return super().send_robust(sender, **named)
        if _signal._monitored:  # monitor: off the fast path
            return self._send_watched(sender, named, robust=True)
        responses: Responses = []
        later: list[Entry] = []
        for entry in self._snapshot.lookup(sender):
            if entry.is_async:
                later.append(entry)
                continue
            r = entry.get()
            if r is None:
                continue
            try:
                response = r(signal=self, sender=sender, **named)
            except Exception as err:
                self._log_robust_failure(r, err)
                response = err
            responses.append((r, response))
        if later:
            responses += self._run_coroutine(
                lambda: _djangoasync.gather(
                    self, None, later, sender, named, robust=True
                )
            )
        return responses

    async def asend(self, /, sender: Any, **named: Any) -> Responses:
        """Django's ``asend``: the sync receivers in order in one job through
        ``_offload_sync``, concurrently with the async ones; sync results
        first.  Lock-free; on a failure the others are stopped and awaited.
        """
        if self._executor is not None:
            return await super().asend(sender, **named)
        return await self._asend(sender, named, robust=False)

    async def asend_robust(self, /, sender: Any, **named: Any) -> Responses:
        """Django's ``asend_robust``: as :meth:`asend`, every receiver runs and
        each ``Exception`` is logged and returned in its slot.
        """
        if self._executor is not None:
            return await super().asend_robust(sender, **named)
        return await self._asend(sender, named, robust=True)

    def _send_watched(
        self, sender: Any, named: dict[str, Any], robust: bool
    ) -> Responses:
        """``send``/``send_robust`` with a monitor installed: the same calls
        in the same order, reported.  The send's slots list the sync
        receivers first, in Django's order of results."""
        entries = self._snapshot.lookup(sender)
        sync = [e for e in entries if not e.is_async]
        later = [e for e in entries if e.is_async]
        watch = monitoring.watch_inline(self, sync + later, sender, robust)
        if watch is None:  # the last monitor was uninstalled meanwhile
            return (self.send_robust if robust else self.send)(sender, **named)
        try:
            responses = _inline.call_watched(watch, self, sync, sender, named)
            if later:
                responses += self._run_coroutine(
                    lambda: _djangoasync.gather(
                        self, None, later, sender, named, robust, watch, len(sync)
                    )
                )
        except BaseException as err:
            watch.finish(None, err)
            raise
        watch.finish(None, None)
        return responses

    # -- the hooks: asgiref's thread sensitivity ------------------------------

    def _offload_sync(self, job: Callable[[], T]) -> Awaitable[T]:
        """Run ``job`` (sync receivers) as Django does: thread-sensitively."""
        from asgiref.sync import sync_to_async

        return sync_to_async(job, thread_sensitive=True)()

    def _run_coroutine(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run async receivers from a sync send as Django does: ``async_to_sync``."""
        from asgiref.sync import async_to_sync

        async def main() -> T:
            return await make()

        return async_to_sync(main)()

    # -- the async machinery ------------------------------------------------------

    async def _asend(
        self, sender: Any, named: dict[str, Any], robust: bool
    ) -> Responses:
        entries = self._snapshot.lookup(sender)
        if not entries:
            return []
        sync = [e for e in entries if not e.is_async]
        asynchronous = [e for e in entries if e.is_async]
        watch = None
        if _signal._monitored:  # monitor: slots sync first, as the results
            watch = monitoring.watch_inline(self, sync + asynchronous, sender, robust)
        try:
            responses = await _djangoasync.gather(
                self, sync or None, asynchronous, sender, named, robust, watch
            )
        except BaseException as err:
            if watch is not None:
                watch.finish(None, err)
            raise
        if watch is not None:
            watch.finish(None, None)
        return responses


def _as_tuple(conn: _replace.Connection) -> ReceiverTuple:
    entry = conn.entry
    receiver_key = conn.key[0] if conn.uid is None else conn.uid
    sender_key = conn.key[-1]
    ref = entry.hold if entry.hold is not None else entry.get
    if not isinstance(ref, weakref.ReferenceType) and entry.hold is None:
        ref = entry.get()  # held strongly, not weakly referenceable
    item = _DjangoTuple(
        (
            (receiver_key, NONE_ID if sender_key is None else sender_key),
            ref,
            entry.is_async,
        )
    )
    item.connection = conn
    return item


def _describe(receiver: object) -> str:
    name = getattr(receiver, "__qualname__", None)
    return name if isinstance(name, str) else repr(receiver)


def receiver(
    signal: _signal.Signal | Sequence[_signal.Signal], **connect_kwargs: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Django's ``@receiver``: :func:`concsignals.receiver`."""
    return _signal.receiver(signal, **connect_kwargs)


# -- install() ----------------------------------------------------------------------


def install() -> None:
    """Make ``django.dispatch.Signal`` and ``receiver`` concsignals'.

    Call it first thing in ``manage.py``, ``wsgi.py``, ``asgi.py`` or a pytest
    ``conftest.py``, before ``django.setup()`` and before any import of a
    module that defines signals.  Every signal Django defines afterwards,
    built-ins included, is a :class:`Signal`.  Idempotent.  Raises
    ``RuntimeError`` naming the modules that already hold Django's own
    ``Signal`` (its class or an instance); nothing is changed then.

    Not thread-safe: call it once, at start-up, before threads are started.
    """
    from django import dispatch  # type: ignore[import-untyped]
    from django.dispatch import dispatcher  # type: ignore[import-untyped]

    if dispatcher.Signal is Signal:
        return
    stock = dispatcher.Signal
    holders = sorted(_modules_holding(stock))
    if holders:
        raise RuntimeError(
            "concsignals.django.install() was called after Django defined "
            f"signals with its own Signal, in: {', '.join(holders)}.  Call "
            "install() before them: first thing in manage.py, wsgi.py, "
            "asgi.py or conftest.py, before django.setup()."
        )
    for module in (dispatcher, dispatch):
        module.Signal = Signal
        module.receiver = receiver


def _modules_holding(stock: type) -> Iterable[str]:
    """Names of loaded modules (but Django's dispatch itself) that hold the
    class ``stock`` or an instance of it."""
    skip = {"django.dispatch", "django.dispatch.dispatcher", __name__}
    for name, module in list(sys.modules.items()):
        if name in skip or module is None:
            continue
        try:
            values = list(vars(module).values())
        except TypeError:
            continue
        if any(v is stock or issubclass(type(v), stock) for v in values):
            yield name
