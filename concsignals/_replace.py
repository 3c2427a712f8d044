"""Every connection at once: Django's ``receivers``, read and replaced.

:func:`connections` lists what a snapshot sees (lock-free);
:func:`as_published_locked` republishes that in a fresh state (a forked
child's repair, see ``_fork.py``); :func:`replace_locked` publishes a whole
new list under the writer lock, on the steps of a write in ``_registry.py``,
with one difference: its commit publishes the new snapshot, and only then
marks the entries it drops :data:`~concsignals._snapshot.DEAD` in a loop.
The collector may run a ``__del__`` in that loop; a write it makes goes on
top of the published snapshot, which holds none of the entries being
marked, so nothing is lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._registry import Request, forget_deaths, is_bucket_key, whole, with_routes
from ._snapshot import DEAD, AsyncEntry, Entry, Getter, Snapshot, State

if TYPE_CHECKING:
    from ._signal import Signal


class Connection:
    """One connection as :func:`connections` lists it and :func:`replace_locked`
    publishes it.  (A plain class: a ``NamedTuple`` costs ``import
    concsignals`` a millisecond.)"""

    __slots__ = ("entry", "key", "uid")

    def __init__(self, key: Any, uid: object, entry: Entry) -> None:
        #: Its lookup key (see :func:`lookup_key`); ``key[-1]`` is the
        #: sender's identity, ``None`` for any sender.
        self.key = key
        #: Its ``dispatch_uid``, or ``None``.
        self.uid = uid
        self.entry = entry


def connections(snap: Snapshot) -> list[Connection]:
    """The live connections ``snap`` sees, in connection order.  Lock-free.

    The index is the writers' (a write stores into it before it publishes),
    so a copy of it is read and only entries ``snap`` sees are kept; one that
    is not in the copy was disconnected (its ``get`` is :data:`DEAD` first).
    """
    seen = {id(e) for e in snap.entries}  # the tuple keeps the ids in use
    found: list[Connection] = []
    for key, value in snap.state.index.copy().items():
        if type(value) is tuple:  # a bucket of (uid, entry) pairs
            pairs: tuple[Any, ...] = value
        else:  # keyed by its receiver: no uid
            pairs = ((None, value),)
        for uid, entry in pairs:
            if id(entry) in seen and entry.is_live():
                found.append(Connection(key, uid, entry))
    found.sort(key=_entry_seq)
    return found


def _entry_seq(c: Connection) -> int:
    return c.entry.seq


class Wanted:
    """One connection :func:`replace_locked` is to publish, made outside the
    lock (getters made, ``dispatch_uid`` compared: see :func:`distinct`): a
    connect's :class:`~concsignals._registry.Request`, its sender's getter
    (``None``: any sender), and the entry it was read from."""

    __slots__ = ("origin", "request", "sender_get")

    def __init__(
        self, request: Request, sender_get: Getter | None, origin: Entry | None
    ) -> None:
        self.request = request
        self.sender_get = sender_get
        #: The entry it was read from (:func:`connections`), kept if still
        #: current.
        self.origin = origin


def distinct(wanted: list[Wanted]) -> list[Wanted]:
    """``wanted`` without a later one of a key already there: the first wins.

    Compares the uids of bucket keys (user ``==``): call it with no lock held.
    """
    out: list[Request] = []
    kept: list[Wanted] = []
    plain: set[Any] = set()
    for w in wanted:
        r = w.request
        if not is_bucket_key(r.key):
            if r.key in plain:
                continue
            plain.add(r.key)
        elif any(o.key == r.key and (o.uid is r.uid or o.uid == r.uid) for o in out):
            continue
        out.append(r)
        kept.append(w)
    return kept


def replace_locked(
    signal: Signal, wanted: list[Wanted], released: list[object]
) -> None:
    """Publish exactly ``wanted`` (from :func:`distinct`), in that order, with
    one store; then retire every entry that was connected and is not kept.

    A ``wanted`` read from the current snapshot keeps its entry, never
    disconnected, if connection order allows (its ``seq`` follows the one
    before it); any other gets a new entry.  O(entries held + len(wanted)).
    """
    while True:  # again if a nested write (a __del__) came first
        base = signal._snapshot
        st = base.state
        reported = len(signal._deaths)
        fresh = State()
        fresh.seq = st.seq
        own: dict[Any, list[Entry]] = {}
        kept: set[int] = set()
        last = -1
        for w in wanted:
            r, entry = w.request, w.origin
            if entry is None or entry.seq <= last or not _current(st, r.key, entry):
                cls = AsyncEntry if r.is_async else Entry
                entry = cls(r.get, w.sender_get, fresh.seq, r.hold, r.opts)
                fresh.seq += 1
                if not entry.is_live():
                    continue  # its sender died meanwhile
            kept.add(id(entry))
            last = entry.seq
            if r.key[-1] is None:
                fresh.anylog.append(entry)
            else:
                own.setdefault(r.key[-1], []).append(entry)
            if is_bucket_key(r.key):
                fresh.index[r.key] = (*fresh.index.get(r.key, ()), (r.uid, entry))
            else:
                fresh.index[r.key] = entry
        new = whole(with_routes(fresh, own))
        dropped = [e for e in base.entries if id(e) not in kept and e.get is not DEAD]
        holds = [e.hold for e in dropped]
        if signal._snapshot is not base:
            continue
        signal._snapshot = new  # commit: publish
        # Retire what was dropped.  A __del__ the collector runs in this loop
        # writes on top of ``new``, which holds none of these entries.
        for entry in dropped:
            entry.get = DEAD
            entry.hold = None  # ``holds`` keeps it until after the lock
            entry.cache = None  # a single entry's merged tuple holds it
        forget_deaths(signal, reported)  # their entries are left out of ``new``
        released += [base, holds, dropped]
        return


def as_published_locked(signal: Signal, released: list[object]) -> None:
    """Make the signal's state exactly what its published snapshot sees.

    For a forked child (``_fork.py``): a writer of the parent may have been
    lost between two stores of its commit, leaving the shared lists, index
    and counts ahead of the snapshot, which the child's next write would
    build on.  The published snapshot is whole; this republishes its live
    connections, keeping their entries, in a fresh state.  O(entries held).
    """
    wanted = [
        Wanted(Request(c.key, c.uid, c.entry.get, c.entry.hold, c.entry.is_async,
                       c.entry.opts),
               c.entry.sender_get, c.entry)
        for c in connections(signal._snapshot)
    ]  # fmt: skip
    replace_locked(signal, wanted, released)


def _current(st: State, key: Any, entry: Entry) -> bool:
    """Whether ``entry`` is connected in ``st`` under ``key``, and alive."""
    value = st.index.get(key)
    if type(value) is tuple:
        return any(p[1] is entry for p in value) and entry.is_live()
    return value is entry and entry.is_live()
