"""The writer side: connect, disconnect, compaction and dead-entry bookkeeping.

Every write holds the signal's writer lock (``signal._lock``) and costs O(1)
amortised: it appends an entry (or marks one disconnected) in the shared
:class:`~concsignals._snapshot.State` and publishes a new small
:class:`~concsignals._snapshot.Snapshot`.  Garbage (disconnected entries, and
entries whose receiver or sender died) stays in place until it passes half of
what is stored; then the write that sees it rebuilds the state without it
(compaction: O(n), after at least n/2 garbage-making events, so O(1) each).

A write, step by step
---------------------
1. *Outside the lock*: everything that may run user code.  The receiver is
   inspected, weak references are made, the lookup key is computed (a
   ``dispatch_uid`` is hashed here, and if its ``==`` is user code it is
   compared here too, against the candidates with its hash: see
   :func:`resolve_uid`).
2. *Prepare*, under the lock: read the current snapshot (``base``) and build
   every new object the write needs: the entry, its route, the new snapshot.
   Nothing shared is changed yet.
3. *Commit*, under the lock: if ``signal._snapshot`` is still ``base``, apply
   the change with plain stores (``x.attr = v``, ``d[k] = v``, ``del d[k]``,
   ``lst += one``) and publish the new snapshot last.
4. *After the lock is released*: drop the references the write removed (a
   ``weak=False`` receiver, the replaced snapshot or route, a ``dispatch_uid``
   pair), so that no finalizer runs under the lock.

Why the commit is a list of stores: the garbage collector may run a user's
``__del__`` inside step 2, on this thread, while it holds the (reentrant) lock,
and that ``__del__`` may write to this same signal.  That nested write runs to
its end; step 3 then finds ``_snapshot`` changed and the write starts over from
step 2, on top of it, so neither is lost.  The commit itself contains no call,
no loop and allocates no container, so the collector cannot run inside it:
CPython 3.11 collects only when a container is allocated, 3.12+ only at
eval-breaker checks (calls and backward jumps), and the stores drop no last
reference (step 4 holds them).

Replacing every connection at once (Django's ``receivers = [...]``) is in
``_replace.py``, on the same steps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._snapshot import (
    DEAD,
    AsyncEntry,
    Entry,
    Getter,
    Route,
    Snapshot,
    State,
    receiver_id,
    sender_getter,
    sender_id,
)

if TYPE_CHECKING:
    from ._signal import Signal
    from ._targets import Delivery

#: Compact when garbage reaches this many entries and half of what is stored.
MIN_GARBAGE = 16

#: ``on_connect(entry)``, called by ``Signal.connect`` after each connect (no
#: lock held), while set: the pytest plugin's ``--concsignals-strict`` records
#: where each connection was made.  ``None`` (always, but in strict mode):
#: one global test per connect, nothing on any send path.
on_connect: Callable[[Entry], None] | None = None


def lookup_key(receiver: object, sender: object, dispatch_uid: object) -> Any:
    """The index key of a connection (computed before the lock is taken).

    ``(receiver identity, sender identity)``, or for a ``dispatch_uid``
    (Django's rule: one that is true), ``("uid#", hash(uid), sender
    identity)``: a bucket of ``(uid, entry)`` pairs whose uids are compared
    with ``==`` (see :func:`resolve_uid`), so equal uids of different types
    (``1`` and ``Decimal(1)``, ``"a"`` and a ``str`` subclass's ``"a"``) are
    one connection, as in Django.
    """
    skey = None if sender is None else sender_id(sender)
    if not dispatch_uid:  # Django: ``if dispatch_uid:`` (user code: no lock held)
        return (receiver_id(receiver), skey)
    return ("uid#", hash(dispatch_uid), skey)


def is_bucket_key(key: Any) -> bool:
    return type(key[0]) is str


def resolve_uid(
    signal: Signal, key: Any, uid: object
) -> tuple[tuple[Any, ...], Entry | None]:
    """The bucket for ``key`` and its entry whose uid ``== uid``, compared
    here, with no lock held (the comparison is user code).  The writer then
    checks under the lock that the bucket is still the same object."""
    bucket: tuple[Any, ...] = signal._snapshot.state.index.get(key, ())
    for other, entry in bucket:
        if other is uid or other == uid:
            return bucket, entry
    return bucket, None


def new_deaths() -> deque[Any]:
    """The queue weak-reference callbacks append to (see ``_snapshot.py``, 4)."""
    return deque()


def connected(
    st: State, key: Any, resolved: tuple[tuple[Any, ...], Entry | None] | None
) -> tuple[bool, Entry | None]:
    """Whether ``resolved`` (a uid bucket and its entry, see
    :func:`resolve_uid`) still holds under the lock, and the entry connected
    under ``key``."""
    if resolved is None:
        return True, st.index.get(key)
    return st.index.get(key, ()) is resolved[0], resolved[1]


# -- connect -------------------------------------------------------------------


class Request:
    """One connection a writer asks for, made in step 1 (outside the lock):
    its lookup key, ``dispatch_uid``, the receiver's getter and strong hold
    (``weak=False``, else ``None``), and whether the receiver is async.  What
    :func:`connect_locked` connects, and (in a ``_replace.Wanted``) what
    ``_replace.replace_locked`` publishes."""

    __slots__ = ("entry", "get", "hold", "is_async", "key", "opts", "uid")

    def __init__(
        self,
        key: Any,
        uid: object,
        get: Getter,
        hold: object,
        is_async: bool,
        opts: Delivery | None = None,
    ) -> None:
        self.key = key
        self.opts = opts
        self.uid = uid
        self.get = get
        self.hold = hold
        self.is_async = is_async
        #: The connection's entry once connected (or found connected).
        self.entry: Entry | None = None


def connect_locked(
    signal: Signal,
    req: Request,
    sender: object,
    resolved: tuple[tuple[Any, ...], Entry | None] | None,
    released: list[object],
) -> bool:
    """Connect ``req`` for ``sender`` (``None``: any); ``False`` if the uid
    bucket changed since ``resolved`` (the caller resolves again, outside the
    lock)."""
    key, is_async = req.key, req.is_async
    while True:  # again if a nested write (a __del__) came first
        base = compacted_locked(signal, released)
        st = base.state
        still, existing = connected(st, key, resolved)
        if not still:
            return False
        if existing is not None and existing.is_live():
            req.entry = existing
            return True
        skey = key[-1]
        cur = None if sender is None else st.routes.get(skey)
        stale = route = None  # route: the Route the entry is appended to
        joined: Entry | None = None  # a single entry that becomes a Route
        old_cache = None
        if sender is None:
            sender_get = None
        elif cur is None or not cur.is_for(sender):
            stale = cur  # a dead sender's, whose id() the new one reuses
            sender_get = sender_getter(sender, signal._notice)
        else:
            sender_get = cur.sender_get
        cls = AsyncEntry if is_async else Entry
        entry = cls(req.get, sender_get, st.seq, req.hold, req.opts)
        one = (entry,)
        value: Any = entry
        if resolved is not None:
            kept = [p for p in resolved[0] if p[1] is not existing]
            value = (*kept, (req.uid, entry))
        # The sender's route after this write: the entry alone, or a Route.
        new_route: Route | Entry | None = entry
        if cur is not None and stale is None:
            if isinstance(cur, Route):
                new_route, route = None, cur
            else:  # its single entry becomes a Route of two
                assert sender_get is not None
                new_route = Route(sender_get, [cur, entry], 2)
                joined, old_cache = cur, cur.cache
        tombstones = st.tombstones + (existing is not None)
        live_own = st.live_own
        if stale is not None:
            tombstones += stale.live
            live_own -= stale.live
        if sender is not None:
            live_own += 1
        live_async = st.live_async + is_async
        live_opts = st.live_opts + (req.opts is not None)
        new = Snapshot(
            st,
            base.n_any + (sender is None),
            st.seq + 1,
            has_async=live_async > 0,
            routed=live_own > 0,
            anyone=None if sender is None else base._anyone,
            has_opts=live_opts > 0,
        )
        if signal._snapshot is not base:
            continue
        # -- commit: stores only (see the module docstring) --------------------
        st.index[key] = value
        if sender is None:
            st.anylog += one
        elif route is not None:
            route.own += one
            route.live += 1
        elif new_route is not None:
            st.routes[skey] = new_route
            if joined is not None:
                joined.cache = None  # it holds ``joined``: no cycle left behind
        st.seq += 1
        st.size += 1
        st.tombstones = tombstones
        st.live_own = live_own
        st.live_async = live_async
        st.live_opts = live_opts
        signal._snapshot = new
        # -- committed ---------------------------------------------------------
        if isinstance(stale, Entry):
            stale.cache = None  # its merged tuple holds it: break the cycle
        released += [base, stale, resolved, old_cache]
        req.entry = entry
        return True


# -- disconnect ----------------------------------------------------------------


def disconnect(
    signal: Signal,
    receiver: object,
    sender: object,
    dispatch_uid: object,
    gone: list[Entry],
) -> bool:
    """``signal.disconnect``: whether it was connected; ``gone`` gets the
    entry disconnected."""
    key = lookup_key(receiver, sender, dispatch_uid)
    return disconnect_key(signal, key, dispatch_uid, gone)


def disconnect_key(
    signal: Signal,
    key: Any,
    dispatch_uid: object,
    gone: list[Entry],
    only: Entry | None = None,
) -> bool:
    """Disconnect what ``key`` finds; ``only``: if it is that entry, not
    another one connected since under the same key (``Connection``)."""
    released: list[object] = []
    while True:  # again only if another writer changed this uid's bucket
        resolved = None
        if is_bucket_key(key):
            resolved = resolve_uid(signal, key, dispatch_uid)
        with signal._lock:
            found = disconnect_locked(signal, key, resolved, released, gone, only)
        if found is not None:
            return found
    # ``released`` is dropped on return, after the lock


def disconnect_locked(
    signal: Signal,
    key: Any,
    resolved: tuple[tuple[Any, ...], Entry | None] | None,
    released: list[object],
    gone: list[Entry] | None = None,
    only: Entry | None = None,
) -> bool | None:
    """Disconnect; whether it was connected, or ``None`` if the uid bucket
    changed since ``resolved``.  ``gone`` gets the entry disconnected."""
    while True:  # again if a nested write (a __del__) came first
        base = compacted_locked(signal, released)
        st = base.state
        still, entry = connected(st, key, resolved)
        if not still:
            return None
        if entry is None or not entry.is_live() or (only and entry is not only):
            return False
        route = None if entry.sender_get is None else st.routes[key[-1]]
        bucket: tuple[Any, ...] = ()
        if resolved is not None:
            bucket = tuple([p for p in resolved[0] if p[1] is not entry])
        live_own = st.live_own - (route is not None)
        live_async = st.live_async - entry.is_async
        live_opts = st.live_opts - (entry.opts is not None)
        route_live = 0 if route is None else route.live - 1
        size, tombstones = st.size, st.tombstones + 1
        if route is not None and route_live == 0:
            # Nothing connected for this sender: drop its route, which may
            # hold the sender strongly (all its entries are tombstones).
            size -= len(route.own)
            tombstones = max(0, tombstones - len(route.own))
        new = Snapshot(
            st,
            base.n_any,
            base.upto,
            has_async=live_async > 0,
            routed=live_own > 0,
            anyone=None if route is None else base._anyone,
            has_opts=live_opts > 0,
        )
        hold = entry.hold
        if signal._snapshot is not base:
            continue
        # -- commit: stores only (see the module docstring) --------------------
        entry.get = DEAD
        entry.hold = None
        if bucket:
            st.index[key] = bucket
        else:
            del st.index[key]
        if route is not None:
            if route_live == 0:
                del st.routes[key[-1]]
                entry.cache = None  # a single entry's merged tuple holds it
            else:  # a Route (a single entry's route_live is 0)
                route.live = route_live
                route.cache = None
        st.size = size
        st.tombstones = tombstones
        st.live_own = live_own
        st.live_async = live_async
        st.live_opts = live_opts
        signal._snapshot = new
        # -- committed ---------------------------------------------------------
        released += [base, hold, resolved, route]
        if gone is not None:
            gone.append(entry)
        return True


def drop_dead(signal: Signal, *, blocking: bool) -> None:
    """Compact away every entry reported dead, if any was (with ``blocking``
    false: only if the writer lock is free right now)."""
    released: list[object] = []
    if signal._deaths and signal._lock.acquire(blocking=blocking):
        try:
            compacted_locked(signal, released, deaths_only=True)
        finally:
            signal._lock.release()
    released.clear()  # after the lock: may run a receiver's __del__


def compacted_locked(
    signal: Signal, released: list[object], *, deaths_only: bool = False
) -> Snapshot:
    """The current snapshot, first compacted if garbage passed half of it
    (with ``deaths_only``: if any death was reported).

    O(entries held), and only after at least half as many garbage-making
    events since the last compaction: O(1) amortised per write.
    """
    while True:
        base = signal._snapshot
        st = base.state
        reported = len(signal._deaths)
        waste = st.tombstones + reported
        if deaths_only:
            if not reported:
                return base
        elif waste < MIN_GARBAGE or 2 * waste <= st.size:
            return base
        new = whole(rebuilt(st))
        if signal._snapshot is not base:
            continue
        signal._snapshot = new  # commit
        released.append(base)
        forget_deaths(signal, reported)  # counted above: their entries are gone
        return new


def forget_deaths(signal: Signal, reported: int) -> None:
    """Pop ``reported`` deaths, whose entries a commit just left out."""
    deaths = signal._deaths
    for _ in range(reported):
        if deaths:
            deaths.popleft()
    signal._dead_seen = 0


def whole(fresh: State) -> Snapshot:
    """A snapshot that sees all of ``fresh``."""
    return Snapshot(
        fresh,
        len(fresh.anylog),
        fresh.seq,
        has_async=fresh.live_async > 0,
        routed=fresh.live_own > 0,
        has_opts=fresh.live_opts > 0,
    )


def rebuilt(st: State) -> State:
    """A new state with the live entries of ``st`` (which is not changed)."""
    fresh = State()
    fresh.seq = st.seq
    fresh.anylog = [e for e in st.anylog if e.is_live()]
    own: dict[Any, list[Entry]] = {}
    for skey, route in st.routes.items():
        live = []
        for e in route.own:
            if e.is_live():
                live.append(e)
            else:  # a merged tuple it cached as a single route holds it: break
                e.cache = None  # the cycle, so its hold goes without the collector
        if live:
            own[skey] = live
    for key, value in st.index.items():
        if type(value) is tuple:
            pairs = tuple([p for p in value if p[1].is_live()])
            if pairs:
                fresh.index[key] = pairs
        elif value.is_live():
            fresh.index[key] = value
    return with_routes(fresh, own)


def with_routes(fresh: State, own: dict[Any, list[Entry]]) -> State:
    """``fresh`` (its ``anylog`` filled) with a route for each sender's
    ``own`` entries (in connection order), and its counts."""
    for skey, entries in own.items():
        if len(entries) > 1:
            sender_get: Getter = entries[0].sender_get  # type: ignore[assignment]
            fresh.routes[skey] = Route(sender_get, entries, len(entries))
        else:
            fresh.routes[skey] = entries[0]
    fresh.live_own = sum(map(len, own.values()))
    fresh.size = len(fresh.anylog) + fresh.live_own
    everyone = (fresh.anylog, *own.values())
    fresh.live_async = sum(e.is_async for entries in everyone for e in entries)
    fresh.live_opts = sum(e.opts is not None for entries in everyone for e in entries)
    return fresh
