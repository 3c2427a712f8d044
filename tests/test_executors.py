"""Executor-specific promises: threads (contextvars, nested sends, cancelling,
submit, ownership), processes (pickling, the signal stand-in), inline with a
deadline, and senders racing writers on a saturated pool."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import pickle
import random
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import pytest

from concsignals import Signal, SignalRef, _run, _threads, executors, monitoring
from tests.receivers import (
    Carried,
    Fail,
    Halt,
    Reply,
    Shop,
    Signals,
    Stop,
    Token,
    announced,
    where,
)
from tests.test_gate import Clock, patch_clock

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


@pytest.fixture
def pool() -> Any:
    p = ThreadPoolExecutor(4, thread_name_prefix="test-pool")
    yield p
    p.shutdown(wait=False, cancel_futures=True)  # a failed test must not hang


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The deadlines' clock, standing still until the test moves it."""
    return patch_clock(monkeypatch)


@pytest.fixture
def one() -> Any:
    """A pool of one worker: calls after the first wait in its queue."""
    p = ThreadPoolExecutor(1, thread_name_prefix="test-one")
    yield p
    p.shutdown(wait=False, cancel_futures=True)


# -- classification -------------------------------------------------------------


def test_thread_pools_run_in_process_and_other_executors_do_not(
    process_pool: Executor,
) -> None:
    class MyThreads(ThreadPoolExecutor):
        pass

    class Marked(Executor):
        concsignals_in_process = True

    assert executors.in_process(ThreadPoolExecutor(1))
    assert executors.in_process(MyThreads(1))
    assert executors.in_process(Marked())
    assert not executors.in_process(process_pool)
    assert not executors.in_process(Executor())


# -- threads ----------------------------------------------------------------


def test_signal_executor_makes_sends_parallel_and_using_none_inline(
    pool: ThreadPoolExecutor,
) -> None:
    sig = Signal(executor=pool)

    def name(**kw: Any) -> str:
        return threading.current_thread().name

    sig.connect(name)
    [(_, where_sent)] = sig.send(Shop)
    [(_, where_robust)] = sig.send_robust(Shop)
    assert where_sent.startswith("test-pool")
    assert where_robust.startswith("test-pool")
    here = threading.current_thread().name
    assert sig.using(None).send(Shop) == [(name, here)]
    assert sig.using(None, timeout=5).send_robust(Shop) == [(name, here)]


def test_every_send_of_a_view_reaches_the_senders_own_receivers(
    pool: ThreadPoolExecutor,
) -> None:
    """A view passes the sender on in all five sends: receivers connected
    for that sender only are reached, with it."""
    sig = Signal()

    def shop_only(sender: Any, **kw: Any) -> Any:
        return sender

    async def shop_only_async(sender: Any, **kw: Any) -> Any:
        return sender

    sig.connect(shop_only, sender=Shop)
    view = sig.using(pool)
    expected = [(shop_only, Shop)]
    assert view.send(Shop) == expected
    assert view.send_robust(Shop) == expected
    assert view.submit(Shop).result(timeout=10) == expected
    assert asyncio.run(view.asend(Shop)) == expected
    sig.connect(shop_only_async, sender=Shop)
    assert asyncio.run(view.asend_robust(Shop)) == [*expected, (shop_only_async, Shop)]


def test_asend_and_asend_robust_reach_the_senders_own_receivers() -> None:
    sig = Signal()

    async def shop_only(sender: Any, **kw: Any) -> Any:
        return sender

    sig.connect(shop_only, sender=Shop)
    assert asyncio.run(sig.asend(Shop)) == [(shop_only, Shop)]
    assert asyncio.run(sig.asend_robust(Shop)) == [(shop_only, Shop)]


def test_submit_reaches_the_senders_own_receivers_on_the_signals_executor(
    pool: ThreadPoolExecutor,
) -> None:
    def shop_only(sender: Any, **kw: Any) -> Any:
        return sender, threading.current_thread().name

    for sig in (Signal(), Signal(executor=pool)):
        sig.connect(shop_only, sender=Shop)
        [(r, (sender, thread))] = sig.submit(Shop).result(timeout=10)
        assert (r, sender) == (shop_only, Shop)
        assert thread.startswith("test-pool") == (sig._executor is pool)


def test_each_receiver_sees_a_copy_of_the_senders_context(
    pool: ThreadPoolExecutor,
) -> None:
    sig = Signal()
    seen: list[str] = []

    def overwrite(**kw: Any) -> str:
        value = request_id.get("unset")
        request_id.set("changed by a receiver")
        return value

    def read(**kw: Any) -> str:
        time.sleep(0.05)  # after overwrite ran
        seen.append(request_id.get("unset"))
        return request_id.get("unset")

    sig.connect(overwrite)
    sig.connect(read)
    token = request_id.set("req-42")
    try:
        assert [v for _, v in sig.using(pool).send(Shop)] == ["req-42", "req-42"]
        assert [v for _, v in sig.using(pool).submit(Shop).result()] == [
            "req-42",
            "req-42",
        ]
        assert request_id.get() == "req-42"  # the sender's own is untouched
    finally:
        request_id.reset(token)
    assert seen == ["req-42", "req-42"]


@pytest.mark.timeout(20)
def test_nested_sends_through_a_busy_one_worker_pool_finish(
    one: ThreadPoolExecutor,
) -> None:
    sig = Signal()
    depth_reached: list[int] = []

    def recurse(depth: int, **kw: Any) -> int:
        depth_reached.append(depth)
        if depth == 4:  # deeper than the pool has workers
            return depth
        inner = sig.using(one).send(Shop, depth=depth + 1)
        robust = sig.using(one, timeout=10).send_robust(Shop, depth=depth + 1)
        submitted = sig.using(one).submit(Shop, depth=depth + 1).result()
        assert [v for _, v in inner] == [v for _, v in robust]
        assert [v for _, v in inner] == [v for _, v in submitted]
        return int(inner[0][1]) + int(inner[1][1])

    def leaf(depth: int, **kw: Any) -> int:
        return 1

    sig.connect(recurse)
    sig.connect(leaf)
    result = sig.using(one).send(Shop, depth=1)
    assert [r for r, _ in result] == [recurse, leaf]
    assert max(depth_reached) == 4


@pytest.mark.timeout(20)
def test_nested_sends_across_two_busy_pools_finish(one: ThreadPoolExecutor) -> None:
    with ThreadPoolExecutor(1) as other:
        outer, inner = Signal(), Signal()

        def hop(**kw: Any) -> str:  # runs on `one`, sends through `other`
            return str(inner.using(other).send(Shop))

        def back(**kw: Any) -> Any:  # runs on `other`, sends through `one` again
            return outer_leaf.using(one).send(Shop)[0][1]

        outer_leaf = Signal()
        outer_leaf.connect(leaf := Reply("leaf"))
        outer.connect(hop)
        inner.connect(back)
        [(_, text)] = outer.using(one).send(Shop)
        assert "'leaf'" in text
        del leaf


@pytest.mark.timeout(20)
def test_a_send_from_work_the_user_put_on_the_pool_finishes(
    one: ThreadPoolExecutor,
) -> None:
    sig = Signal()
    sig.connect(r := Reply("r"))

    def user_work() -> Any:
        return sig.using(one).send(Shop)

    assert one.submit(user_work).result(timeout=15) == [(r, "r")]


@pytest.mark.timeout(20)
def test_send_cancels_receivers_not_started_after_a_failure(
    one: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fallback is switched off: after two 50 ms slices without a call
    # beginning, the sender would run record itself while boom still runs
    # (a legal steal), so a slow machine failed this test.
    monkeypatch.setattr(_threads, "PATIENCE", 600.0)
    sig = Signal()
    called: list[str] = []

    def record(**kw: Any) -> None:
        called.append("record")

    boom = Fail("boom", delay=0.1)
    sig.connect(boom)
    sig.connect(record)
    with pytest.raises(ValueError, match="boom"):
        sig.using(one).send(Shop)
    one.submit(int).result()  # the queue is drained
    assert called == []


@pytest.mark.timeout(20)
def test_send_returns_only_when_started_receivers_are_done(
    pool: ThreadPoolExecutor,
) -> None:
    sig = Signal()
    began, finished = threading.Event(), threading.Event()

    def fail(**kw: Any) -> None:
        assert began.wait(10)  # slow has begun: it will not be cancelled
        raise ValueError("fast")

    def slow(**kw: Any) -> None:
        began.set()
        time.sleep(0.3)
        finished.set()

    sig.connect(fail)
    sig.connect(slow)
    with pytest.raises(ValueError, match="fast"):
        sig.using(pool).send(Shop)
    assert finished.is_set()


def test_base_exceptions_are_never_caught(pool: ThreadPoolExecutor) -> None:
    sig = Signal()
    sig.connect(halt := Halt())
    sig.connect(r := Reply("r"))
    for view in (sig.using(pool), sig.using(None, timeout=5)):
        with pytest.raises(Stop):
            view.send(Shop)
        with pytest.raises(Stop):
            view.send_robust(Shop)
    del halt, r


class InterruptedPool(ThreadPoolExecutor):
    """A thread pool whose second ``submit`` is interrupted (Ctrl-C, say):
    it raises a BaseException in the sender's thread mid-send, once the first
    call has begun on the pool (``began``): a new pool thread can take longer
    to start than the sender takes to reach its second hand-over (seen on
    3.13t), and a call that had not begun when the send closed rightly never
    runs."""

    def __init__(self, began: threading.Event) -> None:
        super().__init__(2, thread_name_prefix="interrupted")
        self.submits = 0
        self.began = began

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submits += 1
        if self.submits == 2:
            assert self.began.wait(10), "the first call never began"
            raise Stop("interrupted")
        return super().submit(fn, *args, **kwargs)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("timeout", [None, 10.0])
def test_an_interrupted_send_waits_for_its_begun_calls_then_raises(
    timeout: float | None,
) -> None:
    """A BaseException in the sender's own thread (here, while it hands the
    second call to the pool) closes the send, so no other call begins, and
    propagates only once every call that began has ended."""
    began = threading.Event()
    pool = InterruptedPool(began)
    ended = threading.Event()
    called: list[str] = []

    def slow(**kw: Any) -> None:
        began.set()
        time.sleep(0.3)
        ended.set()

    def later(**kw: Any) -> None:
        called.append("later")

    sig = Signal()
    sig.connect(slow)
    sig.connect(later)
    try:
        with pytest.raises(Stop, match="interrupted"):
            sig.using(pool, timeout=timeout).send(Shop)
        assert ended.is_set()
    finally:
        pool.shutdown(wait=True)
    assert called == []


@pytest.mark.timeout(20)
def test_an_interrupted_send_waits_for_its_begun_calls_only_until_the_deadline() -> (
    None
):
    began = threading.Event()
    pool = InterruptedPool(began)
    release = threading.Event()

    def stuck(**kw: Any) -> None:
        began.set()
        release.wait(10)

    sig = Signal()
    sig.connect(stuck)
    sig.connect(Reply("later"), weak=False)
    started = time.monotonic()
    try:
        with pytest.raises(Stop, match="interrupted"):
            sig.using(pool, timeout=0.1).send(Shop)
        elapsed = time.monotonic() - started
    finally:
        release.set()
        pool.shutdown(wait=True)
    assert elapsed < 0.8  # the deadline, not the call's end (10 s)


@pytest.mark.timeout(20)
def test_a_receiver_not_started_by_the_deadline_never_runs(
    one: ThreadPoolExecutor,
) -> None:
    sig = Signal()
    called: list[str] = []

    def record(**kw: Any) -> None:
        called.append("record")

    sig.connect(slow := Reply("slow", delay=0.4))
    sig.connect(record)
    result = sig.using(one, timeout=0.1).send_robust(Shop)
    assert [r for r, _ in result] == [slow, record]
    assert isinstance(result[0][1], TimeoutError)
    assert "was not started" in str(result[1][1])
    one.submit(int).result()  # slow is done and record's turn has passed
    assert called == []


def test_inline_with_a_deadline(clock: Clock) -> None:
    """``using(None, timeout=t)``: inline; the deadline is checked around each
    call; a call that overruns it is reported as timed out (it cannot be
    interrupted), and later receivers are not called.  The second receiver
    passes the deadline (on the test clock) while it runs."""
    sig = Signal()
    called: list[str] = []

    def record(**kw: Any) -> None:
        called.append("record")

    def slow(**kw: Any) -> None:
        clock.pass_deadlines()
        raise ValueError("late")

    sig.connect(fast := Reply("fast"))
    sig.connect(slow)
    sig.connect(record)
    result = sig.using(None, timeout=0.1).send_robust(Shop)
    assert result[0] == (fast, "fast")
    assert result[1][0] is slow
    assert isinstance(result[1][1], TimeoutError)
    assert isinstance(result[1][1].__cause__, ValueError)  # what it raised, late
    assert result[2][0] is record
    assert "was not started" in str(result[2][1])
    with pytest.raises(TimeoutError):
        sig.using(None, timeout=0.1).send(Shop)
    assert called == []
    assert sig.using(None, timeout=0).send_robust(Shop)[0][1].__class__ is (
        TimeoutError
    )


def test_negative_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Signal().using(None, timeout=-1)


# -- submit -----------------------------------------------------------------


@pytest.mark.timeout(20)
def test_submit_returns_at_once_with_a_future_of_robust_results() -> None:
    sig = Signal()
    gate = threading.Event()

    def wait_for_gate(**kw: Any) -> str:
        assert gate.wait(10)
        return threading.current_thread().name

    sig.connect(wait_for_gate)
    sig.connect(fail := Fail("x"))
    fut = sig.submit(Shop)
    assert isinstance(fut, Future)
    assert not fut.done()
    ref = weakref.ref(fut)
    del fut
    gc.collect()
    fut = ref()
    assert fut is not None  # held while in flight
    gate.set()
    [(r0, thread_name), (r1, err)] = fut.result(timeout=10)
    assert r0 is wait_for_gate
    assert thread_name.startswith("concsignals")  # the pool concsignals owns
    assert r1 is fail
    assert isinstance(err, ValueError)


class Forgetful(Executor):
    """An out-of-process executor that, like Dask's client, forgets a job once
    nobody holds its Future: :meth:`run_all` runs, in this thread, only the
    jobs whose Futures are still alive."""

    def __init__(self) -> None:
        self.jobs: list[tuple[weakref.ref[Future[Any]], Any, tuple[Any, ...]]] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        self.jobs.append((weakref.ref(fut), fn, args))
        return fut

    def run_all(self) -> int:
        ran = 0
        for ref, fn, args in self.jobs:
            fut = ref()
            if fut is None or not fut.set_running_or_notify_cancel():
                continue
            ran += 1
            fut.set_result(fn(*args))
        return ran


forgotten: list[str] = []


def remember(signal: Any, sender: Any, **named: Any) -> None:
    forgotten.append(named["tag"])


def test_a_submit_the_caller_dropped_still_runs_on_a_forgetful_executor() -> None:
    """Nothing a caller drops is lost half-way: concsignals holds a
    ``submit()`` Future, and through it the calls handed over, until done."""
    sig = Signal()
    sig.connect(remember)
    forgetful = Forgetful()
    fut = sig.using(forgetful).submit(Shop, tag="kept")
    ref = weakref.ref(fut)
    del fut
    gc.collect()
    forgotten.clear()
    assert forgetful.run_all() == 1
    assert forgotten == ["kept"]
    gc.collect()
    assert ref() is None  # done: no longer held


@pytest.mark.timeout(20)
def test_a_submit_waited_on_inside_the_owned_pool_does_not_deadlock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A receiver run by ``submit()`` on the pool concsignals owns (here of
    one worker) submits another send and waits for it: that send runs in
    the receiver's thread instead of queueing behind it."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="owned")
    monkeypatch.setattr(_run.executors, "owned_pool", lambda: pool)
    inner = Signal()
    inner.connect(Reply("inner"), weak=False)

    def waits_for_inner(**kw: Any) -> Any:
        return [v for _, v in inner.submit(Shop).result(timeout=5)]

    outer = Signal()
    outer.connect(waits_for_inner)
    try:
        result = outer.submit(Shop).result(timeout=10)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    assert [v for _, v in result] == [["inner"]]


def where_and_what(signal: Any, sender: Any, **named: Any) -> tuple[Any, str, Any]:
    return sender, threading.current_thread().name, named


@pytest.mark.timeout(20)
def test_submit_once_the_owned_pool_is_shut_down_runs_in_the_callers_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At interpreter exit the owned pool refuses work: ``submit()`` then runs
    the send in the caller's thread (through the executor it was given)."""
    gone = ThreadPoolExecutor(1)
    gone.shutdown()
    monkeypatch.setattr(_run.executors, "owned_pool", lambda: gone)
    sig = Signal()
    sig.connect(where_and_what)
    fut = sig.submit(Shop, n=1)
    assert fut.done()
    [(r, value)] = fut.result()
    assert r is where_and_what
    assert value == (Shop, threading.current_thread().name, {"n": 1})
    with ThreadPoolExecutor(1, thread_name_prefix="given") as pool:
        fut = sig.using(pool, timeout=10).submit(Shop, n=2)
        [(r, (sender, thread, named))] = fut.result(timeout=10)
    assert (sender, named) == (Shop, {"n": 2})
    assert thread.startswith("given")


@pytest.mark.timeout(20)
def test_submit_through_a_pool_with_a_timeout(
    pool: ThreadPoolExecutor, clock: Clock
) -> None:
    """The second call ends; then the deadline passes (on the test clock)
    while the first still runs: the first timed out, the second did not."""
    second_ended, go = threading.Event(), threading.Event()

    class SecondEnded:  # a monitor
        def call_ended(self, call: Any) -> None:
            if call.index == 1:
                second_ended.set()

    def slow(**kw: Any) -> str:
        assert go.wait(10)
        return "slow"

    sig = Signal()
    sig.connect(slow)
    sig.connect(fast := Reply("fast"))
    monitoring.install(monitor := SecondEnded())
    try:
        fut = sig.using(pool, timeout=10).submit(Shop)
        assert second_ended.wait(10)
        clock.pass_deadlines()
        go.set()
        result = fut.result(timeout=10)
    finally:
        go.set()
        monitoring.uninstall(monitor)
    assert result[1] == (fast, "fast")
    assert isinstance(result[0][1], TimeoutError)


@pytest.mark.timeout(20)
def test_submit_through_a_pool_resolves_when_the_last_call_finishes(
    pool: ThreadPoolExecutor, process_pool: Executor
) -> None:
    sig = Signal()
    gate = threading.Event()

    def wait_for_gate(**kw: Any) -> str:
        assert gate.wait(10)
        return "opened"

    sig.connect(fail := Fail("x"))
    sig.connect(wait_for_gate)
    fut = sig.using(pool).submit(Shop)
    time.sleep(0.05)
    assert not fut.done()
    gate.set()
    [(r0, err), (r1, opened)] = fut.result(timeout=10)
    assert (r0, r1, opened) == (fail, wait_for_gate, "opened")
    assert isinstance(err, ValueError)
    sig.disconnect(wait_for_gate)  # cannot be pickled: a nested function
    sig.connect(r := Reply("r", delay=0.05))
    fut = sig.using(process_pool).submit(Shop)
    [(r0, err), (r1, value)] = fut.result(timeout=10)
    assert (r0, r1, value) == (fail, r, "r")
    assert "fail_deep" in str(err.__cause__)  # the worker's traceback
    empty = Signal().using(pool).submit(Shop)
    assert empty.result(timeout=1) == []


@pytest.mark.timeout(20)
def test_cancelling_a_submitted_send_stops_calls_not_begun(
    one: ThreadPoolExecutor,
) -> None:
    sig = Signal()
    called: list[str] = []

    def record(**kw: Any) -> None:
        called.append("record")

    sig.connect(slow := Reply("slow", delay=0.2))
    sig.connect(record)
    fut = sig.using(one).submit(Shop)
    assert fut.cancel()
    one.submit(int).result(timeout=10)  # slow is done and record's turn passed
    assert called == []
    del slow


def test_a_base_exception_reaches_the_submitted_future(
    pool: ThreadPoolExecutor,
) -> None:
    sig = Signal()
    sig.connect(halt := Halt())
    for fut in (sig.using(pool).submit(Shop), sig.submit(Shop)):
        with pytest.raises(Stop):
            fut.result(timeout=10)
    del halt


def test_user_executors_are_never_shut_down(pool: ThreadPoolExecutor) -> None:
    sig = Signal(executor=pool)
    sig.connect(r := Reply("r"))
    sig.send(Shop)
    sig.submit(Shop).result()
    sig.using(pool, timeout=1).send_robust(Shop)
    assert pool.submit(int).result() == 0
    del r


@pytest.mark.timeout(60)
def test_the_owned_pool_is_shut_down_at_exit() -> None:
    script = textwrap.dedent(
        """
        import atexit, time
        seen = {}
        # Registered first, so it runs after concsignals' own exit handler.
        atexit.register(
            lambda: print("shut down:", seen["pool"]._shutdown, executors._owned)
        )
        from concsignals import Signal, executors
        sig = Signal()
        def slow(**kw):
            time.sleep(0.3)
            print("receiver done", flush=True)
        sig.connect(slow)
        sig.submit(None)
        seen["pool"] = executors.owned_pool()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["receiver done", "shut down: True None"]


# -- processes --------------------------------------------------------------


class SpyPool(Executor):
    """Counts submissions and hands them to a real process pool."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return self.inner.submit(fn, *args, **kwargs)


@pytest.mark.timeout(30)
def test_an_unpicklable_receiver_fails_in_its_slot_or_before_anything_is_sent(
    process_pool: Executor,
) -> None:
    spy = SpyPool(process_pool)
    sig = Signal()

    def local(**kw: Any) -> str:  # a nested function cannot be pickled
        return "never"

    sig.connect(a := Reply("a"))
    sig.connect(local)
    sig.connect(b := Reply("b"))
    result = sig.using(spy).send_robust(Shop)
    assert result[0] == (a, "a")
    assert result[2] == (b, "b")
    assert result[1][0] is local
    err = result[1][1]
    assert isinstance(err, pickle.PicklingError)
    assert "local" in str(err)
    assert "cannot be pickled" in str(err)
    assert spy.submitted == 2
    with pytest.raises(pickle.PicklingError, match="local"):
        sig.using(spy).send(Shop)
    assert spy.submitted == 2  # nothing half-sent


@pytest.mark.timeout(30)
def test_an_unpicklable_argument_is_named(process_pool: Executor) -> None:
    spy = SpyPool(process_pool)
    sig = Signal()
    sig.connect(a := Reply("a"))
    lock = threading.Lock()
    [(r, err)] = sig.using(spy).send_robust(Shop, ok=1, lock=lock)
    assert r is a
    assert isinstance(err, pickle.PicklingError)
    assert "keyword argument 'lock'" in str(err)
    assert "Reply('a')" in str(err)
    assert isinstance(err.__cause__, TypeError)  # what pickle said of the lock
    assert "lock" in str(err.__cause__)
    with pytest.raises(pickle.PicklingError, match="'lock'"):
        sig.using(spy).send(Shop, lock=lock)
    assert spy.submitted == 0
    [(_, err)] = sig.using(spy).send_robust(lock)
    assert f"sender {lock!r} cannot be pickled" in str(err)
    # Each argument pickles alone, but the send's did not: none is named.
    [(_, err)] = sig.using(spy).send_robust(Shop, once=PicklesOnlyLater())
    assert "the send's arguments cannot be pickled" in str(err)
    assert spy.submitted == 0


class PicklesOnlyLater:
    """Refuses to be pickled the first time only."""

    refused = False

    def __reduce__(self) -> Any:
        if not PicklesOnlyLater.refused:
            PicklesOnlyLater.refused = True
            raise TypeError("not this time")
        return (PicklesOnlyLater, ())


@pytest.mark.timeout(30)
def test_a_worker_process_gets_a_signal_ref_naming_the_signal(
    process_pool: Executor,
) -> None:
    announced.connect(where)
    try:
        [(r, (pid, equal, resolves))] = announced.using(process_pool).send(Shop)
    finally:
        announced.disconnect(where)
    assert r is where
    assert pid != __import__("os").getpid()
    assert equal and resolves
    ref = SignalRef.of(announced)
    assert str(ref) == "tests.receivers.announced"
    assert ref == pickle.loads(pickle.dumps(ref))
    assert ref.resolve() is announced
    anonymous = SignalRef.of(Signal())
    assert anonymous.module is None
    with pytest.raises(LookupError, match="not found in any module"):
        anonymous.resolve()


def test_signal_refs_name_places_and_compare_by_them() -> None:
    paid = SignalRef.of(Signals.paid)
    assert str(paid) == "tests.receivers.Signals.paid"
    assert paid.resolve() is Signals.paid
    assert paid == Signals.paid
    # Two refs to one place are equal whatever their descriptions.
    assert SignalRef("m", "n", "one") == SignalRef("m", "n", "two")
    assert hash(SignalRef("m", "n", "one")) == hash(SignalRef("m", "n", "two"))
    # Unplaced refs are equal only if their descriptions are.
    one, two = Signal(), Signal()  # both alive: distinct reprs
    first, second = SignalRef.of(one), SignalRef.of(two)
    assert first != second
    assert first == SignalRef(None, None, first.description)
    # A ref that cannot be resolved equals no signal.
    assert SignalRef("tests.no_such_module", "x", "gone") != Signals.paid
    with pytest.raises(LookupError):
        SignalRef("tests.receivers", None, "half placed").resolve()


@pytest.mark.timeout(30)
def test_a_base_exception_in_a_worker_process_propagates(
    process_pool: Executor,
) -> None:
    sig = Signal()
    sig.connect(halt := Halt())
    with pytest.raises(Stop):
        sig.using(process_pool).send_robust(Shop)
    del halt


class SharedFailure(Executor):
    """An out-of-process executor whose every call fails with one and the
    same exception instance (as a broken pool's futures do)."""

    def __init__(self, err: BaseException) -> None:
        self.err = err

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        fut.set_running_or_notify_cancel()
        fut.set_exception(self.err)
        return fut


class Uncopyable(Exception):
    """An exception ``copy.copy`` cannot copy (``__copy__`` comes first, before
    any reducer registered with ``copyreg``, as tblib's are)."""

    def __copy__(self) -> Any:
        raise TypeError("not copyable")


def raised(err: BaseException) -> BaseException:
    try:
        raise err
    except BaseException as caught:
        return caught


@pytest.mark.parametrize("kind", [LookupError, Uncopyable])
def test_one_executor_failure_shared_by_slots_gives_each_its_own_copy(
    kind: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    """Each slot's error is its own instance: the first slot gets the
    executor's exception, the others a copy caused by it, with its
    traceback (a ``RuntimeError`` naming it if it cannot be copied)."""
    shared = raised(kind("pool broke"))
    sig = Signal()
    rs = [Reply("a"), Reply("b"), Reply("c")]
    for r in rs:
        sig.connect(r)
    with caplog.at_level(logging.CRITICAL, logger="concsignals"):
        result = sig.using(SharedFailure(shared)).send_robust(Shop)
    errors = [err for _, err in result]
    assert errors[0] is shared
    assert len({id(e) for e in errors}) == 3
    for copy_ in errors[1:]:
        assert copy_.__cause__ is shared
        assert copy_.__traceback__ is shared.__traceback__
        if kind is Uncopyable:
            assert type(copy_) is RuntimeError
            assert str(copy_) == "Uncopyable: pool broke"
        else:
            assert type(copy_) is LookupError and copy_.args == ("pool broke",)


# -- the worker's side, in this process ---------------------------------------
# A process pool runs executors.call_pickled in its workers, out of reach of
# coverage and of mutation testing's record of which test calls what; here
# it runs in the test process, as a worker would run it.


def echo(signal: Any, sender: Any, **named: Any) -> tuple[Any, Any, dict[str, Any]]:
    return signal, sender, named


def test_a_worker_calls_the_receiver_with_the_signal_sender_and_arguments() -> None:
    args = executors.dumps_args(announced, Shop, {"order": 7})
    signal, sender, named = executors.call_pickled(pickle.dumps(echo), args, 0)
    assert signal == announced and signal.resolve() is announced
    assert sender is Shop
    assert named == {"order": 7}


def test_a_worker_runs_the_call_inside_its_carriers_and_tells_them_the_error() -> None:
    carriers = (pickle.dumps(Carried("outer")), pickle.dumps(Carried("inner")))
    args = executors.dumps_args(announced, Shop, {"order": 7})
    Carried.log.clear()
    echoed = executors.call_pickled(pickle.dumps(echo), args, 0, carriers)
    assert echoed == (announced, Shop, {"order": 7})
    assert Carried.log == [
        ("enter", "outer", None),
        ("enter", "inner", None),
        ("exit", "inner", None),
        ("exit", "outer", None),
    ]
    Carried.log.clear()
    with pytest.raises(ValueError, match="boom"):
        executors.call_pickled(pickle.dumps(Fail("boom")), args, 0, carriers)
    assert Carried.log == [
        ("enter", "outer", None),
        ("enter", "inner", None),
        ("exit", "inner", ValueError),
        ("exit", "outer", ValueError),
    ]


# -- dask -------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_dask_runs_every_call_even_when_two_are_equal(dask_executor: Any) -> None:
    """Dask deduplicates equal tasks; a signal's calls must each run."""
    sig = Signal()
    tok = Token(delay=0.2)
    sig.connect(tok, sender=Shop)
    sig.connect(tok)  # the same receiver again, for any sender
    first = sig.using(dask_executor).submit(Shop)
    second = sig.using(dask_executor).submit(Shop)
    tokens = [t for fut in (first, second) for _, t in fut.result(timeout=30)]
    assert len(set(tokens)) == 4


@pytest.mark.timeout(60)
def test_dask_send_after_a_failure_never_hangs(dask_executor: Any) -> None:
    """A failure cancels the later calls; one that finishes while being
    cancelled must not leave send waiting forever (it once did)."""
    sig = Signal()
    receivers = [Fail("first")] + [Reply(f"r{i}") for i in range(6)]
    for r in receivers:
        sig.connect(r)
    for _ in range(30):
        with pytest.raises(ValueError, match="first"):
            sig.using(dask_executor).send(Shop)


# -- senders racing writers on a saturated pool -----------------------------


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("switch_often")
def test_senders_racing_writers_on_a_saturated_pool() -> None:
    """Permanent receivers are connected first and never disconnected: every
    send must return all of them, first, in order; churning receivers come
    after them, each at most once; every response is its receiver's own."""
    sig = Signal()
    permanent = [Reply(f"p{i}") for i in range(5)]
    for r in permanent:
        sig.connect(r)
    churn = [Reply(f"c{i}") for i in range(8)]
    stop = threading.Event()
    errors: list[str] = []
    sends = [0]

    def writer(seed: int) -> None:
        rnd = random.Random(seed)
        while not stop.is_set():
            r = rnd.choice(churn)
            if rnd.random() < 0.5:
                sig.connect(r)
            else:
                sig.disconnect(r)

    def check(result: list[tuple[Any, Any]]) -> None:
        got = [r for r, _ in result]
        if got[: len(permanent)] != permanent:
            errors.append(f"permanent receivers missing or out of order: {got}")
        if len(set(map(id, got))) != len(got):
            errors.append(f"a receiver twice: {got}")
        if any(r.tag != resp for r, resp in result):
            errors.append(f"a response from the wrong receiver: {result}")

    def sender(pool: ThreadPoolExecutor, nested: bool) -> None:
        view = sig.using(pool)
        while not stop.is_set():
            check(view.send(Shop))
            check(view.send_robust(Shop))
            if nested:
                check(view.submit(Shop).result())
            sends[0] += 1

    with ThreadPoolExecutor(2) as pool:
        threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
        threads += [
            threading.Thread(target=sender, args=(pool, i % 2 == 0)) for i in range(4)
        ]
        for t in threads:
            t.start()
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join(30)
    assert errors == []
    assert sends[0] > 10


# -- the demo ---------------------------------------------------------------


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "concsignals", *args],
        capture_output=True,
        text=True,
        timeout=100,
    )


@pytest.mark.timeout(120)
def test_the_demo_runs_and_prints_a_table() -> None:
    out = run_module("demo", "--scale", "0.1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.split()[:2] == ["I/O", "receivers,"] for line in lines)
    table = [line.split() for line in lines if line.split()[:1] in (["I/O"], ["CPU"])]
    assert [row[0] for row in table[-2:]] == ["I/O", "CPU"]
    assert "results identical and in connection order everywhere: yes" in out.stdout


def test_the_module_prints_usage_and_refuses_unknown_commands() -> None:
    plain = run_module()
    assert plain.returncode == 0
    assert plain.stdout.startswith("usage: python -m concsignals")
    unknown = run_module("frobnicate")
    assert unknown.returncode == 2
    assert "unknown command 'frobnicate'" in unknown.stderr


# -- issue 11 items 5 and 6 ------------------------------------------------------


class OwnThread(Executor):
    """An in-process executor concsignals cannot see into: one thread of its
    own, started its own way, fed from a queue."""

    concsignals_in_process = True

    def __init__(self) -> None:
        import queue

        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            fut, fn, args = job
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(*args))
                except BaseException as err:
                    fut.set_exception(err)

    def submit(self, fn: Any, /, *args: Any, **kw: Any) -> Any:
        fut: Future[Any] = Future()
        self.jobs.put((fut, fn, args))
        return fut

    def shutdown(self, wait: bool = True, **kw: Any) -> None:
        self.jobs.put(None)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["ThreadPoolExecutor", "own thread"])
def test_a_nested_send_on_a_fresh_one_worker_pool_is_detected(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11 item 6: a fresh worker's first task was missed without
    CPython's ``Thread._args``; detection now reads no private attribute.
    The fallback is switched off (``PATIENCE``): only detection can finish."""
    monkeypatch.setattr(_threads, "PATIENCE", 600.0)
    sig = Signal()
    sig.connect(leaf := Reply("leaf"))
    outer = Signal()
    for _ in range(30):
        ex: Any = ThreadPoolExecutor(1) if kind != "own thread" else OwnThread()

        def nested(ex: Any = ex, **kw: Any) -> Any:
            # The pool's only worker waits on this send: it must run the
            # calls itself, at once (no fallback delay needed).
            return sig.using(ex, timeout=5).send(Shop)

        outer.connect(nested, weak=False)
        try:
            [(_, inner)] = outer.using(ex).send(Shop)
            assert inner == [(leaf, "leaf")]
        finally:
            outer.disconnect(nested)
            ex.shutdown()


def test_running_on_answers_from_concsignals_own_mark(
    one: ThreadPoolExecutor,
) -> None:
    """True inside a call concsignals runs on the pool, not elsewhere; work
    a user put on the pool is not marked (the fallback covers it)."""
    assert not executors.running_on(one)
    assert not one.submit(executors.running_on, one).result()
    sig = Signal()
    sig.connect(lambda **kw: executors.running_on(one), weak=False)
    assert sig.using(one).send(Shop)[0][1] is True


@pytest.mark.timeout(60)
def test_submit_at_interpreter_exit_runs_the_send_in_the_callers_thread() -> None:
    """Issue 11 item 5: from a non-daemon thread still running at exit."""
    script = textwrap.dedent(
        """
        import threading, time
        from concsignals import Signal
        sig = Signal()
        sig.connect(lambda **kw: threading.current_thread().name, weak=False)
        sig.submit(None).result()  # the owned pool exists
        def late():
            time.sleep(0.5)  # the main thread has exited by now
            fut = sig.submit(None)
            print("done:", fut.done(), fut.result()[0][1])
        threading.Thread(target=late, name="late").start()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done: True late"


# -- a broken process pool ------------------------------------------------------


@pytest.mark.timeout(90)
def test_a_broken_process_pool_lands_in_every_slot_each_its_own_exception() -> None:
    """A worker that dies breaks the pool: CPython sets one BrokenProcessPool
    instance on every pending future.  send_robust puts it in each affected
    slot, each slot its own instance, and raises nothing."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from tests.receivers import Die

    sig = Signal()
    receivers = [Die(), Reply("a"), Reply("b")]
    for r in receivers:
        sig.connect(r)
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        result = sig.using(pool).send_robust(Shop)
    assert [r for r, _ in result] == receivers
    errors = [err for _, err in result]
    assert all(isinstance(err, BrokenProcessPool) for err in errors), errors
    assert len({id(err) for err in errors}) == len(errors)


def test_after_a_fork_the_child_makes_its_own_pool_with_a_new_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the fork hook does in the child, run here: the inherited pool and
    its lock are forgotten; the next submit() makes a working pool."""
    monkeypatch.setattr(executors, "_owned", executors._owned)  # restored after
    monkeypatch.setattr(executors, "_owned_lock", executors._owned_lock)
    inherited, old_lock = executors.owned_pool(), executors._owned_lock
    executors.reset_owned_after_fork()
    assert executors._owned is None
    assert executors._owned_lock is not old_lock
    fresh = executors.owned_pool()
    try:
        assert fresh is not inherited
        assert fresh.submit(lambda: "ran").result(timeout=10) == "ran"
    finally:
        fresh.shutdown(wait=False)


def test_a_signal_ref_names_an_importable_module_before_the_script(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A signal reachable from the script (``__main__``, or ``__mp_main__`` in
    a worker) and from a module is named by the module: other processes may
    not import the script by that name.  Entries of ``sys.modules`` that are
    not modules, or whose namespace changes as it is read, are passed over."""
    import types

    sig = Signal()
    mp_main = types.ModuleType("__mp_main__")
    mp_main.alias = sig  # type: ignore[attr-defined]
    monkeypatch.delitem(sys.modules, "__mp_main__", raising=False)
    monkeypatch.setitem(sys.modules, "__mp_main__", mp_main)  # before cs_home
    monkeypatch.setitem(sys.modules, "cs_not_a_module", object())

    class Importing(types.ModuleType):
        """A module whose namespace changes while it is copied (another
        thread is importing it): passed over."""

        @property  # type: ignore[misc]
        def __dict__(self) -> Any:
            raise RuntimeError("dictionary changed size during iteration")

    monkeypatch.setitem(sys.modules, "cs_importing", Importing("cs_importing"))
    monkeypatch.setattr(sys.modules["__main__"], "cs_alias", sig, raising=False)
    home = types.ModuleType("cs_home")
    home.sig = sig  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cs_home", home)
    ref = SignalRef.of(sig)
    assert (ref.module, ref.name) == ("cs_home", "sig")


def test_a_signals_ref_is_made_once() -> None:
    """The location is looked up once per signal (a scan of sys.modules)."""
    sig = Signal()
    assert SignalRef.of(sig) is SignalRef.of(sig)


@pytest.mark.timeout(20)
def test_a_call_still_running_at_the_deadline_did_not_finish(
    pool: ThreadPoolExecutor,
) -> None:
    sig = Signal()
    sig.connect(slow := Reply("slow", delay=0.5))
    [(r, err)] = sig.using(pool, timeout=0.1).send_robust(Shop)
    assert r is slow and isinstance(err, TimeoutError)
    assert str(err).startswith(f"receiver {slow!r} did not finish within the 0.1 s")


# -- issue 21: submit() on the one engine ---------------------------------------


@pytest.mark.timeout(20)
def test_a_submit_on_processes_ends_the_slot_of_a_receiver_gone_since_the_snapshot(
    process_pool: Executor,
) -> None:
    """Issue 21, item 1: the Future never resolved."""
    from tests.test_behaviour import KillsWhenPickled, doomed

    sig = Signal()
    doomed[:] = [Reply("doomed")]
    sig.connect(a := Reply("a"))
    sig.connect(doomed[0])  # weak: dies while the send pickles its arguments
    fut = sig.using(process_pool).submit(Shop, arg=KillsWhenPickled())
    assert fut.result(timeout=10) == [(a, "a")]


@pytest.mark.timeout(20)
def test_cancelling_a_submit_with_async_receivers_cancels_its_calls_on_processes() -> (
    None
):
    """Issue 21, item 2: the calls handed to the process pool all ran."""
    from tests.test_asyncio import Queued

    queued = Queued()
    handed = threading.Event()
    submit = queued.submit

    def submit_and_tell(fn: Any, /, *args: Any, **kw: Any) -> Any:
        fut = submit(fn, *args, **kw)
        handed.set()
        return fut

    queued.submit = submit_and_tell  # type: ignore[method-assign]

    async def first(**kw: Any) -> str:
        return "async"

    sig = Signal()
    sig.connect(first)
    sig.connect(b := Reply("b"))
    try:
        fut = sig.using(queued).submit(Shop)
        assert handed.wait(10)
        assert fut.cancel()
        assert queued.queued[0].cancelled()
    finally:
        queued.shutdown()
    del b


def owner(signal: Any, sender: Any, **named: Any) -> str:
    return "done"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("where", ["owned pool", "threads", "processes"])
def test_a_finished_submit_future_keeps_nothing_of_the_send_alive(
    where: str, pool: ThreadPoolExecutor, process_pool: Executor
) -> None:
    """Issue 21, item 9: the Future's done-callbacks held the send, so its
    sender and arguments, for as long as the caller kept the Future."""
    executor = {"owned pool": None, "threads": pool, "processes": process_pool}[where]
    sig = Signal()
    sig.connect(owner)
    sender, argument = Shop(), Shop()
    fut = sig.using(executor).submit(sender, arg=argument)
    assert [v for _, v in fut.result(timeout=10)] == ["done"]
    gone = weakref.ref(sender), weakref.ref(argument)
    del sender, argument
    gc.collect()
    assert [ref() for ref in gone] == [None, None]
    assert fut.done()
