"""The writer side's all-at-once functions: list every connection, replace all.

``_replace.connections`` and ``_replace.replace_locked`` (with ``Wanted``,
``distinct``) are what ``concsignals.django`` builds Django's ``receivers``
getter and setter on; these tests hold them to the core's rules.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

from concsignals import Signal, _registry, _replace
from concsignals._snapshot import DEAD, Route, receiver_getter, sender_getter


def make(tag: str, log: list[str] | None = None) -> Any:
    def r(**kwargs: Any) -> str:
        if log is not None:
            log.append(tag)
        return tag

    r.__qualname__ = f"r_{tag}"
    return r


class Sender:
    pass


def lock_held(signal: Signal) -> bool:
    """Whether this thread holds the signal's writer lock."""
    return bool(signal._lock._is_owned())  # type: ignore[attr-defined]


def replace(signal: Signal, wanted: list[_replace.Wanted]) -> None:
    """What a caller does: distinct() outside the lock, release after it."""
    wanted = _replace.distinct(wanted)
    released: list[object] = []
    with signal._lock:
        _replace.replace_locked(signal, wanted, released)
    released.clear()


def keep(conns: list[_replace.Connection]) -> list[_replace.Wanted]:
    """Each connection asked for again, as read (so its entry may be kept)."""
    return [
        _replace.Wanted(
            _registry.Request(
                c.key, c.uid, c.entry.get, c.entry.hold, c.entry.is_async
            ),
            c.entry.sender_get,
            c.entry,
        )
        for c in conns
    ]


def fresh(
    signal: Signal,
    receiver: Any,
    sender: object = None,
    uid: object = None,
    weak: bool = True,
) -> _replace.Wanted:
    get, hold = receiver_getter(receiver, weak, signal._notice)
    sget = None if sender is None else sender_getter(sender, signal._notice)
    key = _registry.lookup_key(receiver, sender, uid)
    return _replace.Wanted(_registry.Request(key, uid, get, hold, False), sget, None)


# -- connections ---------------------------------------------------------------


def test_connections_lists_live_ones_with_key_uid_and_sender_in_order() -> None:
    s = Signal()
    sender = Sender()
    a, b, c, gone = make("a"), make("b"), make("c"), make("gone")
    s.connect(a)
    s.connect(b, sender=sender)
    s.connect(gone)
    s.connect(c, dispatch_uid="uid-c")
    s.disconnect(gone)
    conns = _replace.connections(s._snapshot)
    assert [c.entry.get() for c in conns] == [a, b, c]
    assert [c.uid for c in conns] == [None, None, "uid-c"]
    assert conns[0].key == _registry.lookup_key(a, None, None)
    assert conns[1].key == _registry.lookup_key(b, sender, None)
    sget = conns[1].entry.sender_get
    assert sget is not None and sget() is sender


def test_connections_leaves_out_the_dead() -> None:
    s = Signal()
    a, dies = make("a"), make("dies")
    s.connect(dies)
    s.connect(a)
    del dies
    gc.collect()
    assert [c.entry.get() for c in _replace.connections(s._snapshot)] == [a]


def test_connections_gives_a_uid_with_user_eq_back() -> None:
    class Uid:
        def __eq__(self, other: object) -> bool:
            return isinstance(other, Uid)

        def __hash__(self) -> int:
            return 7

    s = Signal()
    uid, a = Uid(), make("a")
    s.connect(a, dispatch_uid=uid)
    (conn,) = _replace.connections(s._snapshot)
    assert conn.uid is uid


def test_connections_takes_no_lock() -> None:
    s = Signal()
    a = make("a")
    s.connect(a)
    held, done = threading.Event(), threading.Event()

    def writer() -> None:
        with s._lock:
            held.set()
            done.wait(30)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert held.wait(30)
        assert [c.entry.get() for c in _replace.connections(s._snapshot)] == [a]
    finally:
        done.set()
        t.join()


# -- replace -------------------------------------------------------------------


def test_replace_publishes_exactly_what_is_asked_in_order() -> None:
    s = Signal()
    sender = Sender()
    a, b, c = make("a"), make("b"), make("c")
    s.connect(a)
    replace(s, [fresh(s, c), fresh(s, b, sender=sender), fresh(s, a)])
    assert [r for r, _ in s.send(sender)] == [c, b, a]
    assert [r for r, _ in s.send(None)] == [c, a]
    assert s.receivers == [c, b, a]


def test_replace_keeps_a_current_entry_as_it_is() -> None:
    s = Signal()
    a, b = make("a"), make("b")
    s.connect(a)
    s.connect(b)
    before = [c.entry for c in _replace.connections(s._snapshot)]
    replace(s, keep(_replace.connections(s._snapshot)))
    after = [c.entry for c in _replace.connections(s._snapshot)]
    assert after == before  # the same objects: never retired
    assert all(e.get is not DEAD for e in after)


def test_replace_retires_what_it_drops_even_for_a_send_under_way() -> None:
    """Disconnect wins: once replace returns, a send iterating the old tuple
    does not call a dropped receiver."""
    s = Signal()
    log: list[str] = []
    b = make("b", log)

    def first(**kwargs: Any) -> None:
        log.append("first")
        replace(s, [])

    s.connect(first)
    s.connect(b)
    s.send(None)
    assert log == ["first"]
    assert s.send(None) == []


def test_replace_releases_a_strong_receiver_after_the_lock() -> None:
    s = Signal()
    under_lock: list[bool] = []

    class Strong:
        def __call__(self, **kwargs: Any) -> None:
            pass

        def __del__(self) -> None:
            under_lock.append(lock_held(s))

    s.connect(Strong(), weak=False)
    replace(s, [])
    assert under_lock == [False]


def test_replace_with_reordered_entries_sends_in_the_new_order() -> None:
    s = Signal()
    sender = Sender()
    a, b, c = make("a"), make("b"), make("c")
    s.connect(a)
    s.connect(b, sender=sender)
    s.connect(c, sender=sender)
    conns = _replace.connections(s._snapshot)
    replace(s, keep(conns[::-1]))
    assert [r for r, _ in s.send(sender)] == [c, b, a]
    assert [r for r, _ in s.send(None)] == [a]
    assert s.disconnect(b, sender=sender)
    assert [r for r, _ in s.send(sender)] == [c, a]


def test_replace_first_of_one_key_wins_and_user_eq_runs_outside_the_lock() -> None:
    s = Signal()
    under_lock: list[bool] = []

    class Uid:
        def __eq__(self, other: object) -> bool:
            under_lock.append(lock_held(s))
            return isinstance(other, Uid)

        def __hash__(self) -> int:
            return 1

    a, b = make("a"), make("b")
    replace(s, [fresh(s, a, uid=Uid()), fresh(s, b, uid=Uid()), fresh(s, a)])
    assert [r for r, _ in s.send(None)] == [a, a]  # b's uid == a's: a's first
    assert under_lock and not any(under_lock)


def test_replace_keeps_memory_flat() -> None:
    s = Signal()
    a, b = make("a"), make("b")
    s.connect(a)
    s.connect(b)
    for i in range(500):
        conns = _replace.connections(s._snapshot)
        replace(s, keep(conns) if i % 2 else [fresh(s, a), fresh(s, b)])
    st = s._snapshot.state
    assert (st.size, st.tombstones, len(st.index)) == (2, 0, 2)
    assert len(s._deaths) == 0
    assert [r for r, _ in s.send(None)] == [a, b]


def test_replace_then_connect_and_disconnect_as_usual() -> None:
    s = Signal()
    sender = Sender()
    a, b = make("a"), make("b")
    replace(s, [fresh(s, a, sender=sender)])
    s.connect(a, sender=sender)  # already connected: idempotent
    s.connect(b)
    assert [r for r, _ in s.send(sender)] == [a, b]
    assert s.disconnect(a, sender=sender)
    assert not s.disconnect(a, sender=sender)
    assert [r for r, _ in s.send(sender)] == [b]


# -- replacing every connection (Django's ``receivers = [...]``) --------------


def asked(sig: Signal, receiver: Any, get: Any = None) -> _replace.Wanted:
    """What ``replace_locked`` is to connect: ``receiver`` for any sender."""
    if get is None:
        get, _ = receiver_getter(receiver, True, sig._notice)
    key = _registry.lookup_key(receiver, None, None)
    return _replace.Wanted(_registry.Request(key, None, get, None, False), None, None)


def test_a_replacement_is_redone_on_top_of_a_write_nested_inside_it() -> None:
    """The publish check of ``replace_locked``: a write made while it
    prepares (as a ``__del__`` run by the collector would) makes it start
    again, and what it publishes is the replacement."""
    sig = Signal()

    def a(**kw: Any) -> None:
        pass

    def b(**kw: Any) -> None:
        pass

    get_a, _ = receiver_getter(a, True, sig._notice)
    nested: list[bool] = []

    def get_once() -> Any:  # the new entry's liveness check calls it
        if not nested:
            nested.append(True)
            sig.connect(b)  # the nested write
        return get_a()

    replace(sig, [asked(sig, a, get_once)])
    assert nested
    assert sig.receivers == [a]
    assert [r for r, _ in sig.send(None)] == [a]


def test_a_replacement_skips_one_that_died_and_connects_the_rest() -> None:
    sig = Signal()

    def a(**kw: Any) -> None:
        pass

    def b(**kw: Any) -> None:
        pass

    replace(sig, [asked(sig, a), asked(sig, b, DEAD), asked(sig, a)])
    replace(sig, [asked(sig, b, DEAD), asked(sig, a)])
    assert sig.receivers == [a]


def test_an_entrys_repr_names_its_kind_receiver_and_number() -> None:
    def r(sender: Any, **kw: Any) -> None:
        pass

    sig = Signal()
    sig.connect(r)
    (entry,) = sig._snapshot.lookup(None)
    assert repr(entry) == f"<Entry {r!r} seq={entry.seq}>"


def test_disconnecting_every_receiver_of_a_sender_drops_its_route() -> None:
    """A sender with several receivers of its own has a Route that counts
    them; the last disconnect drops it (it may hold the sender strongly)."""

    def a(sender: Any, **kw: Any) -> None:
        pass

    def b(sender: Any, **kw: Any) -> None:
        pass

    def c(sender: Any, **kw: Any) -> None:
        pass

    sig = Signal()
    s = "a sender that cannot be weakly referenced"
    for r in (a, b, c):
        sig.connect(r, sender=s)
    assert sig._snapshot.lookup(s) is sig._snapshot.lookup(s)
    assert sig.disconnect(a, sender=s)
    assert [e.get() for e in sig._snapshot.lookup(s)] == [b, c]
    assert sig.disconnect(b, sender=s)
    assert [e.get() for e in sig._snapshot.lookup(s)] == [c]
    assert sig._snapshot.state.routes  # c's route is left
    assert sig.disconnect(c, sender=s)
    assert sig._snapshot.state.routes == {}
    assert sig.send(s) == []


def assert_bookkeeping(sig: Signal) -> None:
    """The writers' counts, which decide compaction and the fast path, match
    the entries the state holds."""
    with sig._lock:
        st = sig._snapshot.state
        routes = list(st.routes.values())
        own = [e for r in routes for e in (r.own if isinstance(r, Route) else [r])]
        held = [*st.anylog, *own]
        connected = [e for e in held if e.get is not DEAD]
        assert st.size == len(held)
        assert st.live_own == sum(e.get is not DEAD for e in own)
        assert st.live_async == sum(e.is_async for e in connected)
        # Exact but for entries that died (not disconnected) in a route
        # dropped whole: those are subtracted too, and the count floors at 0.
        assert 0 <= st.tombstones <= len(held) - len(connected)
        for r in st.routes.values():
            if isinstance(r, Route):
                assert r.live == sum(e.get is not DEAD for e in r.own)


def test_the_writers_bookkeeping_matches_the_entries_after_every_write() -> None:
    """Connects, disconnects (of a sender's last receiver too), a uid
    replacement, async receivers, a death and a compaction, each followed
    by a recount; also checked after every step of the state machine."""

    class Sender:
        pass

    class Box:
        def method(self, sender: Any, **kw: Any) -> None:
            pass

    def a(sender: Any, **kw: Any) -> None:
        pass

    def b(sender: Any, **kw: Any) -> None:
        pass

    async def c(sender: Any, **kw: Any) -> None:
        pass

    sig = Signal()
    s, t = Sender(), Sender()
    boxes = [Box()]
    steps = [
        lambda: sig.connect(a),
        lambda: sig.connect(a, sender=s),
        lambda: sig.connect(b, sender=s),
        lambda: sig.connect(c, sender=s),
        lambda: sig.connect(b, sender=t),
        lambda: sig.connect(boxes[0].method),
        lambda: sig.connect(b, dispatch_uid="u"),
        lambda: sig.connect(c, dispatch_uid="u"),  # equal uid: no change
        lambda: sig.disconnect(a, sender=s),
        lambda: sig.disconnect(c, sender=s),
        lambda: sig.disconnect(b, sender=t),  # t's only receiver: route dropped
        lambda: sig.disconnect(b, sender=s),  # s's last: route dropped
        lambda: sig.connect(c),
        lambda: sig.disconnect(c),
        lambda: sig.disconnect(dispatch_uid="u"),
        lambda: sig.connect(a, sender=s),
    ]
    for step in steps:
        step()
        assert_bookkeeping(sig)
    boxes.clear()
    gc.collect()
    assert sig.receivers == [a, a]  # compacts the death
    assert_bookkeeping(sig)
    assert not sig._snapshot.has_async
    assert sig.disconnect(a, sender=s)
    assert_bookkeeping(sig)
    assert not sig._snapshot.has_async and not sig._snapshot.routed  # fast path
    boxes.append(Box())
    sig.connect(boxes[0].method)
    boxes.clear()
    gc.collect()
    assert sig.receivers == [a]  # compacts again, with no sender's route
    assert not sig._snapshot.has_async and not sig._snapshot.routed
