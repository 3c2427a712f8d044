"""The promises every backend keeps: ordering, errors, filtering, disconnects,
deadlines.  Each test runs once per backend of ``tests/backends.py``.

Receivers come from ``tests.receivers`` (picklable), except in tests that need
shared memory, which skip on backends without it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import traceback
import weakref
from pathlib import Path
from typing import Any

import pytest

from concsignals import Signal
from tests.backends import Backend
from tests.receivers import (
    Bank,
    Fail,
    Halt,
    Nobody,
    Parcel,
    Reply,
    Shop,
    Stop,
    Trace,
    WaitForFile,
    echo,
)


@pytest.fixture
def executor(backend: Backend, request: pytest.FixtureRequest) -> Any:
    return backend.make(request, 4)


def send(
    backend: Backend, signal: Signal, executor: Any, sender: Any = None, **kw: Any
) -> Any:
    timeout = kw.pop("timeout", None)
    return backend.send(signal, executor, timeout, sender, kw)


def send_robust(
    backend: Backend, signal: Signal, executor: Any, sender: Any = None, **kw: Any
) -> Any:
    timeout = kw.pop("timeout", None)
    return backend.send_robust(signal, executor, timeout, sender, kw)


def full_traceback(err: BaseException) -> str:
    return "".join(traceback.format_exception(err))


@pytest.mark.timeout(30)
def test_results_in_connection_order_though_finishing_in_reverse(
    backend: Backend, executor: Any
) -> None:
    sig = Signal()
    rs = [Reply(f"r{i}", delay=0.04 * (4 - i)) for i in range(4)]
    for r in rs:
        sig.connect(r)
    for send_fn in (send, send_robust):
        result = send_fn(backend, sig, executor, Shop)
        assert [resp for _, resp in result] == ["r0", "r1", "r2", "r3"]
        assert all(got is r for (got, _), r in zip(result, rs, strict=True))


@pytest.mark.timeout(30)
def test_robust_returns_each_error_in_its_slot_with_traceback(
    backend: Backend, executor: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sig = Signal()
    rs = [Reply("a", 0.05), Fail("b"), Reply("c"), Fail("d", 0.05)]
    for r in rs:
        sig.connect(r)
    with caplog.at_level(logging.ERROR, logger="concsignals"):
        result = send_robust(backend, sig, executor, Shop)
    assert [got for got, _ in result] == rs
    assert [resp for _, resp in result][::2] == ["a", "c"]
    for (_, err), tag in ((result[1], "b"), (result[3], "d")):
        assert isinstance(err, ValueError)
        assert err.args == (tag,)
        assert "fail_deep" in full_traceback(err)  # the worker's frames are kept
    logged = [rec.getMessage() for rec in caplog.records]
    assert logged == [
        "Error calling Fail('b') in Signal.send_robust() (b)",
        "Error calling Fail('d') in Signal.send_robust() (d)",
    ]


@pytest.mark.timeout(30)
def test_send_raises_the_earliest_failure_in_connection_order(
    backend: Backend, executor: Any
) -> None:
    sig = Signal()
    sig.connect(late := Fail("earliest", delay=0.3))
    sig.connect(fast := Fail("later", delay=0.15))  # the earliest has begun
    sig.connect(ok := Reply("ok"))
    with pytest.raises(ValueError, match="earliest") as info:
        send(backend, sig, executor, Shop)
    assert "fail_deep" in full_traceback(info.value)
    notes = getattr(info.value, "__notes__", [])
    if backend.parallel:  # the later failure is not lost...
        assert all("Fail('later')" in n for n in notes)
        # ...unless it never started: dask may queue both calls on one worker,
        # and then cancels the later one when the earliest fails.
        assert notes or backend.name.startswith("dask")
    else:  # inline stops at the first failure
        assert notes == []
    del late, fast, ok


@pytest.mark.timeout(30)
def test_receivers_for_one_sender_only_get_that_sender(
    backend: Backend, executor: Any
) -> None:
    sig = Signal()
    sig.connect(shop := Reply("shop"), sender=Shop)
    sig.connect(anyone := Reply("anyone"))
    sig.connect(bank := Reply("bank"), sender=Bank)
    sig.connect(shop2 := Reply("shop2"), sender=Shop)
    tags = lambda res: [resp for _, resp in res]  # noqa: E731
    assert tags(send(backend, sig, executor, Shop)) == ["shop", "anyone", "shop2"]
    assert tags(send(backend, sig, executor, Bank)) == ["anyone", "bank"]
    assert tags(send_robust(backend, sig, executor, Nobody)) == ["anyone"]
    assert tags(send(backend, sig, executor, None)) == ["anyone"]
    del shop, anyone, bank, shop2


@pytest.mark.timeout(30)
def test_every_keyword_reaches_the_receivers(backend: Backend, executor: Any) -> None:
    sig = Signal()
    sig.connect(echo)
    named = {"executor": 1, "timeout": 2, "robust": 3, "using": 4}
    [(r, (_, sender_name, got))] = backend.send(sig, executor, None, Shop, named)
    assert r is echo
    assert sender_name == "Shop"
    assert got == named


@pytest.mark.timeout(30)
def test_a_receiver_disconnected_before_the_send_is_not_called(
    backend: Backend, executor: Any
) -> None:
    sig = Signal()
    sig.connect(a := Reply("a"))
    sig.connect(b := Fail("b"))
    sig.connect(c := Reply("c"))
    assert sig.disconnect(b)
    assert send(backend, sig, executor, Shop) == [(a, "a"), (c, "c")]
    del a, b, c


@pytest.mark.timeout(30)
def test_a_receiver_disconnected_while_queued_is_not_called(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    if not backend.shares_memory:
        pytest.skip("out of process: the disconnect check is at hand-off")
    executor = backend.make(request, 1)  # one worker: the victim waits in the queue
    sig = Signal()
    called: list[str] = []

    def first(**kw: Any) -> str:
        called.append("first")
        sig.disconnect(victim)
        return "first"

    def middle(**kw: Any) -> str:
        called.append("middle")
        return "middle"

    def victim(**kw: Any) -> str:
        called.append("victim")
        return "victim"

    for r in (first, middle, victim):
        sig.connect(r)
    for send_fn in (send, send_robust):
        assert send_fn(backend, sig, executor, Shop) == [
            (first, "first"),
            (middle, "middle"),
        ]
        assert called == ["first", "middle"]
        called.clear()
        sig.connect(victim)


def stuck(backend: Backend, tmp_path: Path) -> WaitForFile:
    """A receiver that runs until the test releases it, or (inline, where it
    runs in the sender's own thread) for 1.5 s."""
    max_wait = 30.0 if backend.parallel else 1.5
    return WaitForFile("slow", str(tmp_path / "release"), max_wait)


def release(slow: WaitForFile) -> None:
    Path(slow.path).touch()
    time.sleep(0.05)  # let it end before the next test uses the workers


@pytest.mark.timeout(60)
def test_robust_deadline_puts_timeout_errors_in_unfinished_slots(
    backend: Backend, executor: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sig = Signal()
    sig.connect(fast := Reply("fast"))
    sig.connect(slow := stuck(backend, tmp_path))
    sig.connect(after := Reply("after"))
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="concsignals"):
        result = send_robust(backend, sig, executor, Shop, timeout=1.0)
    elapsed = time.monotonic() - started
    release(slow)
    assert [r for r, _ in result] == [fast, slow, after]
    assert result[0][1] == "fast"
    assert isinstance(result[1][1], TimeoutError)
    assert "WaitForFile('slow')" in str(result[1][1])
    if backend.parallel:
        assert elapsed < 20  # returned at the deadline, not when slow finished
        assert result[2][1] == "after"
    else:  # inline: not started before the deadline
        assert isinstance(result[2][1], TimeoutError)
        assert "was not started" in str(result[2][1])
    assert any("WaitForFile('slow')" in rec.getMessage() for rec in caplog.records)


@pytest.mark.timeout(60)
def test_send_raises_timeout_error_at_the_deadline(
    backend: Backend, executor: Any, tmp_path: Path
) -> None:
    sig = Signal()
    sig.connect(fast := Reply("fast"))
    sig.connect(slow := stuck(backend, tmp_path))
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"WaitForFile\('slow'\)"):
        send(backend, sig, executor, Shop, timeout=1.0)
    elapsed = time.monotonic() - started
    release(slow)
    if backend.parallel:
        assert elapsed < 20
    del fast


# -- issue 10: one contract at the edges, on every backend ----------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("robust", [False, True], ids=["send", "send_robust"])
def test_a_base_exception_propagates_only_after_every_begun_call_ended(
    backend: Backend, executor: Any, tmp_path: Path, robust: bool
) -> None:
    """Issue 10 case 1: a thread-pool send raised at once while a call it had
    begun still ran."""
    sig = Signal()
    sig.connect(halt := Halt(delay=0.2))  # fails once the other call runs
    sig.connect(trace := Trace(str(tmp_path / "slow"), delay=0.6))
    with pytest.raises(Stop):
        (send_robust if robust else send)(backend, sig, executor, Shop)
    assert trace.ended() or not trace.began()
    del halt


@pytest.mark.timeout(60)
def test_the_earliest_slot_decides_with_a_deadline_and_a_failure(
    backend: Backend, executor: Any, tmp_path: Path
) -> None:
    """Issue 10 case 3: send raised TimeoutError, asend the ValueError."""
    sig = Signal()
    sig.connect(slow := stuck(backend, tmp_path))
    sig.connect(fail := Fail("x"))
    try:
        with pytest.raises(TimeoutError, match=r"WaitForFile\('slow'\)") as info:
            send(backend, sig, executor, Shop, timeout=0.5)
    finally:
        release(slow)
    notes = getattr(info.value, "__notes__", [])
    assert all("Fail('x')" in n for n in notes)
    del fail


@pytest.mark.timeout(60)
def test_a_call_that_overruns_the_deadline_times_the_send_out(
    backend: Backend, executor: Any
) -> None:
    """Issue 10 case 4: a nested send returned a late result as a success."""
    sig = Signal()
    sig.connect(slow := Reply("slow", delay=0.5))
    sig.connect(after := Reply("after"))
    with pytest.raises(TimeoutError, match=r"Reply\('slow'\)"):
        send(backend, sig, executor, Shop, timeout=0.1)
    result = send_robust(backend, sig, executor, Shop, timeout=0.1)
    assert [r for r, _ in result] == [slow, after]
    assert isinstance(result[0][1], TimeoutError)
    del after


@pytest.mark.timeout(60)
def test_executor_failures_land_in_their_slots_each_its_own(
    backend: Backend, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10 case 5: send_robust raised the shut-down executor's error."""
    broken = backend.broken(request)
    if broken is None:
        pytest.skip("no executor to fail")
    sig = Signal()
    rs = [Reply("a"), Reply("b")]
    for r in rs:
        sig.connect(r)
    with caplog.at_level(logging.ERROR, logger="concsignals"):
        result = backend.send_robust(sig, broken, None, Shop, {})
    assert [r for r, _ in result] == rs
    errors = [err for _, err in result]
    assert all(isinstance(err, Exception) for err in errors)
    assert errors[0] is not errors[1]
    assert len([r for r in caplog.records if r.name == "concsignals"]) == 2
    with pytest.raises(Exception):  # noqa: B017 - whatever the executor says
        backend.send(sig, broken, None, Shop, {})


@pytest.mark.timeout(60)
def test_asend_reads_the_snapshot_when_awaited(backend: Backend, executor: Any) -> None:
    """Issue 10 case 6: SignalView.asend read it when called."""
    if not backend.is_async:
        pytest.skip("sync sends read the snapshot when called: there is no later")
    sig = Signal()
    view = sig.using(executor)

    async def main() -> list[Any]:
        coros = [view.asend(Shop), view.asend_robust(Shop), sig.asend(Shop)]
        sig.connect(r := Reply("late"))
        results = [await c for c in coros]
        sig.disconnect(r)
        return results

    for result in asyncio.run(main()):
        assert [v for _, v in result] == ["late"]


# -- issue 21: every slot ends, by construction ---------------------------------

doomed: list[Any] = []


class KillsWhenPickled:
    """An argument whose pickling (out of process: at hand-off, after the send
    read its snapshot) drops the only reference to the receivers in
    ``doomed``; the worker gets a plain string."""

    def __reduce__(self) -> Any:
        doomed.clear()
        gc.collect()
        return (str, ("pickled",))


@pytest.mark.timeout(20)
@pytest.mark.parametrize("robust", [False, True], ids=["send", "send_robust"])
def test_a_receiver_that_died_after_the_snapshot_was_read_ends_its_slot(
    backend: Backend, executor: Any, robust: bool
) -> None:
    """Issue 21, item 1: on a process pool, ``asend`` (and ``submit``) never
    returned: the dead receiver's slot was never settled."""
    if backend.shares_memory:
        pytest.skip("nothing is pickled: see test_a_receiver_disconnected_while_queued")
    sig = Signal()
    doomed[:] = [Reply("doomed")]
    sig.connect(a := Reply("a"))
    sig.connect(doomed[0])  # weak: dies while the send pickles its arguments
    sig.connect(c := Reply("c"))
    result = (send_robust if robust else send)(
        backend, sig, executor, Shop, arg=KillsWhenPickled()
    )
    assert result == [(a, "a"), (c, "c")]


def assert_dies(alive: list[weakref.ref[Any]], what: str) -> None:
    """Every object of ``alive`` is collected, at once or within 10 s.

    A pool's worker ends the slot of its call (which wakes the sender)
    before its job's frames return and it drops its work item, which holds
    the send: on a loaded machine the sender may look before that thread
    has run again.  A reference concsignals keeps still fails here.
    """
    give_up = time.monotonic() + 10
    while True:
        gc.collect()
        if all(ref() is None for ref in alive):
            return
        if time.monotonic() > give_up:
            break
        time.sleep(0.01)
    assert [ref() for ref in alive] == [None] * len(alive), what


@pytest.mark.timeout(60)
def test_nothing_of_a_finished_send_stays_alive(
    backend: Backend, executor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a send returned and its caller dropped the results, neither the
    sender nor an argument is kept alive by concsignals (a succeeding and a
    failing receiver, ``send`` and ``send_robust``).  The failure's log
    record is not kept: pytest's log capture would hold its traceback."""
    monkeypatch.setattr(logging.getLogger("concsignals"), "disabled", True)
    sig = Signal()
    sig.connect(a := Reply("a"))
    sig.connect(f := Fail("f"))
    for robust in (False, True):
        sender, argument = Parcel(), Parcel()
        alive = [weakref.ref(sender), weakref.ref(argument)]
        if robust:
            result = send_robust(backend, sig, executor, sender, parcel=argument)
            assert [r for r, _ in result] == [a, f]
            del result
        else:
            try:
                send(backend, sig, executor, sender, parcel=argument)
            except ValueError as err:
                # The traceback's frames (the caller's own) hold the sender.
                err.__traceback__ = None
            else:
                pytest.fail("send did not raise")
        del sender, argument
        assert_dies(alive, f"robust={robust}")
