"""concsignals for Django's own signals: ``install()`` and a Django-shaped Signal.

Importing this module imports neither Django nor asgiref; :func:`install` and
the async paths of :class:`Signal` import them when first used.

What ``install()`` does
-----------------------
Django defines every built-in signal (``post_save``, ``request_started``,
``setting_changed``...) as ``Signal()`` or ``ModelSignal()``, a subclass of the
``Signal`` its modules import from ``django.dispatch``.  ``install()`` adopts
the signals that already exist, in place (``_adopt.py``: each stays the same
object, with its connections; ``ModelSignal`` gets :class:`Signal` as its
base), then replaces ``django.dispatch.Signal`` and
``django.dispatch.dispatcher.Signal`` (and any module attribute holding
Django's class), so the signals defined later are born concsignals.  So it
works wherever it is called: before Django, in the settings module, in a
``conftest.py`` under pytest-django, in an ``AppConfig.ready()``.

The Django-shaped signal
------------------------
:class:`Signal` is :class:`concsignals.Signal` with what Django's code and
tests (and packages such as factory_boy) read and write:

* ``lock``, ``_clear_dead_receivers()``, ``sender_receivers_cache`` (always
  empty: the snapshot is the index), ``_live_receivers(sender)``, which every
  send asks once it is overridden or replaced on the class (sentry-sdk);
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

Every send but the plain inline loop (sync receivers only, no monitor) is the
engine's :class:`~concsignals._send.Send` with those hooks: see
``_djangosend.py``.  Concurrency is concsignals': sends read one snapshot and
take no lock; each receiver is checked (``entry.get()``) immediately before
its call, so a disconnect that returned is never followed by a call; writers
serialise on the signal's lock and never call user code under it.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from . import _adopt, _djangosend, _inline, _mute, _registry, _replace, _run, _signal
from ._adopt import NONE_ID
from ._connection import Connection
from ._inflight import local as _reading
from ._send import Send, log_failure
from ._snapshot import (
    Receiver,
    receiver_getter,
    sender_getter,
)

__all__ = ["Signal", "install", "receiver"]

T = TypeVar("T")
Responses = list[tuple[Receiver, Any]]
ReceiverTuple = tuple[tuple[Any, Any], Any, bool]


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
    _begins_in_order = False  # Django gathers sync job and async receivers

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
        """Django's ``(sync receivers, async receivers)`` for ``sender``,
        without those the current context muted.

        Every send asks it only if it was overridden in a subclass or
        replaced on the class (sentry-sdk's Django integration wraps each
        receiver so): see :func:`_grouped`.
        """
        sync: list[Any] = []
        asynchronous: list[Any] = []
        entries = self._snapshot.lookup(sender)
        if _mute.active:  # mute: leave out what this context muted
            entries = _mute.unmuted(self, entries, sender)
        for entry in entries:
            r = entry.get()
            if r is not None:
                (asynchronous if entry.is_async else sync).append(r)
        return sync, asynchronous

    def has_listeners(self, sender: object = None) -> bool:
        """:meth:`concsignals.Signal.has_listeners`; through ``_live_receivers``,
        as on Django, if it was overridden or replaced on the class (which
        then leaves out what the current context muted)."""
        if _patched(self):
            sync, asynchronous = self._live_receivers(sender)
            return bool(sync) or bool(asynchronous)
        return super().has_listeners(sender)

    def _log_robust_failure(self, receiver: object, err: BaseException) -> None:
        """Log a receiver's failure as Django's ``send_robust`` does."""
        log_failure(self, receiver, err)

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
        conn = getattr(item, "connection", None)
        if not isinstance(conn, _replace.Connection):
            if item[0][1] != NONE_ID:
                raise ValueError(
                    f"receiver tuple {item!r} names its sender only by id(): "
                    f"assign tuples read from a signal's receivers, or use "
                    f"connect()"
                )
            return _adopt.wanted(self, item, None)
        _, ref, is_async = item
        weak = isinstance(ref, weakref.ReferenceType)
        r = ref() if weak else ref
        if r is None:
            return None
        get, hold = receiver_getter(r, weak, self._notice)
        origin = conn.entry
        sender_get = None
        if origin.sender_get is not None:
            sender = origin.sender_get()
            if sender is None:
                return None
            sender_get = sender_getter(sender, self._notice)
        want = _registry.Request(conn.key, conn.uid, get, hold, is_async, origin.opts)
        return _replace.Wanted(want, sender_get, origin)

    # -- connecting ---------------------------------------------------------------

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
        """:meth:`concsignals.Signal.connect`, under the name Django's checks know.

        Concurrency: atomic, as ``concsignals.Signal.connect``.
        """
        return super().connect(
            receiver,
            sender,
            weak,
            dispatch_uid,
            via=via,
            wait=wait,
            phase=phase,
            on_commit=on_commit,
        )

    # The system check framework names a pending lazy ``connect`` (a
    # ModelSignal receiver for a model that never loaded) by the function's
    # (__module__, __name__); this is the pair it knows as a signal connect.
    connect.__module__ = "django.dispatch.dispatcher"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _give_options(cls)

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
        if entries is None or (_mute.active and _mute.held.get()):
            entries = snap.lookup(sender)
            if _mute.active:  # mute: leave out what this context muted
                entries = _mute.unmuted(self, entries, sender)
        if not entries:  # nobody to call (Django returns at once too)
            return _run.nobody(self, sender, named, False) if _signal._monitored else []
        policy = None
        if self._routed or snap.has_opts:  # an executor, options or a policy
            if self._executor is not None or snap.has_opts:  # concsignals' rules
                return super().send(sender, **named)
            policy = self._policy  # Django's order, this error policy
        if snap.has_async or _signal._monitored or _patched(self) or policy:
            # The engine's send; the sync receivers called from this frame.
            sending = _djangosend.Sending(
                self, sender, named, _patched(self), False, policy
            )
            with sending as send:
                for i, entry in enumerate(send.entries):
                    if entry.is_async or send.closed:
                        break
                    with _inline.Call(send, i) as call:
                        if call.receiver is not None:
                            call.value = call.receiver(
                                signal=self, sender=sender, **named
                            )
                return _djangosend.then_async(send)
        responses: Responses = []  # the hot loop, as Signal.send's
        mark: list[Any] = [self, entries, responses, 0]  # see _inflight.py
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

    def send_robust(self, /, sender: Any, **named: Any) -> Responses:
        """Django's ``send_robust``: as :meth:`send`, but every receiver runs and
        each ``Exception`` is logged on ``django.dispatch`` and returned in its
        slot.  Lock-free.
        """
        snap = self._snapshot
        entries = snap.lookup(sender)
        if _mute.active:  # mute: leave out what this context muted
            entries = _mute.unmuted(self, entries, sender)
        if not entries:
            return _run.nobody(self, sender, named, True)
        if self._executor is not None or snap.has_opts:  # concsignals' rules
            return super().send_robust(sender, **named)
        if snap.has_async or _signal._monitored or _patched(self):
            # The engine's send; the sync receivers called from this frame.
            with _djangosend.Sending(self, sender, named, _patched(self), True) as send:
                for i, entry in enumerate(send.entries):
                    if entry.is_async or send.closed:
                        break
                    with _inline.Call(send, i) as call:
                        if call.receiver is not None:
                            call.value = call.receiver(
                                signal=self, sender=sender, **named
                            )
                return _djangosend.then_async(send)
        responses: Responses = []  # the plain loop, as _inline.call_robust's
        mark: list[Any] = [self, entries, responses, 0]  # see _inflight.py
        stack = _reading.stack
        stack.append(mark)
        try:
            for entry in entries:
                r = entry.get()
                if r is None:
                    mark[3] += 1
                    continue
                try:
                    response = r(signal=self, sender=sender, **named)
                except Exception as err:
                    log_failure(self, r, err)
                    response = err
                responses.append((r, response))
        finally:
            stack.pop()
        return responses

    async def asend(self, /, sender: Any, **named: Any) -> Responses:
        """Django's ``asend``: the sync receivers in order in one job through
        ``_offload_sync``, concurrently with the async ones; sync results
        first.  Lock-free; on a failure, or when the awaiting task is
        cancelled, no further call begins and every call begun is awaited.
        """
        if self._executor is not None or self._snapshot.has_opts:
            return await super().asend(sender, **named)
        entries = _djangosend.grouped(self, sender, _patched(self))
        if not entries:
            return _run.nobody(self, sender, named, False)
        send = Send(self, entries, sender, named, None, False, self._policy)
        return await _run.arun(send, None)

    async def asend_robust(self, /, sender: Any, **named: Any) -> Responses:
        """Django's ``asend_robust``: as :meth:`asend`, every receiver runs and
        each ``Exception`` is logged and returned in its slot.
        """
        if self._executor is not None or self._snapshot.has_opts:
            return await super().asend_robust(sender, **named)
        entries = _djangosend.grouped(self, sender, _patched(self))
        if not entries:
            return _run.nobody(self, sender, named, True)
        return await _run.arun(Send(self, entries, sender, named, None, True), None)

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


#: Our ``_live_receivers``: a send asks the method only if it is another one.
_own_live_receivers = Signal._live_receivers


def _patched(signal: Signal) -> bool:
    """Whether ``_live_receivers`` was overridden or replaced on the class."""
    return type(signal)._live_receivers is not _own_live_receivers


def _model_connect(
    self: Any,
    receiver: Receiver,
    sender: object = None,
    weak: bool = True,
    dispatch_uid: object = None,
    apps: Any = None,
    *,
    via: object = None,
    wait: bool = True,
    phase: int = 0,
    on_commit: bool | str = False,
) -> Connection | None:
    """Django's ``ModelSignal.connect`` (``sender`` may be ``"app_label.Model"``,
    connected once that model loads: ``None`` is returned then), with
    concsignals' keyword-only options (``post_save.connect(r, sender=M,
    on_commit=True)``)."""
    return self._lazy_method(  # type: ignore[no-any-return]
        Signal.connect.__get__(self),  # what Django's super().connect is
        apps,
        receiver,
        sender,
        weak=weak,
        dispatch_uid=dispatch_uid,
        via=via,
        wait=wait,
        phase=phase,
        on_commit=on_commit,
    )


def _model_disconnect(
    self: Any,
    receiver: Receiver | None = None,
    sender: object = None,
    dispatch_uid: object = None,
    apps: Any = None,
    *,
    wait: bool = False,
    timeout: float | None = None,
) -> bool | None:
    """Django's ``ModelSignal.disconnect`` (``sender`` may be
    ``"app_label.Model"``), with ``wait`` and ``timeout`` as in
    :meth:`concsignals.Signal.disconnect`."""
    return self._lazy_method(  # type: ignore[no-any-return]
        Signal.disconnect.__get__(self),  # what Django's super().disconnect is
        apps,
        receiver,
        sender,
        dispatch_uid=dispatch_uid,
        wait=wait,
        timeout=timeout,
    )


def _give_options(cls: type) -> None:
    """A ``ModelSignal``-shaped class (a lazy ``connect`` and ``disconnect``
    of its own, with ``apps``) gets :func:`_model_connect` and
    :func:`_model_disconnect`: the same, with concsignals' options."""
    if not hasattr(cls, "_lazy_method"):
        return
    for name, ours, option in (
        ("connect", _model_connect, "on_commit"),
        ("disconnect", _model_disconnect, "timeout"),
    ):
        code = getattr(cls.__dict__.get(name), "__code__", None)
        if code is None:
            continue
        if "apps" in code.co_varnames and option not in code.co_varnames:
            setattr(cls, name, ours)


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


def receiver(
    signal: _signal.Signal | Sequence[_signal.Signal], **connect_kwargs: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Django's ``@receiver``: :func:`concsignals.receiver`."""
    return _signal.receiver(signal, **connect_kwargs)


# -- install() ----------------------------------------------------------------------


def install() -> None:
    """Put Django's signals on concsignals: those that exist, and those to come.

    Call it once, at start-up, wherever is convenient: the settings module,
    ``manage.py``, ``wsgi.py``, ``asgi.py``, a pytest ``conftest.py`` (under
    pytest-django too), or an ``AppConfig.ready()``.  Idempotent.

    Signals Django (or anyone) already made with ``django.dispatch.Signal`` or
    a subclass of it (``ModelSignal``) are adopted in place: each stays the
    same object, now a :class:`Signal`, with every connection it had, in
    order, weak or strong, with its ``dispatch_uid`` and its sender.  Then
    ``django.dispatch.Signal`` and ``receiver`` (and every module attribute
    that held Django's ``Signal`` class) become concsignals', so signals
    defined later are born concsignals.  See ``concsignals/_adopt.py`` for how,
    and what a send racing it sees.

    Raises ``RuntimeError`` naming what cannot be adopted and why, before
    anything changes: chiefly ``django.dispatch.Signal`` methods replaced by
    other code (sentry-sdk's Django integration), which concsignals cannot
    carry over; call ``install()`` before that code runs.

    Not thread-safe: a Django ``connect``/``disconnect`` on another thread
    while it runs may be lost.  Call it before starting threads.
    """
    from django import dispatch  # type: ignore[import-untyped]
    from django.dispatch import dispatcher  # type: ignore[import-untyped]

    if dispatcher.Signal is Signal:
        return
    stock = dispatcher.Signal
    _adopt.adopt(stock, Signal)
    for derived in Signal.__subclasses__():  # ModelSignal, now ours
        _give_options(derived)
    for name, attr in _modules_holding(stock):
        setattr(sys.modules[name], attr, Signal)
    for module in (dispatcher, dispatch):
        module.Signal = Signal
        module.receiver = receiver


def _modules_holding(stock: type) -> list[tuple[str, str]]:
    """``(module name, attribute name)`` of every loaded module's attribute
    that is the class ``stock``."""
    found = []
    for name, module in list(sys.modules.items()):
        try:
            items = list(vars(module).items())
        except TypeError:
            continue
        found += [(name, attr) for attr, v in items if v is stock]
    return found
