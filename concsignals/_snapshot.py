"""The immutable snapshot a send reads: entries in order plus a per-sender index.

Design
------
A :class:`Snapshot` is everything a send needs, built by a writer and then never
changed: the entries in connection order, the entries connected for any sender,
and a route per sender, which is the merged, ordered tuple of that sender's own
entries and the any-sender ones.  A send reads ``signal._snapshot`` once and
looks its sender up in a dict, so it costs O(receivers called) however many
other senders have connections.

Writers (``Signal.connect`` / ``disconnect``) build a new snapshot from the old
one under the signal's writer lock and publish it with one attribute write.

The one mutable field: ``Entry.get``
------------------------------------
``Entry.get`` is a zero-argument callable that returns the live receiver, or
``None``.  For a weak receiver it is the ``weakref.ref``/``WeakMethod`` itself.
A strong receiver is held by ``Entry.hold`` and its getter is a plain weak
reference to it (calling one is a little cheaper than any other C callable that
returns an object); a strong receiver that cannot be weakly referenced gets
``itertools.repeat(receiver).__next__``.  Disconnecting (:meth:`Entry.retire`)
replaces ``get``, once and under the writer lock, by :data:`DEAD`, then drops
``hold``.  So the check a
send makes just before each call, ``entry.get()``, answers both "is it still
connected?" and "is its target still alive?" in one C call.  That is how a
disconnect that happened before a call began wins, even for a send that is
iterating an older snapshot.

Memory-model assumptions
------------------------
These hold with and without the GIL (3.13t/3.14t):

1. Reading or writing one attribute of an object is atomic: a reader sees the
   old value or the new one, never a torn one.
2. Everything reachable from a published snapshot is never mutated, except
   ``Entry.get``, which goes from live to :data:`DEAD` at most once (and
   ``Entry.hold``, dropped just after it).
3. Weak-reference callbacks run when the garbage collector decides, on any
   thread, possibly while this thread holds the writer lock.  They only set a
   flag (:class:`DeathNotice`); they never take a lock or build a snapshot.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

Receiver: TypeAlias = Callable[..., Any]
Getter: TypeAlias = Callable[[], Any]
LookupKey: TypeAlias = tuple[Any, Any]

#: The getter of a disconnected entry: always ``None``.
DEAD: Getter = itertools.repeat(None).__next__


def strong(obj: object) -> Getter:
    """A getter that holds ``obj`` strongly and returns it."""
    return itertools.repeat(obj).__next__


def receiver_id(receiver: object) -> Any:
    """Django's identity of a receiver: bound methods by (self, function)."""
    if hasattr(receiver, "__func__") and hasattr(receiver, "__self__"):
        return (id(receiver.__self__), id(receiver.__func__))
    return id(receiver)


class DeathNotice:
    """Records that a weakly held receiver or sender died.

    Safe to call from any thread and from inside the garbage collector: it sets
    one attribute and returns.  The writer side reads and clears ``pending``
    under its lock and prunes the snapshot.
    """

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = False

    def __call__(self, _ref: object) -> None:
        self.pending = True


class Entry:
    """One connection: a receiver, optionally for one sender.

    Immutable but for ``get`` (see the module docstring).
    """

    __slots__ = ("get", "hold", "is_async", "key", "sender_get")

    def __init__(
        self,
        key: LookupKey,
        get: Getter,
        sender_get: Getter | None,
        *,
        is_async: bool,
        hold: object = None,
    ) -> None:
        self.key = key
        self.get = get
        #: The strong reference of a ``weak=False`` receiver, else ``None``.
        self.hold = hold
        #: ``None`` for an any-sender connection, else the sender's getter.
        self.sender_get = sender_get
        self.is_async = is_async

    def retire(self) -> None:
        """Mark this entry disconnected: no send calls it from now on.

        Writers only, under the writer lock.  Sends that read ``get`` before
        this see the receiver (their call overlaps the disconnect); later ones
        see :data:`DEAD`.
        """
        self.get = DEAD
        self.hold = None

    def is_live(self) -> bool:
        """Connected, receiver alive, and sender (if any) alive."""
        if self.get() is None:
            return False
        return self.sender_get is None or self.sender_get() is not None

    def __repr__(self) -> str:
        return f"<Entry {self.get()!r} key={self.key!r}>"


class Route:
    """A sender's merged receivers: its own entries and the any-sender ones."""

    __slots__ = ("entries", "own", "sender_get")

    def __init__(
        self, sender_get: Getter, entries: tuple[Entry, ...], own: int
    ) -> None:
        self.sender_get = sender_get
        self.entries = entries
        #: How many of ``entries`` are connected for this sender specifically.
        self.own = own


class Snapshot:
    """All the state a send reads.  Never mutated after it is published."""

    __slots__ = ("anyone", "by_key", "entries", "has_async", "inline", "routes")

    def __init__(
        self,
        entries: tuple[Entry, ...],
        anyone: tuple[Entry, ...],
        routes: dict[int, Route],
        by_key: dict[LookupKey, Entry],
    ) -> None:
        self.entries = entries
        self.anyone = anyone
        self.routes = routes
        self.by_key = by_key
        self.has_async = any(e.is_async for e in entries)
        #: What an inline send calls for every sender, when that is the same
        #: for all of them (no sender has its own route) and every receiver is
        #: sync: ``Signal.send``'s fast path.  Otherwise ``None``.
        self.inline = None if routes or self.has_async else anyone

    def lookup(self, sender: object) -> tuple[Entry, ...]:
        """The entries a send for ``sender`` calls, in connection order."""
        if sender is None or not self.routes:
            return self.anyone
        route = self.routes.get(id(sender))
        if route is not None and route.sender_get() is sender:
            return route.entries
        return self.anyone

    # -- building new snapshots (writers only, under the writer lock) --------

    def with_entry(self, entry: Entry) -> Snapshot:
        """A snapshot with ``entry`` connected last."""
        entries = (*self.entries, entry)
        by_key = dict(self.by_key)
        by_key[entry.key] = entry
        sender_key = entry.key[1]
        if entry.sender_get is None:
            anyone = (*self.anyone, entry)
            routes = {
                k: Route(r.sender_get, (*r.entries, entry), r.own)
                for k, r in self.routes.items()
            }
        else:
            anyone = self.anyone
            routes = dict(self.routes)
            old = routes.get(sender_key)
            if old is None:
                routes[sender_key] = Route(entry.sender_get, (*anyone, entry), 1)
            else:
                routes[sender_key] = Route(
                    old.sender_get, (*old.entries, entry), old.own + 1
                )
        return Snapshot(entries, anyone, routes, by_key)

    def without(self, entry: Entry) -> Snapshot:
        """A snapshot with ``entry`` disconnected."""
        entries = tuple(e for e in self.entries if e is not entry)
        by_key = dict(self.by_key)
        del by_key[entry.key]
        if entry.sender_get is None:
            anyone = tuple(e for e in self.anyone if e is not entry)
            routes = {
                k: Route(r.sender_get, _drop(r.entries, entry), r.own)
                for k, r in self.routes.items()
            }
        else:
            anyone = self.anyone
            routes = dict(self.routes)
            sender_key = entry.key[1]
            old = routes[sender_key]
            if old.own == 1:
                del routes[sender_key]
            else:
                routes[sender_key] = Route(
                    old.sender_get, _drop(old.entries, entry), old.own - 1
                )
        return Snapshot(entries, anyone, routes, by_key)


def _drop(entries: tuple[Entry, ...], entry: Entry) -> tuple[Entry, ...]:
    return tuple(e for e in entries if e is not entry)


def build(entries: Iterable[Entry]) -> Snapshot:
    """A snapshot of ``entries`` (in connection order), built from scratch."""
    ordered = tuple(entries)
    anyone = tuple(e for e in ordered if e.sender_get is None)
    merged: dict[int, list[Entry]] = {}
    getters: dict[int, Getter] = {}
    own: dict[int, int] = {}
    for entry in ordered:
        if entry.sender_get is not None:
            sender_key = entry.key[1]
            merged.setdefault(sender_key, [])
            getters.setdefault(sender_key, entry.sender_get)
            own[sender_key] = own.get(sender_key, 0) + 1
    for entry in ordered:
        if entry.sender_get is None:
            for lst in merged.values():
                lst.append(entry)
        else:
            merged[entry.key[1]].append(entry)
    routes = {k: Route(getters[k], tuple(v), own[k]) for k, v in merged.items()}
    return Snapshot(ordered, anyone, routes, {e.key: e for e in ordered})


EMPTY = build(())


def sender_getter(
    sender: object, existing: Route | None, notice: DeathNotice
) -> Getter:
    """The getter for ``sender``: shared with its existing route, if live.

    Weakly referenceable senders are held by a weak reference whose callback is
    ``notice``; others (``None``, ``str``, ``int``...) are held strongly, which
    keeps their ``id()`` from being reused while anything is connected for them.
    """
    if existing is not None and existing.sender_get() is sender:
        return existing.sender_get
    try:
        return weakref.ref(sender, notice)
    except TypeError:
        return strong(sender)


#: ``weakref.ref`` as imported: a strong receiver's getter.  Looked up once, so
#: that code patching ``weakref.ref`` to watch how weak receivers are held (as
#: Django's own test suite does) sees strong ones make no weak reference.
_plain_ref = weakref.ref


def receiver_getter(
    receiver: Receiver, weak: bool, notice: DeathNotice
) -> tuple[Getter, object]:
    """The getter for ``receiver``, and what must hold it strongly (or ``None``)."""
    if not weak:
        try:
            return _plain_ref(receiver), receiver
        except TypeError:
            return strong(receiver), None
    try:
        if hasattr(receiver, "__self__") and hasattr(receiver, "__func__"):
            return weakref.WeakMethod(receiver, notice), None
        return weakref.ref(receiver, notice), None
    except TypeError:
        raise TypeError(
            f"receiver {receiver!r} cannot be weakly referenced; "
            "connect it with weak=False to hold it strongly"
        ) from None
