"""What a send reads: entries, a per-sender index, and immutable snapshots of them.

Design
------
Connections live in a :class:`State`: the any-sender entries in one list, in
connection order, and for each sender a :class:`Route` holding that sender's own
entries in connection order.  Every entry carries ``seq``, its position in the
global connection order.  Writers only *append* to these lists, and never change
an element once appended (a disconnected entry stays as a tombstone: its
``get`` becomes :data:`DEAD`); compaction (``_registry.py``) builds a whole new
:class:`State` and leaves the old one untouched.

A :class:`Snapshot` is a view of one state at one moment: the state, how many
any-sender entries it sees (``n_any``) and the ``seq`` bound below which it sees
a sender's own entries (``upto``).  Since what lies below those bounds never
changes, a snapshot is immutable in content, though the lists it points into
grow: a send reads ``signal._snapshot`` once and sees exactly the connections
published before it, whatever writers do meanwhile.  So a write costs O(1): it
appends, and publishes a new small :class:`Snapshot` with one attribute write.

What a send iterates is a tuple, built lazily from the snapshot the first time
a send needs it and cached:

- :meth:`Snapshot.anyone`: the any-sender entries, cached on the snapshot (and
  in ``Snapshot.inline``, ``Signal.send``'s fast path, when no sender has its
  own live entries and no receiver is async);
- :meth:`Route.entries_for`: a sender's own entries merged with those, by
  ``seq``, cached on the route and tagged with the inputs it was built from (the
  ``anyone`` tuple and the snapshot's ``upto``).  A tag that does not match is a
  cache miss, so invalidation is free.  (A sender with a single entry of its
  own has that entry as its route: it answers the same methods.)

Building one costs O(receivers the send calls), never O(registry).  Entries
that are dead or disconnected when a tuple is built are left out.

The one mutable field of an entry: ``Entry.get``
------------------------------------------------
``Entry.get`` is a zero-argument callable that returns the live receiver, or
``None``.  For a weak receiver it is the ``weakref.ref``/``WeakMethod`` itself;
a strong receiver is held by ``Entry.hold`` and read through a plain weak
reference (a receiver that cannot be weakly referenced gets
``itertools.repeat(receiver).__next__``).  Disconnecting replaces ``get`` by
:data:`DEAD`, once, under the writer lock.  So ``entry.get()``, called just
before each call, answers both "still connected?" and "still alive?" in one C
call: a disconnect wins even against a send iterating an older tuple.

Memory-model assumptions
------------------------
These hold with the GIL and on free-threaded builds (3.13t/3.14t), whose
``list``, ``dict``, ``collections.deque``, attribute and weak-reference
operations are each atomic and internally locked:

1. Reading or writing one attribute is atomic, and a write *publishes*: a
   thread that reads a reference another thread stored sees the object as it
   was when stored (CPython stores object references with release semantics
   and loads them with acquire or stronger).  Every shared object here is
   fully built before the store that makes it reachable.
2. ``lst[:n]`` of a list another thread appends to returns the first ``n``
   elements as they are; appends never move or change them.  ``d.get(k)`` of a
   dict another thread inserts into returns the old or the new value.
3. Lazily built caches (``Snapshot._anyone``/``inline``, ``Route.cache``) are
   written by readers without a lock.  Each is a pure function of immutable
   inputs (or is tagged with them), so racing readers store equal values and a
   reader may see either, or none and build its own.
4. Deaths: a weak-reference callback runs after its reference is cleared
   (documented by :mod:`weakref`), and only appends to a ``deque`` (never takes
   a lock, never builds anything).  ``deque.append`` and ``popleft`` are atomic
   and ordered: whoever pops or counts an item sees the cleared reference.
   Nothing else orders the collector against the writer; no store-then-load
   ordering between different objects is assumed (the old ``pending`` flag
   protocol needed one: writer stores ``pending = False`` then loads the weak
   references, collector clears a reference then stores ``pending = True``;
   without a full fence both stores can land in the wrong order).  A death
   whose item is counted late only delays a compaction; a dead entry is never
   called, because ``get()`` is the check.
"""

from __future__ import annotations

import itertools
import types
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from ._targets import Delivery

Receiver: TypeAlias = Callable[..., Any]
Getter: TypeAlias = Callable[[], Any]
LookupKey: TypeAlias = tuple[Any, Any]
MethodType = types.MethodType
#: A route's cached merged tuple, tagged with what it was built from.
Cache: TypeAlias = "tuple[tuple[Entry, ...], int, tuple[Entry, ...]]"

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


def sender_id(sender: object) -> Any:
    """Django's identity of a sender: a bound method by (its object, function).

    Each attribute access makes a new bound-method object, so ``obj.method``
    is identified by what it is bound to.  Reads no attribute of user classes.
    """
    if type(sender) is MethodType:
        return (id(sender.__self__), id(sender.__func__))
    return id(sender)


def same_sender(got: object, sender: object) -> bool:
    """Whether a route's sender ``got`` (``None`` if dead) is ``sender``:
    the same object, or a bound method of the same object and function."""
    if got is sender:
        return got is not None
    return (
        type(sender) is MethodType
        and type(got) is MethodType
        and got.__self__ is sender.__self__
        and got.__func__ is sender.__func__
    )


class Entry:
    """One connection: a receiver, optionally for one sender.

    Immutable but for ``get`` and ``hold`` (see the module docstring), and
    ``cache``.  A sender with a single connection of its own has that entry
    as its route (``State.routes``), so an entry also answers the route
    methods ``is_for`` and ``entries_for``.
    """

    __slots__ = ("cache", "get", "hold", "opts", "sender_get", "seq")

    #: Fixed at connect: :class:`AsyncEntry` for async receivers.
    is_async = False
    #: As a route: connected entries of its own (one; see ``Route.live``).
    live = 1

    def __init__(
        self,
        get: Getter,
        sender_get: Getter | None,
        seq: int,
        hold: object,
        opts: Delivery | None = None,
    ) -> None:
        self.get = get
        #: The strong reference of a ``weak=False`` receiver, else ``None``.
        self.hold = hold
        #: ``None`` for an any-sender connection, else its sender's getter.
        self.sender_get = sender_get
        #: Position in the signal's connection order.
        self.seq = seq
        #: As a route: ``(anyone tuple, upto, merged tuple)``, or ``None``.
        self.cache: Cache | None = None
        #: ``connect(via=, wait=, phase=)``; ``None``: all three the defaults.
        self.opts = opts

    def is_live(self) -> bool:
        """Connected, receiver alive, and sender (if any) alive (blocked or
        not: see :class:`Blocked`)."""
        if self.receiver() is None:
            return False
        return self.sender_get is None or self.sender_get() is not None

    def receiver(self) -> Receiver | None:
        """The receiver if connected and alive, even while blocked."""
        get = self.get
        if type(get) is Blocked:
            get = get.original
        r: Receiver | None = get()
        return r

    @property
    def own(self) -> tuple[Entry]:
        """As a route: its entries."""
        return (self,)

    def is_for(self, sender: object) -> bool:
        """As a route: whether its sender is ``sender``."""
        return self.sender_get is not None and same_sender(self.sender_get(), sender)

    def entries_for(self, snap: Snapshot) -> tuple[Entry, ...]:
        """As a route: what a send through ``snap`` calls, in order."""
        anyone = snap.anyone()
        if self.seq >= snap.upto:  # connected after snap
            return anyone
        merged = merge(anyone, [self])
        self.cache = (anyone, snap.upto, merged)
        return merged

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.get()!r} seq={self.seq}>"


class Blocked:
    """An entry's ``get`` while ``Connection.blocked()`` holds it: the gate
    reads ``None`` (no call begins), the writers read through it to
    ``original`` (the connection stays connected).  Swapped in and out, and
    ``count`` changed, under the signal's writer lock only; a disconnect
    meanwhile stores ``DEAD`` over it, which the last exit leaves alone."""

    __slots__ = ("count", "original")

    def __init__(self, original: Getter) -> None:
        self.original = original
        self.count = 1

    def __call__(self) -> None:
        return None


class AsyncEntry(Entry):
    """An entry whose receiver is async."""

    __slots__ = ()
    is_async = True


def any_live_async(entries: Sequence[Entry]) -> bool:
    """Whether an async receiver of ``entries`` is still connected and alive.

    What decides that a sync send needs an event loop.  A snapshot's
    ``has_async`` and a cached tuple of entries keep a dead or disconnected
    async entry until compaction; its ``get()`` is ``None`` for good, so once
    this is false it stays false for that tuple.
    """
    return any(e.is_async and e.receiver() is not None for e in entries)


def any_options(entries: Sequence[Entry]) -> bool:
    """Whether an entry of ``entries`` has options (``connect(via=...)``,
    ``wait=``, ``phase=``): its send takes ``_deliver``'s driver."""
    return any(e.opts is not None for e in entries)


class Route:
    """The entries of a sender with more than one connection of its own
    (append-only), and its merged-tuple cache."""

    __slots__ = ("cache", "live", "own", "sender_get")

    def __init__(self, sender_get: Getter, own: list[Entry], live: int) -> None:
        self.sender_get = sender_get
        self.own = own
        #: How many of ``own`` are connected (writers only).
        self.live = live
        #: ``(anyone tuple, upto, merged tuple)``: the merged tuple and the
        #: inputs it was built from (see :meth:`Snapshot.lookup`), or ``None``.
        self.cache: Cache | None = None

    def is_for(self, sender: object) -> bool:
        """Whether this route's sender is ``sender`` (alive, not an id() reuse)."""
        return same_sender(self.sender_get(), sender)

    def entries_for(self, snap: Snapshot) -> tuple[Entry, ...]:
        """What a send through ``snap`` calls for this sender, in order."""
        anyone = snap.anyone()
        own = self.own
        k = len(own)
        while k and own[k - 1].seq >= snap.upto:  # appended after snap
            k -= 1
        merged = merge(anyone, own[:k])
        self.cache = (anyone, snap.upto, merged)
        return merged


def _seq(entry: Entry) -> int:
    return entry.seq


def merge(anyone: tuple[Entry, ...], own: Sequence[Entry]) -> tuple[Entry, ...]:
    """``anyone`` and the live entries of ``own``, by ``seq``."""
    out: list[Entry] = []
    i, n = 0, len(anyone)
    for entry in own:
        if entry.receiver() is None:  # blocked ones stay: see Blocked
            continue
        seq = entry.seq
        while i < n and anyone[i].seq < seq:
            out.append(anyone[i])
            i += 1
        out.append(entry)
    out.extend(anyone[i:])
    return tuple(out)


class State:
    """The connections, shared by snapshots; changed only by appending.

    Readers use ``anylog`` and ``routes`` (and the lists in them) through a
    snapshot's bounds.  Everything else is the writers' bookkeeping, read and
    written under the writer lock only (see ``_registry.py``), but for
    ``_replace.connections``, which reads a copy of ``index`` without it.
    """

    __slots__ = (
        "anylog",
        "index",
        "live_async",
        "live_opts",
        "live_own",
        "routes",
        "seq",
        "size",
        "tombstones",
    )

    def __init__(self) -> None:
        #: Any-sender entries, in connection order.
        self.anylog: list[Entry] = []
        #: ``sender_id(sender) -> Route``, or its single entry.
        self.routes: dict[Any, Route | Entry] = {}
        #: Lookup key -> entry, or for a dispatch_uid whose ``==`` is user
        #: code, ``(uid, entry)`` pairs by hash (see ``_registry.py``).
        self.index: dict[Any, Any] = {}
        self.seq = 0  # the next entry's seq
        self.size = 0  # entries held in anylog and routes
        self.tombstones = 0  # of those, known disconnected or replaced
        self.live_async = 0  # connected async entries (deaths not subtracted)
        self.live_own = 0  # connected sender-specific entries (likewise)
        self.live_opts = 0  # connected entries with options (likewise)


class Snapshot:
    """All a send reads: a state, seen up to fixed bounds.  Never changes
    what it shows once published (see the module docstring)."""

    __slots__ = (
        "_anyone",
        "has_async",
        "has_opts",
        "inline",
        "n_any",
        "routed",
        "state",
        "upto",
    )

    def __init__(
        self,
        state: State,
        n_any: int,
        upto: int,
        *,
        has_async: bool,
        routed: bool,
        anyone: tuple[Entry, ...] | None = None,
        has_opts: bool = False,
    ) -> None:
        self.state = state
        self.n_any = n_any
        self.upto = upto
        self.has_async = has_async
        #: Whether some sender has connected entries of its own.
        self.routed = routed
        #: Whether some connection has options (``Entry.opts``).
        self.has_opts = has_opts
        if n_any == 0:
            anyone = ()
        self._anyone = anyone
        #: What an inline send calls for every sender, when that is the same
        #: for all of them (no sender routes), every receiver is sync and no
        #: connection has options:
        #: ``Signal.send``'s fast path.  Otherwise, or until a send has built
        #: it (see :meth:`anyone`), ``None``.
        self.inline = None if routed or has_async or has_opts else anyone

    @property
    def entries(self) -> tuple[Entry, ...]:
        """Every entry this snapshot sees, tombstones included, in connection
        order.  O(n log n): for ``Signal.receivers`` and tests, not sends."""
        st = self.state
        found = st.anylog[: self.n_any]
        for route in st.routes.copy().values():
            found += [e for e in route.own[:] if e.seq < self.upto]
        found.sort(key=_seq)
        return tuple(found)

    def refreshed(self) -> Snapshot:
        """The same connections, with every cached tuple to be rebuilt."""
        return Snapshot(
            self.state,
            self.n_any,
            self.upto,
            has_async=self.has_async,
            routed=self.routed,
            has_opts=self.has_opts,
        )

    def anyone(self) -> tuple[Entry, ...]:
        """The live any-sender entries this snapshot sees, in order (cached)."""
        found = self._anyone
        if found is None:
            visible = self.state.anylog[: self.n_any]
            found = tuple([e for e in visible if e.receiver() is not None])
            self._anyone = found
            if not (self.routed or self.has_async or self.has_opts):
                self.inline = found
        return found

    def lookup(self, sender: object) -> tuple[Entry, ...]:
        """The entries a send for ``sender`` calls, in connection order."""
        if sender is None or not self.routed:
            return self.anyone()
        if type(sender) is MethodType:
            key: Any = (id(sender.__self__), id(sender.__func__))
        else:
            key = id(sender)
        route = self.state.routes.get(key)
        if route is None:
            return self.anyone()
        got = route.sender_get()  # type: ignore[misc]
        if got is not sender and not same_sender(got, sender):
            return self.anyone()  # a dead sender's route, its id() reused
        cache = route.cache
        if cache is not None and cache[1] == self.upto and cache[0] is self._anyone:
            return cache[2]
        return route.entries_for(self)


def empty() -> Snapshot:
    """A snapshot of a new, empty state (each signal needs its own state)."""
    return Snapshot(State(), 0, 0, has_async=False, routed=False)


def sender_getter(sender: object, notice: Callable[[Any], Any]) -> Getter:
    """A getter for ``sender``: weak (calling ``notice`` when it dies) if it
    can be; else strong, which keeps its ``id()`` from being reused while
    anything is connected for it (``None``, ``str``, ``int``...)."""
    try:
        if type(sender) is MethodType:
            return weakref.WeakMethod(sender, notice)
        return weakref.ref(sender, notice)
    except TypeError:
        return strong(sender)


#: ``weakref.ref`` as imported: a strong receiver's getter.  Looked up once, so
#: that code patching ``weakref.ref`` to watch how weak receivers are held (as
#: Django's own test suite does) sees strong ones make no weak reference.
_plain_ref = weakref.ref


def receiver_getter(
    receiver: Receiver, weak: bool, notice: Callable[[Any], Any]
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
