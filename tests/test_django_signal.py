"""concsignals.django.Signal: Django's whole surface on a concsignals signal.

Every test compares with stock ``django.dispatch.Signal`` where Django defines
the behaviour.  ``install()`` changes Django for the whole process, so its
tests run in a fresh interpreter (``tests/test_django_install.py``).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
import warnings
import weakref
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

pytest.importorskip("django", reason="needs Django: the dev extra, .[dev]")
pytest.importorskip("asgiref", reason="needs asgiref: the dev extra, .[dev]")

import django.dispatch
from asgiref.sync import async_to_sync, sync_to_async

import concsignals
from concsignals.django import Signal


def sync_r(sender: Any, **kwargs: Any) -> str:
    return "sync"


async def async_r(sender: Any, **kwargs: Any) -> str:
    return "async"


def sync_r2(sender: Any, **kwargs: Any) -> str:
    return "sync2"


class Sender:
    pass


# -- the class surface ----------------------------------------------------------


def test_is_a_concsignals_signal_with_djangos_logger_and_lock() -> None:
    s = Signal()
    assert isinstance(s, concsignals.Signal)
    assert s._logger_name == "django.dispatch"
    assert s.lock is s._lock
    with s.lock:  # Django's tests hold it around _clear_dead_receivers
        s._clear_dead_receivers()


def test_clear_dead_receivers_prunes_what_died() -> None:
    s = Signal()

    def dies(**kwargs: Any) -> None:
        pass

    s.connect(dies)
    s.connect(sync_r)
    del dies
    gc.collect()
    with s.lock:
        s._clear_dead_receivers()
    assert len(s._snapshot.entries) == 1


def test_sender_receivers_cache_is_clearable_and_weak_when_caching() -> None:
    assert isinstance(
        Signal(use_caching=True).sender_receivers_cache, weakref.WeakKeyDictionary
    )
    s = Signal()
    assert s.sender_receivers_cache == {}
    s.sender_receivers_cache.clear()


def test_live_receivers_as_django() -> None:
    ours, theirs = Signal(), django.dispatch.Signal()
    sender = Sender()
    for sig in (ours, theirs):
        sig.connect(async_r)
        sig.connect(sync_r, sender=sender)
        sig.connect(sync_r2)
    assert ours._live_receivers(sender) == theirs._live_receivers(sender)
    assert ours._live_receivers(None) == theirs._live_receivers(None)


def test_connect_is_the_one_djangos_check_framework_knows() -> None:
    connect = Signal().connect
    assert (connect.__module__, connect.__name__) == (
        "django.dispatch.dispatcher",
        "connect",
    )


# -- receivers: Django's tuples, read and assigned ------------------------------


def canon(tuples: list[Any]) -> list[Any]:
    """Tuples with each reference replaced by what it refers to."""
    return [
        (key, ref() if isinstance(ref, weakref.ReferenceType) else ref, is_async)
        for key, ref, is_async in tuples
    ]


def test_receivers_are_djangos_tuples() -> None:
    ours, theirs = Signal(), django.dispatch.Signal()
    sender = Sender()
    strong = Sender.__init__  # any function: connected strongly below

    def held(**kwargs: Any) -> None:
        pass

    for sig in (ours, theirs):
        sig.connect(sync_r)
        sig.connect(async_r, sender=sender)
        sig.connect(sync_r2, dispatch_uid="uid-1")
        sig.connect(held, weak=False)
    assert canon(ours.receivers) == canon(theirs.receivers)
    assert ours.receivers == ours.receivers  # fresh tuples compare equal
    assert [type(ref) for _, ref, _ in ours.receivers] == [
        type(ref) for _, ref, _ in theirs.receivers
    ]
    del strong


def test_assigning_empty_then_restoring_keeps_sender_connections() -> None:
    s = Signal()
    sender, other = Sender(), Sender()
    calls: list[str] = []

    def own(sender: Any, **kwargs: Any) -> None:
        calls.append("own")

    def anyone(sender: Any, **kwargs: Any) -> None:
        calls.append("anyone")

    s.connect(own, sender=sender)
    s.connect(anyone)
    saved = s.receivers
    s.receivers = []
    assert s.send(sender) == [] and calls == []
    s.receivers += saved  # factory_boy's mute_signals
    s.send(sender)
    s.send(other)
    assert calls == ["own", "anyone", "anyone"]
    assert s.disconnect(own, sender=sender) is True


def test_assignment_is_one_write_and_a_dropped_receiver_is_never_called() -> None:
    """A send under way when ``receivers = []`` returns calls no more of them."""
    s = Signal()
    calls: list[str] = []

    def first(**kwargs: Any) -> None:
        calls.append("first")
        s.receivers = []

    def second(**kwargs: Any) -> None:
        calls.append("second")

    s.connect(first)
    s.connect(second)
    s.send(None)
    assert calls == ["first"]


def test_reassigning_the_same_tuples_disconnects_nothing() -> None:
    s = Signal()
    calls: list[str] = []

    def first(**kwargs: Any) -> None:
        calls.append("first")
        s.receivers = s.receivers

    def second(**kwargs: Any) -> None:
        calls.append("second")

    s.connect(first)
    s.connect(second)
    s.send(None)
    assert calls == ["first", "second"]


def test_assigning_django_tuples_from_a_stock_signal() -> None:
    theirs, ours = django.dispatch.Signal(), Signal()
    theirs.connect(sync_r)
    theirs.connect(sync_r2, dispatch_uid="u")
    ours.receivers = theirs.receivers
    assert [r for r, _ in ours.send(None)] == [sync_r, sync_r2]
    assert ours.disconnect(dispatch_uid="u") is True
    assert ours.disconnect(sync_r) is True


def test_assigning_a_tuple_with_only_a_sender_id_is_refused() -> None:
    theirs, ours = django.dispatch.Signal(), Signal()
    sender = Sender()
    theirs.connect(sync_r, sender=sender)
    with pytest.raises(ValueError, match="names its sender only by id"):
        ours.receivers = theirs.receivers
    assert ours.receivers == []


class Uid:
    """A ``dispatch_uid`` whose ``==`` and ``hash`` are user code; two uids
    of one ``tag`` share a hash without being equal."""

    def __init__(self, name: str, tag: str = "") -> None:
        self.name, self.tag = name, tag

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Uid) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.tag)


def test_assigned_receivers_keep_kind_strong_hold_sender_and_uid() -> None:
    """Connections assigned from another signal become new entries with all
    that the originals had: async or not, held strongly, their sender, their
    uid (two uids of one hash both kept)."""
    source, s = Signal(), Signal()
    sender = Sender()

    def strong(sender: Any, **kwargs: Any) -> str:
        return "strong"

    source.connect(async_r)
    source.connect(strong, weak=False)
    source.connect(sync_r, sender=sender, dispatch_uid=Uid("a"))
    source.connect(sync_r2, dispatch_uid=Uid("b"))
    source.connect(sync_r2, dispatch_uid=Uid("c"))  # same hash as b
    s.receivers = source.receivers
    source.receivers = []  # the assigned ones are s's own
    del strong
    gc.collect()
    responses = asyncio.run(s.asend(sender))
    assert sorted(r for _, r in responses) == [
        "async",
        "strong",
        "sync",
        "sync2",
        "sync2",
    ]
    robust = sorted(r for _, r in s.send_robust(None))
    assert robust == ["async", "strong", "sync2", "sync2"]
    assert s.disconnect(sync_r2, dispatch_uid=Uid("b")) is True
    assert s.disconnect(sync_r2, dispatch_uid=Uid("c")) is True
    assert s.disconnect(sync_r, sender=sender, dispatch_uid=Uid("a")) is True


def test_reassigning_keeps_uid_connections_and_refuses_foreign_entries() -> None:
    """A uid connection assigned back to its signal is kept as it is (a send
    under way still calls it); one read from another signal is copied, so a
    disconnect there leaves this one connected."""
    s, other = Signal(), Signal()
    calls: list[str] = []

    def first(**kwargs: Any) -> None:
        calls.append("first")
        s.receivers = s.receivers

    def second(**kwargs: Any) -> None:
        calls.append("second")

    s.connect(first)
    s.connect(second, dispatch_uid=Uid("second"))
    s.send(None)
    assert calls == ["first", "second"]
    other.connect(sync_r2, dispatch_uid=Uid("u"))  # a bucket s has too
    other.connect(sync_r)
    s.receivers = other.receivers
    assert other.disconnect(dispatch_uid=Uid("u")) and other.disconnect(sync_r)
    assert [r for r, _ in s.send(None)] == [sync_r2, sync_r]


def test_assigning_duplicates_connects_each_once_and_old_snapshots_still_read() -> None:
    s = Signal()
    sender = Sender()
    s.connect(sync_r)
    s.connect(sync_r2, sender=sender)
    saved = s.receivers
    s.receivers = saved[:1] + saved  # later duplicates of a key are dropped
    assert [r for r, _ in s.send(sender)] == [sync_r, sync_r2]
    old = s._snapshot  # what a send under way holds
    s.send(sender)  # caches the sender's merged tuple on its route
    s.receivers = []
    assert all(e.get() is None for e in old.lookup(sender))  # no stale cache


# -- sending: Django's order, logger, frame depth, threads ----------------------


def connect_mixed(sig: Any) -> None:
    sig.connect(async_r)
    sig.connect(sync_r)
    sig.connect(sync_r2)


@pytest.mark.parametrize("method", ["send", "send_robust", "asend", "asend_robust"])
def test_mixed_receivers_sync_results_first_as_django(method: str) -> None:
    ours, theirs = Signal(), django.dispatch.Signal()
    connect_mixed(ours)
    connect_mixed(theirs)

    def run(sig: Any) -> Any:
        if method.startswith("a"):
            return asyncio.run(getattr(sig, method)(None))
        return getattr(sig, method)(None)

    assert run(ours) == run(theirs)
    assert [v for _, v in run(ours)] == ["sync", "sync2", "async"]


def failing(**kwargs: Any) -> None:
    raise ValueError("boom")


async def afailing(**kwargs: Any) -> None:
    raise KeyError("aboom")


@pytest.mark.parametrize("method", ["send_robust", "asend_robust"])
def test_robust_failures_logged_on_django_dispatch(
    method: str, caplog: pytest.LogCaptureFixture
) -> None:
    s = Signal()
    s.connect(failing)
    s.connect(afailing)
    with caplog.at_level(logging.ERROR, logger="django.dispatch"):
        result = getattr(s, method)(None)
        if method.startswith("a"):
            result = asyncio.run(result)
    assert [type(v) for _, v in result] == [ValueError, KeyError]
    assert [r.name for r in caplog.records] == ["django.dispatch"] * 2
    messages = {r.getMessage() for r in caplog.records}  # asend: any order
    assert "Error calling failing in Signal.send_robust() (boom)" in messages


def warn_at_caller(**kwargs: Any) -> None:
    warnings.warn("here", stacklevel=3)  # 1: receiver, 2: send, 3: the caller


@pytest.mark.parametrize("method", ["send", "send_robust"])
@pytest.mark.parametrize("shape", ["fast path", "sender route", "with async"])
def test_frame_depth_between_send_and_receiver_is_djangos(
    method: str, shape: str
) -> None:
    """Django's ``complex_setting_changed`` warns with a stacklevel that
    assumes ``send`` calls the receiver itself."""
    sender = Sender()
    for sig in (Signal(), django.dispatch.Signal()):
        sig.connect(warn_at_caller)
        if shape == "sender route":
            sig.connect(sync_r, sender=sender)
        if shape == "with async":
            sig.connect(async_r)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            getattr(sig, method)(sender)
        assert caught[0].filename == __file__, (type(sig), caught[0].filename)


def test_async_send_runs_sync_receivers_thread_sensitively() -> None:
    """Inside ``async_to_sync`` from the main thread, Django's ``asend`` runs
    sync receivers in that thread (asgiref's thread-sensitive mode)."""
    seen: list[int] = []

    def where(**kwargs: Any) -> None:
        seen.append(threading.get_ident())

    s = Signal()
    s.connect(where)
    s.connect(async_r)

    async def main() -> Any:
        return await s.asend(None)

    async_to_sync(main)()
    assert seen == [threading.get_ident()]


def test_sync_send_runs_async_receivers_through_async_to_sync() -> None:
    """An async receiver's ``await sync_to_async(...)`` (the ORM) comes back
    to the thread that sent."""
    seen: list[int] = []

    async def orm_like(**kwargs: Any) -> None:
        await sync_to_async(lambda: seen.append(threading.get_ident()))()

    s = Signal()
    s.connect(orm_like)
    senders: list[int] = []

    def in_thread() -> None:
        senders.append(threading.get_ident())
        s.send(None)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert seen == senders


def test_async_send_failure_stops_the_rest_and_waits_for_it() -> None:
    """The first failure stops the send: no later sync receiver begins, the
    async ones are cancelled and awaited before ``asend`` raises."""
    s = Signal()
    calls: list[str] = []

    def later(**kwargs: Any) -> None:
        calls.append("later")

    async def waits_forever(**kwargs: Any) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            calls.append("cancelled and awaited")

    s.connect(waits_forever)
    s.connect(failing)
    s.connect(later)

    async def main() -> list[str]:
        with pytest.raises(ValueError, match="boom"):
            await s.asend(None)
        return list(calls)  # as asend raised, not after asyncio.run's cleanup

    assert asyncio.run(main()) == ["cancelled and awaited"]


def test_async_failure_stops_the_sync_job_between_receivers() -> None:
    """An async receiver fails while the sync job is running: the job begins
    no further sync receiver.  The job's first receiver waits until the
    failure is recorded (a monitor hears of it once the send is closed): no
    timing involved."""
    failure_recorded = threading.Event()

    class HearsTheFailure:
        def call_ended(self, call: Any) -> None:
            if call.receiver is fails_once_first_began:
                failure_recorded.set()

    s = Signal()
    calls: list[str] = []
    first_began = threading.Event()

    def first(**kwargs: Any) -> None:
        calls.append("first")
        first_began.set()
        assert failure_recorded.wait(timeout=30)

    def second(**kwargs: Any) -> None:
        calls.append("second")

    async def fails_once_first_began(**kwargs: Any) -> None:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, first_began.wait, 30)
        raise KeyError("aboom")

    s.connect(first)
    s.connect(second)
    s.connect(fails_once_first_began)
    monitor = HearsTheFailure()
    concsignals.monitoring.install(monitor)
    try:
        with pytest.raises(KeyError):
            asyncio.run(s.asend(None))
    finally:
        concsignals.monitoring.uninstall(monitor)
    assert calls == ["first"]


def test_disconnect_wins_in_an_async_send() -> None:
    s = Signal()
    calls: list[str] = []

    def first(**kwargs: Any) -> None:
        calls.append("first")
        s.disconnect(second)

    def second(**kwargs: Any) -> None:
        calls.append("second")

    s.connect(first)
    s.connect(second)
    asyncio.run(s.asend(None))
    assert calls == ["first"]


def test_executor_sends_are_concsignals_sends() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        s = Signal(executor=pool)
        s.connect(sync_r)
        assert s.send(None) == [(sync_r, "sync")]
        assert s.send_robust(None) == [(sync_r, "sync")]


def test_bound_method_sender_identity_as_django() -> None:
    obj = Sender()
    obj.method = lambda: None  # type: ignore[attr-defined]

    class WithMethod:
        def m(self) -> None:
            pass

    target = WithMethod()
    ours, theirs = Signal(), django.dispatch.Signal()
    for sig in (ours, theirs):
        sig.connect(sync_r, sender=target.m)
    assert len(theirs.send(target.m)) == 1
    assert len(ours.send(target.m)) == 1


# -- monitors see Django's signals too ------------------------------------------


def failing_r(sender: Any, **kwargs: Any) -> None:
    raise ValueError("failed")


class Seen:
    """A monitor keeping what it saw (from any thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.began: list[Any] = []
        self.ended: list[Any] = []
        self.calls: list[Any] = []

    def send_began(self, send: Any) -> None:
        with self.lock:
            self.began.append(send)

    def call_ended(self, call: Any) -> None:
        with self.lock:
            self.calls.append(call)

    def send_ended(self, send: Any) -> None:
        with self.lock:
            self.ended.append(send)

    def slots(self) -> list[tuple[Any, str]]:
        return [
            (c.receiver, c.outcome) for c in sorted(self.calls, key=lambda c: c.index)
        ]


@pytest.fixture
def seen() -> Any:
    monitor = Seen()
    concsignals.monitoring.install(monitor)
    yield monitor
    concsignals.monitoring.uninstall(monitor)


def send_by(how: str, s: Signal) -> Any:
    result = getattr(s, how)(None)
    return asyncio.run(result) if how.startswith("a") else result


@pytest.mark.parametrize("how", ["send", "send_robust", "asend", "asend_robust"])
def test_a_monitor_sees_every_send_and_call_of_a_django_signal(
    how: str, seen: Seen
) -> None:
    """The contract's "monitors see every send and call" holds for Django's
    signals: one send, one slot per receiver in Django's order of results
    (sync receivers first), each with its outcome; the results unchanged."""
    s = Signal()
    s.connect(async_r)
    s.connect(sync_r)
    robust = how.endswith("robust")
    if robust:
        s.connect(failing_r)
    s.connect(sync_r2)
    result = send_by(how, s)
    expected = [sync_r, *([failing_r] if robust else []), sync_r2, async_r]
    assert [r for r, _ in result] == expected
    assert len(seen.began) == len(seen.ended) == 1
    assert seen.ended[0].signal is s and seen.ended[0].error is None
    outcomes = ["result", *(["exception"] if robust else []), "result", "result"]
    assert seen.slots() == list(zip(expected, outcomes, strict=True))


@pytest.mark.parametrize("how", ["send", "asend"])
def test_a_monitor_sees_a_failed_django_send_end_with_its_error(
    how: str, seen: Seen
) -> None:
    s = Signal()
    s.connect(sync_r)
    s.connect(failing_r)
    s.connect(sync_r2)  # not called: the send stopped at the failure
    with pytest.raises(ValueError, match="failed"):
        send_by(how, s)
    assert isinstance(seen.ended[0].error, ValueError)
    assert seen.slots() == [
        (sync_r, "result"),
        (failing_r, "exception"),
        (sync_r2, "not begun"),
    ]


# -- one engine: the Django shape is a concsignals send (issue 21) ---------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["a failure", "cancellation"])
def test_asend_returns_only_once_the_sync_receiver_it_began_ended(how: str) -> None:
    """Contract 8: a send returns only when every call it began has ended, the
    sync receiver in asgiref's thread included.  Without that wait, asend
    returns a few loop iterations after the failure or the cancel, with no
    thread involved; so the release comes a thousand iterations after it, and
    with the wait asend cannot return before the release, however loaded."""
    order: list[str] = []
    began, release = threading.Event(), threading.Event()

    def slow(**kwargs: Any) -> None:
        began.set()
        assert release.wait(timeout=20)
        order.append("slow ended")

    async def fails_once_slow_began(**kwargs: Any) -> None:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, began.wait, 20)
        failing_now.set()
        raise KeyError("aboom")

    s = Signal()
    s.connect(slow)
    if how == "a failure":
        s.connect(fails_once_slow_began)

    async def main() -> None:
        task = asyncio.ensure_future(s.asend(None))
        if how == "cancellation":
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, began.wait, 20)
            task.cancel()
        else:
            await failing_now.wait()
        for _ in range(1000):
            await asyncio.sleep(0)
        order.append("released")
        release.set()
        with pytest.raises((KeyError, asyncio.CancelledError)):
            await task
        order.append("asend returned")

    failing_now = asyncio.Event()  # 3.10+: bound to the loop when first awaited
    asyncio.run(main())
    assert order == ["released", "slow ended", "asend returned"]


async def cancels(**kwargs: Any) -> None:
    raise asyncio.CancelledError


@pytest.mark.parametrize("method", ["send", "send_robust", "asend", "asend_robust"])
def test_an_async_receiver_raising_cancelled_error_fails_the_send_as_django(
    method: str,
) -> None:
    for sig in (Signal(), django.dispatch.Signal()):
        sig.connect(sync_r)
        sig.connect(cancels)

        async def main(sig: Any = sig) -> Any:
            return await getattr(sig, method)(None)

        with pytest.raises(asyncio.CancelledError):
            if method.startswith("a"):
                asyncio.run(main())
            else:
                getattr(sig, method)(None)


@pytest.mark.parametrize("method", ["send", "send_robust"])
@pytest.mark.parametrize("shape", ["fast path", "sender route", "with async"])
def test_frame_depth_is_djangos_with_a_monitor_installed(
    method: str, shape: str, seen: Seen
) -> None:
    test_frame_depth_between_send_and_receiver_is_djangos(method, shape)


class Label(str):
    """A ``str`` of another type, equal to the plain one."""


UIDS = [
    ("", ""),
    (0, 0),
    (0, False),
    (1, 1.0),
    (True, 1),
    (1, Decimal(1)),
    (Fraction(1, 2), 0.5),
    ((1, Decimal(1)), (1, 1)),
    ("uid", Label("uid")),
]


@pytest.mark.parametrize(("first", "second"), UIDS, ids=repr)
@pytest.mark.parametrize("for_sender", [False, True])
def test_dispatch_uids_are_one_connection_exactly_when_django_says(
    first: object, second: object, for_sender: bool
) -> None:
    """Django keys a connection by ``(dispatch_uid, sender id)`` if the uid
    is truthy, else by the receiver, and compares keys with ``==``."""
    sender = Sender() if for_sender else None
    seen = []
    for sig in (Signal(), concsignals.Signal(), django.dispatch.Signal()):
        sig.connect(sync_r, sender=sender, dispatch_uid=first)
        sig.connect(sync_r2, sender=sender, dispatch_uid=second)
        connected = [r for r, _ in sig.send(sender)]
        gone = sig.disconnect(sender=sender, dispatch_uid=second)
        seen.append((connected, gone, [r for r, _ in sig.send(sender)]))
    assert seen[0] == seen[1] == seen[2], seen


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_a_sync_send_in_a_running_loop_once_the_async_receiver_died(
    method: str,
) -> None:
    """Django calls only live receivers: with no live async one, a sync send
    inside a running event loop returns the sync receivers' results."""

    async def dies(**kwargs: Any) -> None:
        pass

    ours, theirs = Signal(), django.dispatch.Signal()
    for sig in (ours, theirs):
        sig.connect(sync_r)
        sig.connect(dies)
        sig.send(None)  # no loop running: both called (and the tuple cached)
    del dies
    gc.collect()

    async def main(sig: Any) -> Any:
        return getattr(sig, method)(None)

    assert asyncio.run(main(ours)) == asyncio.run(main(theirs)) == [(sync_r, "sync")]
    for sig in (ours, theirs):  # a live one: asgiref refuses, as on Django
        sig.connect(async_r)
        with pytest.raises(RuntimeError, match="AsyncToSync"):
            asyncio.run(main(sig))


# -- _live_receivers overridden or patched, as sentry-sdk does -------------------


def traced(receiver: Any, calls: list[str]) -> Any:
    """A wrapper such as sentry-sdk's span: records, then calls ``receiver``."""

    @functools.wraps(receiver)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(receiver.__name__)
        return receiver(*args, **kwargs)

    return wrapper


def tracing(calls: list[str]) -> Any:
    """A ``_live_receivers`` to put on a class: wraps each sync receiver."""

    def _live_receivers(self: Any, sender: Any) -> tuple[list[Any], list[Any]]:
        sync, asynchronous = type(self).__mro__[1]._live_receivers(self, sender)
        return [traced(r, calls) for r in sync], asynchronous

    return _live_receivers


def run_method(sig: Any, method: str) -> Any:
    if method.startswith("a"):
        return asyncio.run(getattr(sig, method)(None))
    return getattr(sig, method)(None)


def named_results(results: Any) -> list[tuple[str, Any]]:
    return [(r.__name__, v) for r, v in results]


def test_has_listeners_asks_an_overridden_live_receivers_as_django() -> None:
    def nobody(self: Any, sender: Any) -> tuple[list[Any], list[Any]]:
        return [], []

    for base in (Signal, django.dispatch.Signal):
        sig = type("Deaf", (base,), {"_live_receivers": nobody})()
        sig.connect(sync_r)
        assert sig.has_listeners() is False
        assert base.has_listeners(base()) is False
    plain = Signal()
    plain.connect(sync_r)
    assert plain.has_listeners() is True


@pytest.mark.parametrize("method", ["send", "send_robust", "asend", "asend_robust"])
def test_a_subclass_overriding_live_receivers_is_honoured(method: str) -> None:
    calls: list[str] = []
    results = []
    for base in (Signal, django.dispatch.Signal):
        sub = type("Traced", (base,), {"_live_receivers": tracing(calls)})
        sig = sub()
        connect_mixed(sig)
        results.append(named_results(run_method(sig, method)))
    assert calls == ["sync_r", "sync_r2"] * 2
    assert (
        results[0]
        == results[1]
        == [
            ("sync_r", "sync"),
            ("sync_r2", "sync2"),
            ("async_r", "async"),
        ]
    )


@pytest.mark.parametrize("method", ["send", "send_robust", "asend", "asend_robust"])
@pytest.mark.parametrize("monitored", [False, True])
def test_live_receivers_patched_on_the_class_is_honoured(
    method: str, monitored: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sentry-sdk's Django integration replaces ``Signal._live_receivers`` on
    the class (ours, once ``install()`` ran) with one wrapping each sync
    receiver; every kind of send then calls the wrappers, as on Django."""
    calls: list[str] = []
    original = Signal._live_receivers

    def patched(self: Any, sender: Any) -> tuple[list[Any], list[Any]]:
        sync, asynchronous = original(self, sender)
        return [traced(r, calls) for r in sync], asynchronous

    sig = Signal()
    connect_mixed(sig)
    monkeypatch.setattr(Signal, "_live_receivers", patched)
    monitor = Seen()
    if monitored:
        concsignals.monitoring.install(monitor)
    try:
        results = named_results(run_method(sig, method))
    finally:
        concsignals.monitoring.uninstall(monitor)
    assert calls == ["sync_r", "sync_r2"]
    assert results == [("sync_r", "sync"), ("sync_r2", "sync2"), ("async_r", "async")]
    if monitored:
        assert [c.outcome for c in monitor.calls] == ["result"] * 3
    monkeypatch.undo()
    assert named_results(run_method(sig, method))[0] == ("sync_r", "sync")
    assert calls == ["sync_r", "sync_r2"]  # no wrapper once the patch is gone


def test_a_monitor_sees_a_dead_async_receivers_slot_skipped(seen: Seen) -> None:
    async def dies(**kwargs: Any) -> None:
        pass

    s = Signal()
    s.connect(sync_r)
    s.connect(dies)
    s.send(None)  # the tuple cached with both
    seen.calls.clear()  # its events hold the receivers
    del dies
    gc.collect()
    assert s.send(None) == [(sync_r, "sync")]
    assert seen.slots() == [(sync_r, "result"), (None, "skipped")]
