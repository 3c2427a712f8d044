"""The inline Signal: Django's API and semantics, one promise per test."""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
import sysconfig
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from concsignals import Signal, _registry, receiver
from tests.receivers import kills


def make_receiver(tag: object, log: list[Any] | None = None) -> Any:
    def r(sender: object, **kwargs: Any) -> object:
        if log is not None:
            log.append((tag, sender, kwargs))
        return tag

    r.__qualname__ = f"r_{tag}"
    return r


class Holder:
    def __init__(self, tag: object) -> None:
        self.tag = tag

    def method(self, sender: object, **kwargs: Any) -> object:
        return self.tag

    def __call__(self, sender: object, **kwargs: Any) -> object:
        return ("call", self.tag)


class Sender:
    pass


def stored(sig: Signal) -> list[Any]:
    """Every entry the signal's state holds, tombstones included."""
    st = sig._snapshot.state
    return [*st.anylog, *(e for r in st.routes.values() for e in r.own)]


# -- calling convention and results ------------------------------------------


def test_send_calls_receivers_in_connection_order_with_signal_sender_and_named():
    sig = Signal()
    log: list[Any] = []
    rs = [make_receiver(i, log) for i in range(5)]
    for r in rs:
        sig.connect(r)
    assert sig.send(sender="s", a=1, b=2) == [(r, i) for i, r in enumerate(rs)]
    assert log == [(i, "s", {"signal": sig, "a": 1, "b": 2}) for i in range(5)]


def test_no_keyword_is_reserved():
    sig = Signal()
    seen = []
    sig.connect(lambda sender, **kw: seen.append(kw), weak=False)
    named = {"self": 1, "executor": 2, "timeout": 3, "robust": 4, "named": 5}
    sig.send(sender=None, **named)
    sig.send_robust(sender=None, **named)
    sig.send(None, **named)  # sender positionally
    assert seen == [{"signal": sig, **named}] * 3


def test_send_with_no_receivers_returns_an_empty_list():
    assert Signal().send(sender=None) == []
    assert Signal().send_robust(sender=object()) == []


def test_send_propagates_the_first_error_and_calls_no_later_receiver():
    sig = Signal()
    log: list[Any] = []
    first = make_receiver(1, log)

    def boom(sender: object, **kwargs: Any) -> None:
        raise ValueError("boom")

    last = make_receiver(3, log)
    for r in (first, boom, last):
        sig.connect(r)
    with pytest.raises(ValueError, match="boom"):
        sig.send(sender=None)
    assert [t for t, *_ in log] == [1]


def test_send_robust_returns_errors_in_their_slots_with_tracebacks(caplog):
    sig = Signal()

    def boom(sender: object, **kwargs: Any) -> None:
        raise ValueError("boom")

    after = make_receiver("after")
    sig.connect(boom)
    sig.connect(after)
    with caplog.at_level(logging.ERROR, logger="concsignals"):
        result = sig.send_robust(sender=None)
    assert [r for r, _ in result] == [boom, after]
    err = result[0][1]
    assert isinstance(err, ValueError)
    assert err.__traceback__ is not None
    assert result[1][1] == "after"
    (record,) = caplog.records
    assert record.name == "concsignals"
    assert record.levelno == logging.ERROR
    assert record.msg == "Error calling %s in Signal.send_robust() (%s)"
    assert record.getMessage() == (
        "Error calling test_send_robust_returns_errors_in_their_slots_with_"
        "tracebacks.<locals>.boom in Signal.send_robust() (boom)"
    )
    assert record.exc_info is not None and record.exc_info[1] is err


def test_send_robust_never_catches_base_exceptions():
    class Stop(BaseException):
        pass

    sig = Signal()

    def stop(sender: object, **kwargs: Any) -> None:
        raise Stop

    sig.connect(stop)
    with pytest.raises(Stop):
        sig.send_robust(sender=None)


def test_send_robust_logs_callable_objects_without_qualname(caplog):
    class Failing:
        def __call__(self, sender: object, **kwargs: Any) -> None:
            raise RuntimeError("x")

    sig = Signal()
    obj = Failing()
    sig.connect(obj)
    with caplog.at_level(logging.ERROR, logger="concsignals"):
        [(r, err)] = sig.send_robust(sender=None)
    assert r is obj and isinstance(err, RuntimeError)
    assert repr(obj) in caplog.records[0].getMessage()


# -- connect: validation, idempotence, dispatch_uid ---------------------------


def test_refuses_a_receiver_that_is_not_callable_and_changes_nothing():
    sig = Signal()
    before = sig._snapshot
    with pytest.raises(TypeError, match=r"^Signal receivers must be callable\.$"):
        sig.connect(42)  # type: ignore[arg-type]
    assert sig._snapshot is before


def test_refuses_a_receiver_without_kwargs_and_changes_nothing():
    sig = Signal()
    before = sig._snapshot

    def no_kwargs(sender: object) -> None:
        pass

    with pytest.raises(
        ValueError,
        match=r"^Signal receivers must accept keyword arguments \(\*\*kwargs\)\.$",
    ):
        sig.connect(no_kwargs)
    assert sig._snapshot is before
    assert sig.receivers == []


def test_kwargs_are_checked_on_callable_objects_and_accepted_when_unreadable():
    """A callable object's ``__call__`` (read through ``inspect.signature``)
    must take ``**kwargs`` too; a builtin whose signature cannot be read is
    given the benefit of the doubt."""

    class NoKwargs:
        def __call__(self, sender: object) -> None:
            pass

    class Kwargs:
        def __call__(self, sender: object, **kwargs: Any) -> str:
            return "kwargs"

    sig = Signal()
    with pytest.raises(ValueError, match=r"must accept keyword arguments"):
        sig.connect(NoKwargs(), weak=False)
    sig.connect(ok := Kwargs(), weak=False)
    sig.connect(dict, weak=False)  # inspect reads no signature of dict
    assert [v for _, v in sig.send(sender="s")] == [
        "kwargs",
        {"signal": sig, "sender": "s"},
    ]
    del ok


def test_a_decorated_receiver_is_judged_by_the_function_it_wraps():
    """``functools.wraps`` sets ``__wrapped__``: the signature that counts is
    the wrapped function's (as ``inspect.signature`` reads it, and Django)."""
    import functools

    def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        return wrapper

    @logged
    def no_kwargs(sender: object) -> None:
        pass

    @logged
    def with_kwargs(sender: object, **kwargs: Any) -> str:
        return "wrapped"

    sig = Signal()
    with pytest.raises(ValueError, match=r"must accept keyword arguments"):
        sig.connect(no_kwargs)
    sig.connect(with_kwargs)
    assert [v for _, v in sig.send(sender=None)] == ["wrapped"]


def test_a_callable_with_a_self_attribute_but_no_func_is_weakly_held_as_itself():
    class Proxy:
        """Has ``__self__`` (as proxies do), but is no bound method."""

        __self__ = "somebody"

        def __call__(self, sender: object, **kwargs: Any) -> str:
            return "proxy"

    sig = Signal()
    sig.connect(proxy := Proxy())
    assert [v for _, v in sig.send(sender=None)] == ["proxy"]
    del proxy
    gc.collect()
    assert sig.receivers == []


def test_refuses_without_kwargs_even_when_weak_false_or_with_uid():
    sig = Signal()
    with pytest.raises(ValueError):
        sig.connect(lambda sender: None, weak=False, dispatch_uid="u")
    assert not sig.has_listeners()


def test_a_receiver_that_cannot_be_weakly_referenced_gets_a_clear_error():
    class Slotted:
        __slots__ = ()

        def __call__(self, sender: object, **kwargs: Any) -> str:
            return "slotted"

    sig = Signal()
    obj = Slotted()
    with pytest.raises(TypeError) as caught:
        sig.connect(obj)
    assert str(caught.value) == (
        f"receiver {obj!r} cannot be weakly referenced; "
        "connect it with weak=False to hold it strongly"
    )
    assert sig.receivers == []
    sig.connect(obj, weak=False)
    assert sig.send(sender=None) == [(obj, "slotted")]


def test_connect_is_idempotent_per_receiver_and_sender():
    sig = Signal()
    r = make_receiver("r")
    s1, s2 = Sender(), Sender()
    for _ in range(3):
        sig.connect(r)
        sig.connect(r, sender=s1)
        sig.connect(r, sender=s2)
    assert sig.send(sender=None) == [(r, "r")]
    assert sig.send(sender=s1) == [(r, "r"), (r, "r")]
    assert len(stored(sig)) == 3


def test_connect_is_idempotent_per_dispatch_uid():
    sig = Signal()
    a, b = make_receiver("a"), make_receiver("b")
    sig.connect(a, dispatch_uid="uid")
    sig.connect(b, dispatch_uid="uid")
    assert sig.send(sender=None) == [(a, "a")]
    assert sig.disconnect(dispatch_uid="uid")
    assert sig.send(sender=None) == []


def test_bound_methods_are_one_receiver_however_often_they_are_looked_up():
    sig = Signal()
    h = Holder("h")
    sig.connect(h.method)
    sig.connect(h.method)
    assert [resp for _, resp in sig.send(sender=None)] == ["h"]
    assert sig.disconnect(h.method)
    assert sig.send(sender=None) == []


# -- disconnect ----------------------------------------------------------------


def test_disconnect_returns_whether_something_was_connected():
    sig = Signal()
    r = make_receiver("r")
    assert sig.disconnect(r) is False
    sig.connect(r)
    assert sig.disconnect(r) is True
    assert sig.disconnect(r) is False
    assert sig.send(sender=None) == []


def test_disconnect_matches_the_sender_it_was_connected_for():
    sig = Signal()
    r = make_receiver("r")
    s = Sender()
    sig.connect(r, sender=s)
    assert sig.disconnect(r) is False  # connected for s, not for any sender
    assert sig.send(sender=s) == [(r, "r")]
    assert sig.disconnect(r, sender=s) is True
    assert sig.send(sender=s) == []


def test_disconnect_without_receiver_or_uid_is_false():
    sig = Signal()
    sig.connect(make_receiver("r"), weak=False)
    assert sig.disconnect() is False
    assert len(sig.receivers) == 1


def test_reconnect_after_disconnect_goes_last():
    sig = Signal()
    a, b = make_receiver("a"), make_receiver("b")
    sig.connect(a)
    sig.connect(b)
    sig.disconnect(a)
    sig.connect(a)
    assert [resp for _, resp in sig.send(sender=None)] == ["b", "a"]


# -- senders -------------------------------------------------------------------


def test_sender_filtering_merges_specific_and_any_sender_in_connection_order():
    sig = Signal()
    s, other = Sender(), Sender()
    rs = [make_receiver(i) for i in range(6)]
    for i, r in enumerate(rs):
        sig.connect(r, sender=None if i % 2 else s)
    sig.connect(make_receiver("other"), sender=other, weak=False)
    assert [t for _, t in sig.send(sender=s)] == [0, 1, 2, 3, 4, 5]
    assert [t for _, t in sig.send(sender=None)] == [1, 3, 5]
    assert [t for _, t in sig.send(sender=Sender())] == [1, 3, 5]
    assert [t for _, t in sig.send(sender=other)] == [1, 3, 5, "other"]


def test_non_weakrefable_senders_are_matched_by_identity():
    sig = Signal()
    r = make_receiver("r")
    key = "sender-string"
    sig.connect(r, sender=key)
    sig.connect(r, sender=7)
    assert sig.send(sender=key) == [(r, "r")]
    assert sig.send(sender=7) == [(r, "r")]
    assert sig.send(sender="another") == []
    assert sig.send(sender=8) == []


def test_a_non_weakrefable_sender_is_held_only_while_connected():
    class Plain:
        __slots__ = ()  # no __weakref__

    sig = Signal()
    s = Plain()
    r = make_receiver("r")
    base = len(gc.get_referrers(s))
    sig.connect(r, sender=s)
    assert len(gc.get_referrers(s)) > base
    assert sig.send(sender=s) == [(r, "r")]
    sig.disconnect(r, sender=s)
    gc.collect()
    assert len(gc.get_referrers(s)) == base
    assert sig._snapshot.state.routes == {}


@pytest.mark.parametrize("use_caching", [False, True])
def test_the_signal_never_keeps_a_sender_alive(use_caching):
    sig = Signal(use_caching=use_caching)
    s = Sender()
    ref = weakref.ref(s)
    sig.connect(make_receiver("r"), sender=s, weak=False)
    sig.connect(make_receiver("any"), weak=False)
    sig.send(sender=s)
    sig.send_robust(sender=s)
    assert sig.has_listeners(s)
    del s
    gc.collect()
    assert ref() is None


def new_object_reusing_id(
    cls: Callable[[], Any], target_id: int, tries: int = 10_000
) -> Any:
    keep = []
    for _ in range(tries):
        obj = cls()
        if id(obj) == target_id:
            return obj
        keep.append(obj)
    pytest.skip("the allocator did not reuse the id in time")


def test_a_dead_senders_receivers_never_reach_an_object_that_reuses_its_id():
    sig = Signal()
    calls: list[Any] = []
    r = make_receiver("for-dead-sender", calls)
    s = Sender()
    sig.connect(r, sender=s)
    old_id = id(s)
    del s  # freed at once: no cycle
    newcomer = new_object_reusing_id(Sender, old_id)
    assert sig.send(sender=newcomer) == []
    assert not sig.has_listeners(newcomer)
    # Connecting for the newcomer prunes the stale route and starts afresh.
    sig.connect(r, sender=newcomer)
    assert sig.send(sender=newcomer) == [(r, "for-dead-sender")]
    assert len(stored(sig)) == 1


def test_id_reuse_is_safe_even_before_the_death_is_noticed():
    sig = Signal()
    r = make_receiver("r")
    s = Sender()
    sig.connect(r, sender=s)
    old_id = id(s)
    del s
    sig._deaths.clear()  # as if the weakref callback had not run yet
    newcomer = new_object_reusing_id(Sender, old_id)
    assert sig.send(sender=newcomer) == []
    assert sig.disconnect(r, sender=newcomer) is False
    sig.connect(r, sender=newcomer)
    assert sig.send(sender=newcomer) == [(r, "r")]


# -- weak and strong receivers ---------------------------------------------------


def test_weak_function_receivers_do_not_keep_their_target_alive():
    sig = Signal()
    r = make_receiver("r")
    ref = weakref.ref(r)
    sig.connect(r)
    del r
    gc.collect()
    assert ref() is None
    assert sig.send(sender=None) == []
    assert sig.receivers == []


def test_weak_bound_method_receivers_do_not_keep_their_object_alive():
    sig = Signal()
    h = Holder("h")
    ref = weakref.ref(h)
    sig.connect(h.method)
    assert [t for _, t in sig.send(sender=None)] == ["h"]
    del h
    gc.collect()
    assert ref() is None
    assert sig.send(sender=None) == []


def test_weak_callable_objects_do_not_stay_alive():
    sig = Signal()
    h = Holder("h")
    ref = weakref.ref(h)
    sig.connect(h)
    assert sig.send(sender=None) == [(h, ("call", "h"))]
    del h
    gc.collect()
    assert ref() is None
    assert not sig.has_listeners()


def test_strong_receivers_are_kept_alive():
    sig = Signal()
    sig.connect(make_receiver("strong"), weak=False)
    sig.connect(Holder("obj").method, weak=False)
    gc.collect()
    assert [t for _, t in sig.send(sender=None)] == ["strong", "obj"]


def test_a_disconnected_strong_receiver_is_released_even_while_sends_run():
    """A send in flight holds the old snapshot; it must not hold the receiver."""
    sig = Signal()
    h = Holder("strong")
    ref = weakref.ref(h)
    sig.connect(h, weak=False)
    del h
    in_flight = sig._snapshot  # what a send under way holds
    assert sig.disconnect(ref())
    gc.collect()
    assert ref() is None
    assert in_flight.state.anylog[0].get() is None


def test_dead_entries_are_compacted_by_a_write_once_they_pass_half():
    sig = Signal()
    keep = [make_receiver(("keep", i)) for i in range(40)]
    doomed = [make_receiver(i) for i in range(60)]
    for r in [*keep, *doomed]:
        sig.connect(r)
    del doomed, r
    gc.collect()
    assert len(sig._deaths) == 60
    assert len(stored(sig)) == 100  # deaths alone change nothing
    sig.connect(make_receiver("late"), weak=False)
    assert len(stored(sig)) == 41
    assert len(sig._deaths) == 0
    expected = [*(("keep", i) for i in range(40)), "late"]
    assert [t for _, t in sig.send(sender=None)] == expected


def test_disconnect_churn_is_compacted_and_memory_stays_flat():
    sig = Signal()
    keep = [make_receiver(i) for i in range(10)]
    for r in keep:
        sig.connect(r)
    churn = make_receiver("churn")
    for _ in range(1000):
        sig.connect(churn)
        sig.disconnect(churn)
        assert len(stored(sig)) <= 2 * (len(keep) + 1) + 16
    assert [t for _, t in sig.send(sender=None)] == list(range(10))


def test_a_send_that_meets_a_dead_receiver_does_not_compact():
    """Cleanup is the writers' (amortised); a send only refreshes its tuple."""
    sig = Signal()
    live = [make_receiver(i) for i in range(100)]
    for r in live:
        sig.connect(r)
    dead = make_receiver("dead")
    sig.connect(dead)
    assert len(sig.send(sender=None)) == 100 + 1  # builds the cached tuple
    cached = sig._snapshot.inline
    assert cached is not None and len(cached) == 101
    del dead
    gc.collect()
    assert len(sig.send(sender=None)) == 100  # meets the dead entry
    assert len(stored(sig)) == 101  # nothing was compacted ...
    assert sig._snapshot.inline is None  # ... but the next send rebuilds
    assert len(sig.send(sender=None)) == 100
    assert len(sig._snapshot.inline) == 100
    assert len(stored(sig)) == 101


def test_the_death_of_a_weak_receiver_never_blocks_on_the_writer_lock():
    """Weak-reference callbacks may run while another thread is mid-write."""
    sig = Signal()
    r = make_receiver("r")
    sig.connect(r)
    holding, release = threading.Event(), threading.Event()

    def writer_mid_update() -> None:
        with sig._lock:
            holding.set()
            release.wait(30)

    t = threading.Thread(target=writer_mid_update)
    t.start()
    try:
        assert holding.wait(10)
        del r  # the receiver dies in this thread: its callback must not block
        gc.collect()
        assert sig.send(sender=None) == []  # nor may a send, or a read
        assert sig.receivers == []
        assert not sig.has_listeners()
    finally:
        release.set()
        t.join(10)
    sig.connect(make_receiver("later"), weak=False)  # the next write prunes
    assert [t for _, t in sig.send(sender=None)] == ["later"]


def test_a_del_that_writes_from_inside_disconnect_does_not_deadlock():
    """Disconnecting the last holder of a strong receiver frees it under the
    writer lock; its __del__ then writes to the same signal, in this thread."""
    sig = Signal()
    late = make_receiver("late")

    class Owner:
        def __call__(self, sender: object, **kwargs: Any) -> str:
            return "owner"

        def __del__(self) -> None:
            sig.connect(late, weak=False)

    sig.connect(Owner(), weak=False, dispatch_uid="owner")  # only the signal holds it
    assert [t for _, t in sig.send(sender=None)] == ["owner"]
    assert sig.disconnect(dispatch_uid="owner")
    assert sig.send(sender=None) == [(late, "late")]


class Blob:
    """A container: the free-threaded collector counts its allocation."""


#: A free-threaded thread adds its pending allocation count to the
#: collector's total when it reaches this many (CPython 3.13's
#: LOCAL_ALLOC_COUNT_THRESHOLD); only then may it schedule a collection.
FLUSH_EVERY = 512


def short_of_a_flush(x: int, keep: list[Blob]) -> None:
    """Free-threaded build: leave this thread's pending count ``x`` short of
    its next flush, and the total above the threshold.

    ``gc.get_count()`` adds this thread's pending count to the total and
    zeroes it (3.13t): what this thread allocates after it is known, and
    other threads cannot change it.
    """
    gc.get_count()
    while gc.get_count()[0] < FLUSH_EVERY:  # the total, raised if need be
        for _ in range(64):
            keep.append(Blob())
    for _ in range(FLUSH_EVERY - x):
        keep.append(Blob())


def test_a_write_by_the_garbage_collector_during_a_write_is_not_lost():
    """The collector may run user code (here a gc callback, as a __del__ of
    cyclic garbage would) while this thread is mid-connect, under the lock:
    after the write read the current snapshot, before it publishes its own."""
    sig = Signal()
    nested = make_receiver("nested")
    armed = [True]
    errors: list[BaseException] = []

    def lock_is_held() -> bool:
        lock = sig._lock
        return lock._is_owned() if hasattr(lock, "_is_owned") else lock.locked()

    def mid_write() -> bool:
        frame = sys._getframe(2)  # where the collection started, or above
        while (
            frame is not None and frame.f_code is not _registry.connect_locked.__code__
        ):
            frame = frame.f_back
        return frame is not None and frame.f_locals.get("base") is sig._snapshot

    def during_collection(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and armed[0] and lock_is_held() and mid_write():
            armed[0] = False
            try:
                sig.connect(nested, weak=False)
            except BaseException as err:
                errors.append(err)

    # Making the collector start mid-connect, under the lock.  A GIL build
    # counts allocations: threshold 1 collects on (almost) every one.  The
    # free-threaded build counts *net* allocations (frees subtract), per
    # thread, and adds a thread's count to the total only when it reaches
    # FLUSH_EVERY; a collection is then scheduled if the total passes the
    # threshold (not scaled with the heap when generation 1's threshold is
    # 0), and starts at the thread's next eval-breaker check (a call, a
    # backward jump).  So there each connect starts x short of a flush, for
    # x = 1, 2, 3, ...: the flush, and the collection, move through connect's
    # allocations one at a time, and reach those of the write itself (Entry
    # and Snapshot are made there, and their __init__ checks the eval
    # breaker).  A collection that starts anywhere else (before the lock, or
    # under it before the write read the snapshot) does not count.  The
    # total must pass the threshold at that flush: a collection zeroes it and
    # then subtracts each object it frees, so after one that freed a test
    # suite's garbage it sat thousands below (the test then skipped, its
    # collector never starting inside connect).  short_of_a_flush raises it;
    # starting from a collection that freed nothing keeps that short.  (Other
    # threads share the total: one that allocates and frees without pause,
    # its own collections zeroing the total, can keep this from working; the
    # test then fails, as it does on any build where no try works.)
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    outer = [make_receiver(("outer", i)) for i in range(300)]
    kept: list[Blob] = []
    done = 0
    for _ in range(10):
        if not gc.collect():
            break
    old = gc.get_threshold()
    gc.callbacks.append(during_collection)
    gc.set_threshold(1, 0, 0) if free_threaded else gc.set_threshold(1, 1, 1)
    try:
        for r in outer:
            if free_threaded:
                short_of_a_flush(1 + done % 100, kept)
            sig.connect(r, weak=False)
            done += 1
            if not armed[0]:
                break
    finally:
        gc.set_threshold(*old)
        gc.callbacks.remove(during_collection)
    assert errors == []
    assert not armed[0], f"no collection started mid-write in {done} connects"
    connected = sig.receivers
    assert nested in connected  # the nested write survived the outer one
    # ... and so did the outer one: every connect that returned is seen.
    assert [r for r in connected if r is not nested] == outer[:done]


# -- has_listeners and receivers ----------------------------------------------


def test_has_listeners_follows_django():
    sig = Signal()
    s = Sender()
    assert not sig.has_listeners()
    r = make_receiver("r")
    sig.connect(r, sender=s)
    assert not sig.has_listeners()  # only for s
    assert sig.has_listeners(s)
    sig.connect(r)
    assert sig.has_listeners()
    assert sig.has_listeners(Sender())


def test_receivers_lists_live_receivers_in_connection_order():
    sig = Signal()
    a, b = make_receiver("a"), make_receiver("b")
    h = Holder("h")
    sig.connect(a)
    sig.connect(h.method, sender=Sender)
    sig.connect(b, weak=False)
    assert sig.receivers == [a, h.method, b]
    del h
    gc.collect()
    assert sig.receivers == [a, b]
    assert isinstance(sig.receivers, list)


# -- reentrancy ----------------------------------------------------------------


def test_a_receiver_disconnected_by_an_earlier_one_is_not_called():
    sig = Signal()
    log: list[Any] = []
    later = make_receiver("later", log)

    def disconnects_later(sender: object, **kwargs: Any) -> str:
        sig.disconnect(later)
        return "first"

    sig.connect(disconnects_later)
    sig.connect(later)
    assert sig.send(sender=None) == [(disconnects_later, "first")]
    assert log == []


def test_a_receiver_that_disconnects_itself_does_not_disturb_the_send():
    sig = Signal()
    log: list[Any] = []
    a = make_receiver("a", log)

    def once(sender: object, **kwargs: Any) -> str:
        sig.disconnect(once)
        return "once"

    b = make_receiver("b", log)
    for r in (a, once, b):
        sig.connect(r)
    assert [t for _, t in sig.send(sender=None)] == ["a", "once", "b"]
    assert [t for _, t in sig.send(sender=None)] == ["a", "b"]


def test_a_receiver_connected_during_a_send_is_called_from_the_next_send():
    sig = Signal()
    late = make_receiver("late")

    def connects(sender: object, **kwargs: Any) -> str:
        sig.connect(late)
        return "connects"

    sig.connect(connects)
    assert [t for _, t in sig.send(sender=None)] == ["connects"]
    assert [t for _, t in sig.send(sender=None)] == ["connects", "late"]


def test_receivers_may_send_from_inside_a_send():
    sig, other = Signal(), Signal()
    other.connect(make_receiver("inner"), weak=False)

    def nested(sender: object, depth: int = 0, **kwargs: Any) -> object:
        if depth < 3:
            return sig.send(sender=sender, depth=depth + 1)[0][1]
        return other.send(sender=sender)[0][1]

    sig.connect(nested)
    assert sig.send(sender=None) == [(nested, "inner")]


def test_a_weak_receiver_that_dies_mid_send_is_skipped_without_reference_error():
    sig = Signal()
    holders = {"victim": Holder("victim")}

    def killer(sender: object, **kwargs: Any) -> str:
        holders.clear()
        gc.collect()
        return "killer"

    sig.connect(killer)
    sig.connect(holders["victim"].method)
    assert sig.send(sender=None) == [(killer, "killer")]


# -- scale: a send costs O(receivers called) -------------------------------------


def test_a_send_reads_only_its_senders_route():
    sig = Signal()
    senders = [Sender() for _ in range(10_000)]
    r = make_receiver("r")
    for s in senders:
        sig.connect(r, sender=s)
    target = senders[1234]
    route = sig._snapshot.state.routes[id(target)]
    assert sig._snapshot.lookup(target) == tuple(route.own)
    assert len(sig._snapshot.lookup(target)) == 1
    assert sig.send(sender=target) == [(r, "r")]


# -- the receiver decorator ------------------------------------------------------


def test_receiver_decorator_connects_and_returns_the_function():
    sig = Signal()
    s = Sender()

    @receiver(sig, sender=s, dispatch_uid="uid")
    def handler(sender: object, **kwargs: Any) -> str:
        return "handled"

    assert sig.send(sender=s) == [(handler, "handled")]
    assert sig.send(sender=None) == []
    assert callable(handler)


def test_receiver_decorator_accepts_a_list_of_signals():
    a, b = Signal(), Signal()

    @receiver([a, b])
    def handler(sender: object, **kwargs: Any) -> object:
        return kwargs["signal"]

    assert a.send(sender=None) == [(handler, a)]
    assert b.send(sender=None) == [(handler, b)]


def test_receiver_decorator_connects_nothing_when_refused():
    a, b = Signal(), Signal()
    with pytest.raises(ValueError):

        @receiver([a, b])
        def handler(sender: object) -> None:
            pass

    with pytest.raises(TypeError, match="needs Signal objects"):
        receiver([a, "not a signal"])  # type: ignore[list-item]
    assert a.receivers == [] and b.receivers == []


# -- snapshots stay what they were ------------------------------------------------


def test_an_old_snapshot_never_sees_later_connections():
    """Writes append to lists an old snapshot shares; its bounds hide them."""
    sig = Signal()
    s = Sender()
    a, b, c, d = (make_receiver(t) for t in "abcd")
    sig.connect(a)
    sig.connect(b, sender=s)
    old = sig._snapshot
    assert [e.get() for e in old.lookup(s)] == [a, b]
    sig.connect(c, sender=s)  # b's single-entry route becomes a Route of two
    sig.connect(d)
    t = Sender()
    sig.connect(c, sender=t)  # t's first connection: a single-entry route
    assert [e.get() for e in old.lookup(s)] == [a, b]
    assert [e.get() for e in old.lookup(t)] == [a]
    assert [e.get() for e in old.lookup(None)] == [a]
    assert [e.get() for e in sig._snapshot.lookup(s)] == [a, b, c, d]
    assert [r for r, _ in sig.send(sender=s)] == [a, b, c, d]


def test_an_old_snapshot_hides_a_senders_first_and_third_connections_after_it():
    """The very next connection after a snapshot (connection number == its
    bound) is a new sender's first; a sender with two connections gets a
    third.  The old snapshot sees neither; each sender's merged tuple is
    built once per snapshot."""
    sig = Signal()
    s, t = Sender(), Sender()
    a, b, c, d, e = (make_receiver(x) for x in "abcde")
    sig.connect(a)
    sig.connect(b, sender=s)
    sig.connect(c, sender=s)
    old = sig._snapshot
    sig.connect(d, sender=t)  # the next connection: t's first
    sig.connect(e, sender=s)  # s's third
    assert [x.get() for x in old.lookup(t)] == [a]
    assert [x.get() for x in old.lookup(s)] == [a, b, c]
    new = sig._snapshot
    assert [x.get() for x in new.lookup(t)] == [a, d]
    assert [x.get() for x in new.lookup(s)] == [a, b, c, e]
    assert new.lookup(s) is new.lookup(s) and new.lookup(t) is new.lookup(t)


class Owner:
    def method(self) -> None:
        pass


def test_a_strong_receiver_of_a_dead_bound_method_sender_is_released():
    """A bound method as the sender is held weakly (``WeakMethod``); its death
    is reported like any sender's, and what was connected for it goes."""
    sig, log = Signal(), []
    owner = Owner()
    sig.connect(Finalized(sig, log), sender=owner.method, weak=False)
    del owner
    gc.collect()
    assert sig.receivers == []  # compacts the reported death
    gc.collect()
    assert log == [False]


def test_a_new_signals_first_snapshot_sees_none_of_its_first_connections():
    sig = Signal()
    empty = sig._snapshot
    s = Sender()
    sig.connect(a := make_receiver("a"))
    sig.connect(b := make_receiver("b"), sender=s)
    assert empty.lookup(None) == () and empty.lookup(s) == ()
    first = sig._snapshot  # its any-sender tuple is not built yet
    sig.connect(make_receiver("c"))
    assert [e.get() for e in first.lookup(None)] == [a]
    assert [e.get() for e in first.lookup(s)] == [a, b]


def test_a_signal_does_not_ask_for_caching_by_default():
    """As Django's: ``use_caching`` is False unless asked for."""
    assert Signal().use_caching is False
    assert Signal(use_caching=True).use_caching is True


def test_a_disconnect_keeps_the_senders_merged_order():
    sig = Signal()
    s = Sender()
    rs = [make_receiver(i) for i in range(6)]
    for i, r in enumerate(rs):
        sig.connect(r, sender=s if i % 2 else None)
    assert [t for _, t in sig.send(sender=s)] == [0, 1, 2, 3, 4, 5]
    sig.disconnect(rs[3], sender=s)
    sig.disconnect(rs[2])
    assert [t for _, t in sig.send(sender=s)] == [0, 1, 4, 5]
    assert [t for _, t in sig.send(sender=None)] == [0, 4]


# -- bound-method senders (Django parity) ------------------------------------------


def test_a_bound_method_sender_is_its_object_and_function():
    sig = Signal()
    h, other = Holder("h"), Holder("other")
    r = make_receiver("r")
    sig.connect(r, sender=h.method)  # each access makes a new method object
    assert sig.send(sender=h.method) == [(r, "r")]
    assert sig.has_listeners(h.method)
    assert sig.send(sender=other.method) == []
    assert sig.send(sender=h.__call__) == []
    assert sig.send(sender=h) == []
    sig.connect(r, sender=h.method)  # idempotent
    assert sig.send(sender=h.method) == [(r, "r")]
    assert sig.disconnect(r, sender=h.method)
    assert sig.send(sender=h.method) == []


def test_a_bound_method_sender_is_not_kept_alive_nor_reached_by_id_reuse():
    sig = Signal()
    r = make_receiver("r")
    h = Holder("h")
    alive = weakref.ref(h)
    sig.connect(r, sender=h.method)
    old_id = id(h)
    del h
    gc.collect()
    assert alive() is None
    newcomer = new_object_reusing_id(lambda: Holder("new"), old_id)
    assert sig.send(sender=newcomer.method) == []
    assert not sig.has_listeners(newcomer.method)


# -- no user code under the writer lock ---------------------------------------------


def lock_held(sig: Signal) -> bool:
    lock = sig._lock
    return bool(lock._is_owned()) if hasattr(lock, "_is_owned") else lock.locked()


class Finalized:
    """A strong receiver that records, when it is freed, whether its signal's
    writer lock was held by the freeing thread."""

    def __init__(self, sig: Signal, log: list[bool]) -> None:
        self.sig, self.log = sig, log

    def __call__(self, sender: object, **kwargs: Any) -> str:
        return "finalized"

    def __del__(self) -> None:
        self.log.append(lock_held(self.sig))


def test_a_strong_receiver_is_freed_after_disconnect_releases_the_lock():
    sig, log = Signal(), []
    sig.connect(Finalized(sig, log), weak=False, dispatch_uid="f")
    assert sig.disconnect(dispatch_uid="f")
    assert log == [False]


def test_a_strong_receiver_of_a_dead_sender_is_freed_outside_the_lock():
    """Compaction drops it (its sender died); the old state goes after the lock."""
    sig, log = Signal(), []
    for _ in range(40):
        sig.connect(Finalized(sig, log), sender=Sender(), weak=False)
    for _ in range(40):
        sig.connect(make_receiver("x"), weak=False)
    gc.collect()
    assert len(log) >= 20
    assert not any(log)


def test_a_strong_receiver_replaced_at_connect_is_freed_outside_the_lock():
    sig, log = Signal(), []
    s = Sender()
    sig.connect(Finalized(sig, log), sender=s, weak=False, dispatch_uid="u")
    old_id = id(s)
    del s  # its entry is dead; a newcomer with its id gets the same key
    newcomer = new_object_reusing_id(Sender, old_id)
    sig._deaths.clear()  # no compaction first: the connect replaces the entry
    sig.connect(make_receiver("new"), sender=newcomer, weak=False, dispatch_uid="u")
    gc.collect()
    assert log == [False]
    assert [t for _, t in sig.send(sender=newcomer)] == ["new"]


@pytest.mark.parametrize("in_tuple", [False, True], ids=["uid", "tuple-with-uid"])
def test_a_dispatch_uid_is_hashed_and_compared_outside_the_lock(in_tuple: bool):
    """Also inside a tuple: a tuple's hash and == run its items' own."""
    sig = Signal()
    calls: list[tuple[str, bool]] = []

    class Uid:
        def __init__(self, name: str) -> None:
            self.name = name

        def __hash__(self) -> int:
            calls.append(("hash", lock_held(sig)))
            return 42  # all collide: every lookup must compare

        def __eq__(self, other: object) -> bool:
            calls.append(("eq", lock_held(sig)))
            return isinstance(other, Uid) and other.name == self.name

    def uid(name: str) -> object:
        return ("in", Uid(name)) if in_tuple else Uid(name)

    a, b = make_receiver("a"), make_receiver("b")
    sig.connect(a, dispatch_uid=uid("x"))
    sig.connect(b, dispatch_uid=uid("x"))  # equal uid: already connected
    sig.connect(b, dispatch_uid=uid("y"))
    assert [t for _, t in sig.send(sender=None)] == ["a", "b"]
    assert sig.disconnect(dispatch_uid=uid("x"))
    assert not sig.disconnect(dispatch_uid=uid("x"))
    assert [t for _, t in sig.send(sender=None)] == ["b"]
    assert ("eq", False) in calls and ("hash", False) in calls
    assert ("eq", True) not in calls and ("hash", True) not in calls


@pytest.mark.parametrize("write", ["connect", "disconnect"])
def test_a_uid_bucket_changed_while_its_uids_were_compared_is_compared_again(
    write: str,
) -> None:
    """A write compares ``dispatch_uid``s outside the lock, then checks under
    it that the bucket it compared is still the one connected.  Here another
    write changes the bucket in between (from ``__eq__`` itself, so the
    interleaving is exact): the first write compares again, and neither
    write is lost."""
    sig = Signal()
    hook: list[Callable[[], None]] = []

    class Uid:
        def __init__(self, name: str) -> None:
            self.name = name

        def __hash__(self) -> int:
            return 42  # all in one bucket

        def __eq__(self, other: object) -> bool:
            while hook:
                hook.pop()()  # once, between the compare and the lock
            return isinstance(other, Uid) and other.name == self.name

    a, b, c = make_receiver("a"), make_receiver("b"), make_receiver("c")
    sig.connect(a, dispatch_uid=Uid("a"))
    sig.connect(c, dispatch_uid=Uid("c"))
    hook.append(lambda: sig.connect(b, dispatch_uid=Uid("b")))
    if write == "connect":
        sig.connect(make_receiver("d"), weak=False, dispatch_uid=Uid("d"))
        expected = ["a", "c", "b", "d"]
    else:
        assert sig.disconnect(dispatch_uid=Uid("c"))
        expected = ["a", "b"]
    assert [t for _, t in sig.send(sender=None)] == expected
    # The index agrees with what is sent: each uid is found and disconnects.
    for name in expected:
        assert sig.disconnect(dispatch_uid=Uid(name)), name
    assert sig.send(sender=None) == []


@pytest.mark.timeout(60)
def test_two_signals_torn_down_in_opposite_order_from_two_threads_complete():
    """A's strong receiver, when freed, disconnects from B; B's from A.  Two
    threads disconnect them at once.  With a finalizer run under the writer
    lock, each thread would hold its signal's lock and wait for the other's.

    Each thread makes and connects its own signal's owner: on 3.13t an object
    freed by a thread other than the one that made it is finalized later, by
    its maker (biased reference counting), and the two finalizers would not
    meet.  Seen so: the main thread made both, and the check below ran before
    their finalizers."""
    a, b = Signal(), Signal()
    both_inside = threading.Barrier(2, timeout=5)
    connected = threading.Barrier(2, timeout=5)
    finalized_in: dict[str, str] = {}

    class Owner:
        def __init__(self, other: Signal, uid: str) -> None:
            self.other, self.uid = other, uid

        def __call__(self, sender: object, **kwargs: Any) -> None:
            pass

        def __del__(self) -> None:
            finalized_in[self.uid] = threading.current_thread().name
            with contextlib.suppress(threading.BrokenBarrierError):
                both_inside.wait()
            self.other.disconnect(dispatch_uid=self.uid)

    def tear_down(sig: Signal, other: Signal, uid: str) -> None:
        sig.connect(Owner(other, uid), weak=False, dispatch_uid="owner")
        connected.wait()
        sig.disconnect(dispatch_uid="owner")

    a.connect(make_receiver("a-side"), weak=False, dispatch_uid="a-side")
    b.connect(make_receiver("b-side"), weak=False, dispatch_uid="b-side")
    threads = [
        threading.Thread(target=tear_down, args=(a, b, "b-side"), name="tears-a"),
        threading.Thread(target=tear_down, args=(b, a, "a-side"), name="tears-b"),
    ]
    for t in threads:
        t.daemon = True  # if they deadlock, let the test process still exit
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads), "deadlock"
    # Each finalizer ran in its tearing thread, so the two could meet.
    assert finalized_in == {"b-side": "tears-a", "a-side": "tears-b"}
    assert a.receivers == [] and b.receivers == []


# -- a snapshot refreshed after a send met a dead receiver -------------------------


def test_a_refreshed_snapshot_keeps_the_senders_own_receivers() -> None:
    """A send meets a receiver that died during it and has later sends
    rebuild their tuples: the receivers connected for one sender stay."""

    class Shop:
        pass

    sig = Signal()
    holder = [Holder("victim")]
    sig.connect(kill := kills(holder))
    sig.connect(holder[0].method)  # any sender, weak
    own = Holder("own")
    sig.connect(own.method, sender=Shop)
    before = sig._snapshot
    assert [v for _, v in sig.send(Shop)] == ["killer", "own"]
    assert sig._snapshot is not before  # refreshed
    assert [v for _, v in sig.send(Shop)] == ["killer", "own"]
    del kill


class SendsSeen:
    """A monitor that only keeps the sends it saw begin."""

    def __init__(self) -> None:
        self.sends: list[Any] = []

    def send_began(self, send: Any) -> None:
        self.sends.append(send)


def test_a_refreshed_snapshot_keeps_knowing_its_async_receivers() -> None:
    """The refresh comes from a monitored send_robust for a sender without
    async receivers; a later send for the sender that has one still awaits
    it (not calls it as a sync receiver)."""
    from concsignals import monitoring

    class Shop:
        pass

    class Other:
        pass

    async def awaited(signal: Any, sender: Any, **kw: Any) -> str:
        return "awaited"

    sig = Signal()
    holder = [Holder("victim")]
    sig.connect(kill := kills(holder), sender=Shop)
    sig.connect(holder[0].method, sender=Shop)
    sig.connect(awaited, sender=Other)
    quiet = SendsSeen()
    monitoring.install(quiet)
    try:
        before = sig._snapshot
        assert [v for _, v in sig.send_robust(Shop)] == ["killer"]
        assert sig._snapshot is not before  # refreshed
    finally:
        monitoring.uninstall(quiet)
    assert [v for _, v in sig.send(Other)] == ["awaited"]
    del kill


@pytest.mark.timeout(30)
def test_a_send_that_meets_a_dead_receiver_never_waits_for_a_writer() -> None:
    """Collecting the dead is skipped, never waited for, while a writer holds
    the lock (here, the test holds it for the whole send)."""

    class Shop:
        pass

    sig = Signal()
    holder = [Holder("victim")]
    sig.connect(kill := kills(holder))
    sig.connect(holder[0].method)
    sig.connect(own := Holder("own").method, sender=Shop, weak=False)
    results: list[Any] = []
    with sig._lock:
        thread = threading.Thread(target=lambda: results.append(sig.send(Shop)))
        thread.start()
        thread.join(10)
        done = not thread.is_alive()
    thread.join()
    assert done, "the send waited for the writer lock"
    assert [v for _, v in results[0]] == ["killer", "own"]
    del kill, own


@pytest.mark.parametrize("path", ["inline", "executor", "async"])
def test_send_robust_hands_every_receiver_the_sender(path: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def got(signal: Any, sender: Any, **kw: Any) -> Any:
        return sender, kw

    async def got_async(signal: Any, sender: Any, **kw: Any) -> Any:
        return sender, kw

    s = Sender()
    with ThreadPoolExecutor(2) as pool:
        sig = Signal(executor=pool if path == "executor" else None)
        sig.connect(got)
        if path == "async":
            sig.connect(got_async)
        result = sig.send_robust(s, n=1)
    assert [v for _, v in result] == [(s, {"n": 1})] * len(result)


def test_a_uid_bucket_survives_compaction():
    """A ``dispatch_uid`` whose ``==`` is user code is filed in a bucket of
    (uid, entry) pairs; compaction keeps the bucket's live pairs."""

    class Uid:
        def __init__(self, name: str) -> None:
            self.name = name

        def __hash__(self) -> int:
            return 7

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Uid) and other.name == self.name

    sig = Signal()
    sig.connect(kept := make_receiver("kept"), dispatch_uid=Uid("x"))
    sig.connect(gone := make_receiver("gone"), dispatch_uid=Uid("y"))
    assert sig.disconnect(dispatch_uid=Uid("y"))
    before = sig._snapshot.state
    for i in range(40):  # garbage past half of the registry: compaction
        sig.connect(make_receiver(i), dispatch_uid=f"t{i}", weak=False)
    for i in range(40):
        sig.disconnect(dispatch_uid=f"t{i}")
    assert sig._snapshot.state is not before  # compacted (rebuilt)
    sig.connect(make_receiver("dup"), dispatch_uid=Uid("x"))  # already there
    assert [t for _, t in sig.send(sender=None)] == ["kept"]
    assert sig.disconnect(dispatch_uid=Uid("x"))
    assert sig.receivers == []
    del kept, gone


@pytest.mark.parametrize("how", ["plain", "executor", "monitored"])
def test_the_fast_path_of_a_repeated_send_does_what_the_first_send_does(how: str):
    """A snapshot builds its any-sender tuple on the first send; the sends
    after it (no write between) take ``send``'s fast path.  That path hands
    receivers the same arguments, skips a receiver that died since and goes
    on, runs on the signal's executor, and is monitored."""
    from concurrent.futures import ThreadPoolExecutor

    from concsignals import monitoring

    def echo(signal: Any, sender: Any, **kw: Any) -> Any:
        return signal, sender, kw, threading.current_thread().name

    holder = [Holder("victim")]
    quiet = SendsSeen()
    with ThreadPoolExecutor(1, thread_name_prefix="fast") as pool:
        sig = Signal(executor=pool if how == "executor" else None)
        sig.connect(echo)
        sig.connect(holder[0].method)  # weak: dies between the sends
        sig.connect(last := Holder("last").method, weak=False)
        if how == "monitored":
            monitoring.install(quiet)
        try:
            s = Sender()
            assert len(sig.send(s, n=1)) == 3  # builds the tuple
            holder.clear()
            gc.collect()
            sig._deaths.clear()  # no compaction: the fast path meets the dead
            [(r0, (signal, sender, kw, thread)), (r1, value)] = sig.send(s, n=2)
        finally:
            if how == "monitored":
                monitoring.uninstall(quiet)
    assert r0 is echo and (signal, sender, kw) == (sig, s, {"n": 2})
    assert r1 == last and value == "last"
    assert thread.startswith("fast") is (how == "executor")
    assert len(quiet.sends) == (2 if how == "monitored" else 0)
    if how == "monitored":
        assert quiet.sends[1].sender is s


def test_a_death_after_a_compaction_still_refreshes_the_next_sends():
    """Compaction forgets the deaths it removed; one receiver dying after it
    is enough for a send that meets it to refresh the snapshot."""
    sig = Signal()
    first = Holder("first")
    sig.connect(first.method)
    del first
    gc.collect()
    assert sig.receivers == []  # compacts the reported death
    holder = [Holder("victim")]
    sig.connect(kill := kills(holder))
    sig.connect(holder[0].method)
    sig.send(None, kill=False)  # builds the tuples
    before = sig._snapshot
    assert [v for _, v in sig.send(None)] == ["killer"]  # meets the dead
    assert sig._snapshot is not before
    del kill


def test_a_compacted_snapshot_still_awaits_its_one_async_receiver():
    async def only(signal: Any, sender: Any, **kw: Any) -> str:
        return "awaited"

    sig = Signal()
    dying = Holder("dying")
    sig.connect(dying.method)
    sig.connect(only)
    del dying
    gc.collect()
    assert sig.receivers == [only]  # compacts: a whole new snapshot
    assert [v for _, v in sig.send(None)] == ["awaited"]
