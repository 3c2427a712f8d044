"""Deliberately broken dispatchers: the harness must catch every one.

:class:`MiniSignal` is a small dispatcher that keeps the contract (a
copy-on-write tuple of entries, a liveness check just before each call).  Each
broken one below differs from it in exactly one way, a way real dispatchers
have gone wrong; ``python -m stress --self-test`` runs the scenarios against
each and requires at least one violation or deadlock.  It also runs
:class:`MiniSignal` itself and requires none, so every catch is the flaw's.

They implement the core API only (``connect``, ``disconnect``, ``send``,
``send_robust``, ``has_listeners``), so the self-test runs them through the
``core`` scenarios.  The exception is :class:`NoWaitSignal`, the real
``concsignals.Signal`` with one promise taken away; its ``scenarios`` name
the ones the self-test runs it through instead.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import concsignals

Receiver = Callable[..., Any]
Getter = Callable[[], Any]
_DEAD: Getter = itertools.repeat(None).__next__


def _receiver_key(receiver: object) -> object:
    if hasattr(receiver, "__self__") and hasattr(receiver, "__func__"):
        return (id(receiver.__self__), id(receiver.__func__))
    return id(receiver)


def _getter(receiver: Receiver, weak: bool) -> Getter:
    if not weak:
        return itertools.repeat(receiver).__next__
    if hasattr(receiver, "__self__") and hasattr(receiver, "__func__"):
        return weakref.WeakMethod(receiver)
    return weakref.ref(receiver)


class _Entry:
    __slots__ = ("get", "key", "sender_id", "sender_ref")

    def __init__(self, key: object, get: Getter, sender: object) -> None:
        self.key = key
        self.get = get
        self.sender_id = None if sender is None else id(sender)
        self.sender_ref: Getter | None = None
        if sender is not None:
            try:
                self.sender_ref = weakref.ref(sender)
            except TypeError:
                self.sender_ref = itertools.repeat(sender).__next__

    def matches(self, sender: object) -> bool:
        if self.sender_ref is None:
            return True
        return sender is not None and self.sender_ref() is sender

    def live(self) -> bool:
        if self.get() is None:
            return False
        return self.sender_ref is None or self.sender_ref() is not None


class MiniSignal:
    """A small dispatcher that keeps the contract.  The control group."""

    def __init__(self, use_caching: bool = False) -> None:
        self._lock = threading.Lock()  # guards replacing _entries
        self._entries: tuple[_Entry, ...] = ()

    def _key(self, receiver: object, sender: object, uid: object) -> object:
        rkey = ("uid", uid) if uid is not None else _receiver_key(receiver)
        return (rkey, None if sender is None else id(sender))

    def connect(
        self,
        receiver: Receiver,
        sender: object = None,
        weak: bool = True,
        dispatch_uid: object = None,
    ) -> None:
        key = self._key(receiver, sender, dispatch_uid)
        entry = _Entry(key, _getter(receiver, weak), sender)
        with self._lock:
            live = [e for e in self._entries if e.live()]
            if any(e.key == key for e in live):
                return
            self._publish_locked([*live, entry])

    def disconnect(
        self,
        receiver: Receiver | None = None,
        sender: object = None,
        dispatch_uid: object = None,
    ) -> bool:
        key = self._key(receiver, sender, dispatch_uid)
        with self._lock:
            for entry in self._entries:
                if entry.key == key and entry.live():
                    entry.get = _DEAD
                    self._remove_locked(entry)
                    return True
        return False

    def _publish_locked(self, entries: list[_Entry]) -> None:
        self._entries = tuple(entries)

    def _remove_locked(self, entry: _Entry) -> None:
        self._entries = tuple(e for e in self._entries if e is not entry)

    def _route(self, sender: object) -> Iterable[_Entry]:
        return [e for e in self._entries if e.matches(sender)]

    def has_listeners(self, sender: object = None) -> bool:
        return any(e.get() is not None for e in self._route(sender))

    def send(self, sender: Any, **named: Any) -> list[tuple[Receiver, Any]]:
        out = []
        for entry in self._route(sender):
            r = entry.get()
            if r is not None:
                out.append((r, r(signal=self, sender=sender, **named)))
        return out

    def send_robust(self, sender: Any, **named: Any) -> list[tuple[Receiver, Any]]:
        out: list[tuple[Receiver, Any]] = []
        for entry in self._route(sender):
            r = entry.get()
            if r is not None:
                try:
                    out.append((r, r(signal=self, sender=sender, **named)))
                except Exception as err:
                    out.append((r, err))
        return out


class LiveListSignal(MiniSignal):
    """Broken: sends iterate the live list that writers change in place.

    A receiver removed ahead of the send's position shifts the list under it,
    so the next receiver, connected all along, is skipped.
    """

    def __init__(self, use_caching: bool = False) -> None:
        super().__init__(use_caching)
        self._list: list[_Entry] = []

    def _publish_locked(self, entries: list[_Entry]) -> None:
        self._list[:] = entries
        self._entries = tuple(entries)

    def _remove_locked(self, entry: _Entry) -> None:
        self._list.remove(entry)
        self._entries = tuple(self._list)

    def _route(self, sender: object) -> Iterable[_Entry]:
        return (e for e in self._list if e.matches(sender))


class StaleLivenessSignal(MiniSignal):
    """Broken: resolves every receiver up front, then calls them all.

    Liveness is checked when the send starts, outside the per-call check, so a
    receiver disconnected during the send (by another thread or by an earlier
    receiver) is still called.
    """

    def send(self, sender: Any, **named: Any) -> list[tuple[Receiver, Any]]:
        live = [r for e in self._route(sender) if (r := e.get()) is not None]
        return [(r, r(signal=self, sender=sender, **named)) for r in live]

    def send_robust(self, sender: Any, **named: Any) -> list[tuple[Receiver, Any]]:
        live = [r for e in self._route(sender) if (r := e.get()) is not None]
        out: list[tuple[Receiver, Any]] = []
        for r in live:
            try:
                out.append((r, r(signal=self, sender=sender, **named)))
            except Exception as err:
                out.append((r, err))
        return out


class IdKeyedSignal(MiniSignal):
    """Broken: knows senders only by ``id()`` and never notices one die.

    A new sender that reuses a dead sender's address gets its receivers.
    """

    def _route(self, sender: object) -> Iterable[_Entry]:
        sid = None if sender is None else id(sender)
        return [e for e in self._entries if e.sender_id is None or e.sender_id == sid]

    def connect(
        self,
        receiver: Receiver,
        sender: object = None,
        weak: bool = True,
        dispatch_uid: object = None,
    ) -> None:
        key = self._key(receiver, sender, dispatch_uid)
        entry = _Entry(key, _getter(receiver, weak), sender)
        with self._lock:
            live = [e for e in self._entries if e.get() is not None]
            if any(e.key == key for e in live):
                return
            self._publish_locked([*live, entry])


class LockedSendSignal(MiniSignal):
    """Broken: holds its lock while calling receivers.

    A receiver that connects or disconnects deadlocks its own send.
    """

    def send(self, sender: Any, **named: Any) -> list[tuple[Receiver, Any]]:
        with self._lock:
            return super().send(sender, **named)

    def send_robust(self, sender: Any, **named: Any) -> list[tuple[Receiver, Any]]:
        with self._lock:
            return super().send_robust(sender, **named)


class LeakySignal(MiniSignal):
    """Broken: keeps a little bookkeeping per connect, forever.

    Like a ``weakref.finalize`` registered per connect and never detached (an
    object, its weak reference, its arguments): a weak reference and a small
    record for every connection ever made, some 300-400 bytes each.
    """

    def __init__(self, use_caching: bool = False) -> None:
        super().__init__(use_caching)
        self._history: list[tuple[object, ...]] = []

    def connect(
        self,
        receiver: Receiver,
        sender: object = None,
        weak: bool = True,
        dispatch_uid: object = None,
    ) -> None:
        super().connect(receiver, sender, weak, dispatch_uid)
        key = self._key(receiver, sender, dispatch_uid)
        info = {"weak": weak, "uid": dispatch_uid, "sender": id(sender)}
        self._history.append((weakref.ref(receiver), key, info, [key]))


class NoWaitSignal(concsignals.Signal):
    """Broken: ``disconnect(wait=True)`` and ``adisconnect`` do not wait.

    They return as soon as the receiver is disconnected, as a plain
    ``disconnect`` does, while calls of it that began before still run.
    """

    #: Only ``quiesce`` asks for the wait; every other scenario passes it.
    scenarios = ("quiesce",)

    def disconnect(
        self,
        receiver: Receiver | None = None,
        sender: object = None,
        dispatch_uid: object = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> bool:
        return super().disconnect(receiver, sender, dispatch_uid)

    async def adisconnect(
        self,
        receiver: Receiver | None = None,
        sender: object = None,
        dispatch_uid: object = None,
        *,
        timeout: float | None = None,
    ) -> bool:
        return super().disconnect(receiver, sender, dispatch_uid)


#: Every broken dispatcher the self-test must catch, by name.
BROKEN: dict[str, type[MiniSignal] | type[NoWaitSignal]] = {
    "live-list": LiveListSignal,
    "stale-liveness": StaleLivenessSignal,
    "id-keyed": IdKeyedSignal,
    "locked-send": LockedSendSignal,
    "leaky": LeakySignal,
    "no-wait": NoWaitSignal,
}
