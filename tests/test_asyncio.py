"""Async receivers, asend/asend_robust, and async receivers from sync send.

Async tests are plain functions that drive their own loop with ``run_clean``,
which also fails the test if the loop reported anything (such as "Task
exception was never retrieved") or left a task behind.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import inspect
import logging
import threading
import time
import unittest.mock
import weakref
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pytest

import concsignals._run
from concsignals import Signal
from concsignals import _async as casync
from concsignals._callables import is_async_receiver
from tests.receivers import Reply, Shop

# -- helpers ---------------------------------------------------------------------


def run_clean(main: Callable[[], Awaitable[Any]], *, alone: bool = True) -> Any:
    """Run ``main()`` on a fresh loop; fail on loop reports or leftover tasks.

    ``alone``: no other thread is sending, so nothing may stay in flight.
    """
    reports: list[dict[str, Any]] = []

    async def wrapper() -> Any:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: reports.append(ctx))
        result = await main()
        leftover = asyncio.all_tasks() - {asyncio.current_task()}
        assert leftover == set(), f"tasks left running: {leftover}"
        return result

    result = asyncio.run(wrapper())
    gc.collect()
    assert reports == []
    if alone:
        assert casync._in_flight == set()
    return result


@pytest.fixture
def asyncio_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail if asyncio logged anything (e.g. "never retrieved") in the test."""
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        yield
        gc.collect()
    assert [r for r in caplog.records if r.name == "asyncio"] == []


def sync_r(tag: object, log: list[Any] | None = None) -> Any:
    def r(sender: object, **kwargs: Any) -> object:
        if log is not None:
            log.append(tag)
        return tag

    r.__qualname__ = f"sync_{tag}"
    return r


def async_r(tag: object, log: list[Any] | None = None, delay: float = 0) -> Any:
    async def r(sender: object, **kwargs: Any) -> object:
        if log is not None:
            log.append(tag)
        await asyncio.sleep(delay)
        return tag

    r.__qualname__ = f"async_{tag}"
    return r


class Boom(Exception):
    pass


class Fatal(BaseException):
    """Not an Exception: must never be caught or put in a slot."""


# -- detecting async receivers at connect ----------------------------------------


class AsyncMethods:
    async def method(self, sender: object, **kwargs: Any) -> str:
        return "method"

    def sync_method(self, sender: object, **kwargs: Any) -> str:
        return "sync_method"


class AsyncCallable:
    async def __call__(self, sender: object, **kwargs: Any) -> str:
        return "callable"


class SyncCallable:
    def __call__(self, sender: object, **kwargs: Any) -> str:
        return "sync callable"


async def coroutine_function(sender: object, **kwargs: Any) -> str:
    return "coroutine"


async def takes_extra(extra: str, sender: object, **kwargs: Any) -> str:
    return extra


def sync_function(sender: object, **kwargs: Any) -> str:
    return "sync"


def returns_awaitable(sender: object, **kwargs: Any) -> Any:
    return coroutine_function(sender)


def async_kinds() -> list[tuple[str, Any, str]]:
    """(name, receiver, its response) for every kind of async receiver."""
    holder = AsyncMethods()
    kinds = [
        ("coroutine function", coroutine_function, "coroutine"),
        ("bound async method", holder.method, "method"),
        ("callable with async __call__", AsyncCallable(), "callable"),
        ("partial of coroutine function", functools.partial(takes_extra, "p"), "p"),
        ("partial of bound async method", functools.partial(holder.method), "method"),
        (
            "partial of partial of callable",
            functools.partial(functools.partial(AsyncCallable())),
            "callable",
        ),
        ("AsyncMock", unittest.mock.AsyncMock(return_value="mock"), "mock"),
    ]
    from asgiref.sync import markcoroutinefunction as asgiref_mark

    def asgiref_marked(sender: object, **kwargs: Any) -> Any:
        return coroutine_function(sender)

    marked = asgiref_mark(asgiref_marked)
    kinds.append(("asgiref markcoroutinefunction", marked, "coroutine"))
    if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+

        def marked_sync(sender: object, **kwargs: Any) -> Any:
            return coroutine_function(sender)

        inspect.markcoroutinefunction(marked_sync)
        kinds.append(("inspect.markcoroutinefunction", marked_sync, "coroutine"))
    return kinds


def sync_kinds() -> list[tuple[str, Any]]:
    return [
        ("function", sync_function),
        ("lambda", lambda sender, **kw: None),
        ("bound method", AsyncMethods().sync_method),
        ("callable object", SyncCallable()),
        ("partial of function", functools.partial(sync_function)),
        ("function returning a coroutine, unmarked", returns_awaitable),
        ("a class", SyncCallable),
        ("a builtin", print),
    ]


@pytest.mark.parametrize(
    "name, receiver, response", async_kinds(), ids=[k[0] for k in async_kinds()]
)
def test_every_kind_of_async_receiver_is_detected_and_awaited(name, receiver, response):
    assert is_async_receiver(receiver)
    sig = Signal()
    sig.connect(receiver, weak=False)
    (entry,) = sig._snapshot.entries
    assert entry.is_async
    assert sig._snapshot.has_async

    async def main() -> Any:
        return await sig.asend(sender=None)

    assert run_clean(main) == [(receiver, response)]
    assert sig.send(sender=None) == [(receiver, response)]


@pytest.mark.parametrize(
    "name, receiver", sync_kinds(), ids=[k[0] for k in sync_kinds()]
)
def test_sync_receivers_are_not_taken_for_async(name, receiver):
    assert not is_async_receiver(receiver)


def test_markcoroutinefunction_of_python_312_is_recognised_when_present():
    # On 3.11 inspect has no markcoroutinefunction; emulate 3.12's marker only
    # where the attribute it reads exists, else the test has nothing to check.
    if not hasattr(inspect, "markcoroutinefunction"):
        pytest.skip("inspect.markcoroutinefunction needs Python 3.12+")

    class Obj:
        def __call__(self, sender: object, **kwargs: Any) -> Any:
            return coroutine_function(sender)

    obj = Obj()
    inspect.markcoroutinefunction(obj)
    assert is_async_receiver(obj)


def test_a_signal_with_only_sync_receivers_takes_the_inline_fast_path(monkeypatch):
    sig = Signal()
    r = sync_r("s")
    sig.connect(r)
    assert not sig._snapshot.has_async

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the fast path must not leave Signal.send")

    monkeypatch.setattr(concsignals._run, "run", forbidden)
    monkeypatch.setattr(casync, "send_from_sync", forbidden)
    assert sig.send(sender=None) == [(r, "s")]


# -- asend: results, ordering, concurrency ----------------------------------------


def test_asend_returns_sync_and_async_results_interleaved_in_connection_order():
    sig = Signal()
    rs = [
        sync_r(0),
        async_r(1, delay=0.03),
        sync_r(2),
        async_r(3),
        async_r(4, delay=0.01),
        sync_r(5),
    ]
    for r in rs:
        sig.connect(r)

    async def main() -> Any:
        return (
            await sig.asend(sender="s", x=1),
            await sig.asend_robust(sender="s", x=1),
        )

    plain, robust = run_clean(main)
    assert plain == robust == [(r, i) for i, r in enumerate(rs)]


def test_receivers_get_signal_sender_and_named_arguments():
    sig = Signal()
    seen: list[Any] = []

    async def a(**kwargs: Any) -> None:
        seen.append(("a", kwargs))

    def s(**kwargs: Any) -> None:
        seen.append(("s", kwargs))

    sig.connect(a)
    sig.connect(s)
    named = {"executor": 1, "timeout": 2, "robust": 3, "self": 4}

    async def main() -> None:
        await sig.asend("sender", **named)
        await sig.asend_robust(sender="sender", **named)

    run_clean(main)
    sig.send("sender", **named)
    expected = {"signal": sig, "sender": "sender", **named}
    # asend runs the two side by side: either may be first.
    assert (
        sorted(seen, key=lambda call: call[0])
        == [("a", expected)] * 3 + [("s", expected)] * 3
    )


def test_parity_with_django_asend_and_asend_robust():
    """Same receivers, same results as Django (whose order puts sync first)."""
    pytest.importorskip("django", reason="needs Django: the dev extra, .[dev]")
    import django.dispatch

    def sync_ok(sender: object, **kwargs: Any) -> str:
        return f"sync {kwargs['n']}"

    async def async_ok(sender: object, **kwargs: Any) -> str:
        await asyncio.sleep(0)
        return f"async {kwargs['n']}"

    async def async_fail(sender: object, **kwargs: Any) -> None:
        raise Boom("async")

    def sync_fail(sender: object, **kwargs: Any) -> None:
        raise Boom("sync")

    receivers = [async_ok, sync_ok, async_fail, sync_fail]
    ours, theirs = Signal(), django.dispatch.Signal()
    for r in receivers[:2]:
        ours.connect(r)
        theirs.connect(r)

    def canon(result: list[tuple[Any, Any]]) -> list[tuple[str, str]]:
        return sorted(
            (r.__name__, repr(v) if isinstance(v, Exception) else v) for r, v in result
        )

    async def both(method: str) -> tuple[Any, Any]:
        mine = await getattr(ours, method)(sender=None, n=1)
        django_result = await getattr(theirs, method)(sender=None, n=1)
        return mine, django_result

    mine, django_result = run_clean(lambda: both("asend"))
    assert canon(mine) == canon(django_result)
    assert [r for r, _ in mine] == receivers[:2]  # ours: connection order
    assert [r for r, _ in django_result] == [sync_ok, async_ok]  # Django: sync first

    for r in receivers[2:]:
        ours.connect(r)
        theirs.connect(r)
    logging.getLogger("django.dispatch").disabled = True
    try:
        mine, django_result = run_clean(lambda: both("asend_robust"))
    finally:
        logging.getLogger("django.dispatch").disabled = False
    assert canon(mine) == canon(django_result)
    assert [r for r, _ in mine] == receivers

    # The sync send_robust runs the async receivers too, in both.
    logging.getLogger("django.dispatch").disabled = True
    logging.getLogger("concsignals").disabled = True
    try:
        mine = ours.send_robust(sender=None, n=2)
        django_result = theirs.send_robust(sender=None, n=2)
    finally:
        logging.getLogger("django.dispatch").disabled = False
        logging.getLogger("concsignals").disabled = False
    assert canon(mine) == canon(django_result)
    assert [r for r, _ in mine] == receivers

    # Inside a running loop, both refuse a sync send to async receivers.
    for signal in (ours, theirs):
        for r in (async_fail, sync_fail):
            signal.disconnect(r)

    async def sync_send_in_loop() -> None:
        for signal in (ours, theirs):
            with pytest.raises(RuntimeError):
                signal.send(sender=None, n=3)

    run_clean(sync_send_in_loop)


def test_async_receivers_run_concurrently():
    """Each receiver waits until all have started: only concurrency finishes."""
    sig = Signal()
    n = 5
    started = 0
    everyone: asyncio.Event | None = None

    async def r(sender: object, **kwargs: Any) -> int:
        nonlocal started
        assert everyone is not None
        started += 1
        if started == n:
            everyone.set()
        await everyone.wait()
        return started

    rs = [functools.partial(r) for _ in range(n)]
    for p in rs:
        sig.connect(p, weak=False)

    async def main() -> Any:
        nonlocal everyone
        everyone = asyncio.Event()
        return await asyncio.wait_for(sig.asend(sender=None), 5)

    assert run_clean(main) == [(p, n) for p in rs]


def test_async_receivers_begin_in_connection_order():
    sig = Signal()
    log: list[int] = []
    rs = [async_r(i, log, delay=0.001 * (10 - i)) for i in range(10)]
    for r in rs:
        sig.connect(r)

    async def main() -> Any:
        return await sig.asend(sender=None)

    assert run_clean(main) == [(r, i) for i, r in enumerate(rs)]
    assert log == list(range(10))


@pytest.mark.timeout(20)
def test_a_sleeping_sync_receiver_does_not_block_the_loop():
    sig = Signal()
    loop_thread: list[int] = []
    ran_on: list[int] = []

    def sleepy(sender: object, **kwargs: Any) -> str:
        ran_on.append(threading.get_ident())
        time.sleep(0.3)
        return "slept"

    sig.connect(sleepy)

    async def main() -> Any:
        loop_thread.append(threading.get_ident())
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        result = await sig.asend(sender=None)
        during = ticks - before
        stop.set()
        await tick_task
        return result, during

    result, during = run_clean(main)
    assert result == [(sleepy, "slept")]
    # 300 ms at one tick per 10 ms: ~30 if the loop is free, 0 or 1 if blocked.
    assert during >= 5
    assert ran_on != loop_thread


def test_without_an_executor_sync_receivers_run_in_order_in_one_worker_thread():
    sig = Signal()
    calls: list[tuple[int, int]] = []

    def make(i: int) -> Any:
        def r(sender: object, **kwargs: Any) -> int:
            calls.append((i, threading.get_ident()))
            time.sleep(0.002)
            return i

        return r

    rs = [make(i) for i in range(6)]
    for r in rs:
        sig.connect(r)

    async def main() -> Any:
        return threading.get_ident(), await sig.asend(sender=None)

    loop_thread, result = run_clean(main)
    assert result == [(r, i) for i, r in enumerate(rs)]
    assert [i for i, _ in calls] == list(range(6))
    (worker,) = {t for _, t in calls}
    assert worker != loop_thread


@pytest.mark.parametrize("how", ["Signal(executor=)", "using(executor)"])
def test_with_an_executor_sync_receivers_run_on_it(how):
    pool = ThreadPoolExecutor(2, thread_name_prefix="mine")
    threads: list[str] = []

    def r(sender: object, **kwargs: Any) -> str:
        threads.append(threading.current_thread().name)
        return "ok"

    try:
        if how == "Signal(executor=)":
            sig = Signal(executor=pool)
            target: Any = sig
        else:
            sig = Signal()
            target = sig.using(pool)
        sig.connect(r)
        sig.connect(async_r("a"), weak=False)

        async def main() -> Any:
            return await target.asend(sender=None), await target.asend_robust(None)

        plain, robust = run_clean(main)
    finally:
        pool.shutdown()
    assert [v for _, v in plain] == [v for _, v in robust] == ["ok", "a"]
    assert len(threads) == 2
    assert all(name.startswith("mine") for name in threads)


def test_receivers_see_the_senders_context_variables():
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    sig = Signal()

    async def a(sender: object, **kwargs: Any) -> str:
        return var.get()

    def s(sender: object, **kwargs: Any) -> str:
        return var.get()

    sig.connect(a)
    sig.connect(s)

    async def main() -> Any:
        var.set("request-42")
        return await sig.asend(sender=None)

    assert [v for _, v in run_clean(main)] == ["request-42", "request-42"]


def test_asend_with_no_receivers_returns_an_empty_list():
    async def main() -> Any:
        return await Signal().asend(None), await Signal().asend_robust(None)

    assert run_clean(main) == ([], [])


def test_bound_methods_come_back_as_the_connected_method():
    sig = Signal()
    holder = AsyncMethods()
    sig.connect(holder.method)
    sig.connect(holder.sync_method)

    async def main() -> Any:
        return await sig.asend(sender=None)

    assert run_clean(main) == [
        (holder.method, "method"),
        (holder.sync_method, "sync_method"),
    ]


# -- the disconnect check ---------------------------------------------------------


def test_an_async_receiver_disconnected_while_its_task_is_queued_is_not_called():
    sig = Signal()
    log: list[str] = []
    victim = async_r("victim", log)

    async def first(sender: object, **kwargs: Any) -> str:
        # Runs before victim's task has taken its first step.
        sig.disconnect(victim)
        return "first"

    sig.connect(first)
    sig.connect(victim)

    async def main() -> Any:
        return await sig.asend(sender=None)

    assert run_clean(main) == [(first, "first")]
    assert log == []


def test_a_sync_receiver_disconnected_while_its_call_is_queued_is_not_called():
    sig = Signal()
    log: list[str] = []
    victim = sync_r("victim", log)

    def first(sender: object, **kwargs: Any) -> str:
        sig.disconnect(victim)
        return "first"

    sig.connect(first)
    sig.connect(sync_r("middle", log), weak=False)
    sig.connect(victim)

    async def main() -> Any:
        return await sig.asend_robust(sender=None)

    result = run_clean(main)
    assert [v for _, v in result] == ["first", "middle"]
    assert log == ["middle"]


def test_a_weak_async_receiver_that_died_before_its_turn_is_skipped():
    sig = Signal()
    holder: list[Any] = [AsyncCallable()]

    async def first(sender: object, **kwargs: Any) -> str:
        holder.clear()
        gc.collect()
        return "first"

    sig.connect(first)
    sig.connect(holder[0])

    async def main() -> Any:
        return await sig.asend(sender=None)

    assert run_clean(main) == [(first, "first")]


# -- errors -------------------------------------------------------------------------


def test_asend_raises_the_earliest_failure_in_connection_order_with_notes():
    """A later async receiver fails first; the earlier running sync one is
    waited for, and its failure is the one raised."""
    sig = Signal()
    finished: list[str] = []

    def slow_sync_fail(sender: object, **kwargs: Any) -> None:
        time.sleep(0.1)
        finished.append("sync")
        raise Boom("earliest")

    async def fast_async_fail(sender: object, **kwargs: Any) -> None:
        raise Boom("fast")

    sig.connect(slow_sync_fail)
    sig.connect(fast_async_fail)

    async def main() -> BaseException:
        with pytest.raises(Boom) as info:
            await sig.asend(sender=None)
        assert finished == ["sync"]  # asend returned only after it finished
        return info.value

    err = run_clean(main)
    assert str(err) == "earliest"
    assert any("fast_async_fail" in note and "fast" in note for note in err.__notes__)


def test_asend_cancels_unfinished_receivers_and_waits_for_them_on_failure():
    sig = Signal()
    state: list[str] = []

    async def fails(sender: object, **kwargs: Any) -> None:
        await asyncio.sleep(0.01)
        raise Boom("x")

    async def waits_forever(sender: object, **kwargs: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # slow to clean up: must still be awaited
            state.append("cleaned up")
            raise

    async def fails_on_cancel(sender: object, **kwargs: Any) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise ValueError("while cancelled")

    sig.connect(waits_forever)
    sig.connect(fails)
    sig.connect(fails_on_cancel)

    async def main() -> BaseException:
        with pytest.raises(Exception) as info:
            await sig.asend(sender=None)
        assert state == ["cleaned up"]
        return info.value

    err = run_clean(main)
    # The earliest failure in connection order: fails_on_cancel is later.
    assert isinstance(err, Boom)


def test_after_a_failure_sync_receivers_not_yet_begun_are_not_called():
    pool = ThreadPoolExecutor(1)
    release = threading.Event()
    blocker = pool.submit(release.wait)  # the only worker is busy
    log: list[str] = []

    async def fails(sender: object, **kwargs: Any) -> None:
        raise Boom("x")

    sig = Signal(executor=pool)
    sig.connect(fails)
    sig.connect(sync_r("queued", log), weak=False)

    async def main() -> None:
        with pytest.raises(Boom):
            await sig.asend(sender=None)

    try:
        run_clean(main)
    finally:
        release.set()
        blocker.result()
        pool.shutdown()
    assert log == []


def test_in_the_worker_thread_a_failure_stops_the_later_sync_receivers():
    sig = Signal()
    log: list[str] = []

    def fails(sender: object, **kwargs: Any) -> None:
        raise Boom("x")

    sig.connect(sync_r("before", log), weak=False)
    sig.connect(fails)
    sig.connect(sync_r("after", log), weak=False)

    async def main() -> None:
        with pytest.raises(Boom):
            await sig.asend(sender=None)

    run_clean(main)
    assert log == ["before"]


def test_asend_robust_returns_every_exception_in_its_slot_and_logs_it(caplog):
    sig = Signal()

    async def async_fail(sender: object, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        raise Boom("async")

    def sync_fail(sender: object, **kwargs: Any) -> None:
        raise Boom("sync")

    rs = [async_fail, sync_r("ok"), sync_fail, async_r("aok")]
    for r in rs:
        sig.connect(r)

    async def main() -> Any:
        return await sig.asend_robust(sender=None)

    with caplog.at_level(logging.ERROR, logger="concsignals"):
        result = run_clean(main)
    assert [r for r, _ in result] == rs
    assert [str(v) for _, v in result] == ["async", "ok", "sync", "aok"]
    for _, err in (result[0], result[2]):
        assert isinstance(err, Boom)
        assert err.__traceback__ is not None
    tb = result[0][1].__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] == "async_fail"
    records = [r for r in caplog.records if r.name == "concsignals"]
    assert [r.getMessage() for r in records] == [
        f"Error calling {r.__qualname__} in Signal.send_robust() ({e})"
        for r, e in (result[0], result[2])
    ]
    assert records[0].exc_info is not None and records[0].exc_info[1] is result[0][1]


@pytest.mark.parametrize("kind", ["async", "sync"])
@pytest.mark.parametrize("method", ["asend", "asend_robust"])
def test_base_exceptions_are_never_swallowed(kind, method):
    sig = Signal()

    async def async_fatal(sender: object, **kwargs: Any) -> None:
        raise Fatal

    def sync_fatal(sender: object, **kwargs: Any) -> None:
        raise Fatal

    def sync_fail(sender: object, **kwargs: Any) -> None:
        time.sleep(0.01)
        raise Boom("later, and only an Exception")

    sig.connect(async_r("earlier"), weak=False)
    sig.connect(async_fatal if kind == "async" else sync_fatal)
    sig.connect(sync_fail)

    async def main() -> None:
        with pytest.raises(Fatal):
            await getattr(sig, method)(sender=None)

    run_clean(main)


def test_an_async_receiver_returning_a_non_awaitable_is_an_error():
    from asgiref.sync import markcoroutinefunction

    def lies(sender: object, **kwargs: Any) -> int:
        return 42

    sig = Signal()
    sig.connect(markcoroutinefunction(lies))

    async def main() -> Any:
        return await sig.asend_robust(sender=None)

    logging.getLogger("concsignals").disabled = True
    try:
        [(_, err)] = run_clean(main)
    finally:
        logging.getLogger("concsignals").disabled = False
    assert isinstance(err, TypeError)
    assert "lies" in str(err) and "cannot be awaited" in str(err)


# -- cancellation -------------------------------------------------------------------


def test_cancelling_the_awaiting_task_cancels_the_receivers(asyncio_logs):
    sig = Signal()
    state: list[str] = []
    started = threading.Event()
    release = threading.Event()

    async def waits(sender: object, **kwargs: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)
            state.append("waits cancelled")
            raise

    async def fails_when_cancelled(sender: object, **kwargs: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise Boom("nobody will retrieve this") from None

    def sync_running(sender: object, **kwargs: Any) -> None:
        started.set()
        release.wait(10)
        raise Boom("after the send was cancelled")

    for r in (waits, fails_when_cancelled, sync_running):
        sig.connect(r)

    async def main() -> None:
        task = asyncio.create_task(sig.asend(sender=None))
        while not started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        # The cancelled send waits for the thread's call, which began: let it
        # finish soon (its failure has nowhere to go) rather than in 10 s.
        asyncio.get_running_loop().call_later(0.1, release.set)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert state == ["waits cancelled"]
        assert release.is_set()  # the send waited for the thread's call
        await asyncio.sleep(0.05)

    run_clean(main)


def test_wait_for_around_asend_cancels_the_receivers(asyncio_logs):
    sig = Signal()
    cancelled: list[str] = []

    async def slow(sender: object, **kwargs: Any) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append("slow")
            raise

    sig.connect(slow)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sig.asend_robust(sender=None), 0.02)
        assert cancelled == ["slow"]

    run_clean(main)


def test_a_receiver_that_cancels_itself_propagates_cancellation():
    sig = Signal()

    async def cancels_itself(sender: object, **kwargs: Any) -> None:
        raise asyncio.CancelledError

    sig.connect(cancels_itself)
    sig.connect(async_r("ok"), weak=False)

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await sig.asend_robust(sender=None)

    run_clean(main)


def test_tasks_are_held_strongly_while_running_and_released_when_done():
    sig = Signal()
    seen: list[int] = []

    async def r(sender: object, **kwargs: Any) -> None:
        task = weakref.ref(asyncio.current_task())  # type: ignore[arg-type]
        await asyncio.sleep(0)
        gc.collect()  # the loop holds tasks weakly: the send must hold it
        seen.append(task() is not None)

    sig.connect(r)

    async def main() -> None:
        await sig.asend(sender=None)

    run_clean(main)  # checks _in_flight is empty afterwards
    assert seen == [True]


# -- timeouts -----------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("executor", [None, "pool"])
def test_a_timeout_puts_timeout_errors_in_the_unfinished_slots(executor, caplog):
    pool = ThreadPoolExecutor(2) if executor else None
    release = threading.Event()
    cancelled: list[str] = []

    async def slow_async(sender: object, **kwargs: Any) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append("slow_async")
            raise

    def slow_sync(sender: object, **kwargs: Any) -> str:
        release.wait(10)
        return "too late"

    sig = Signal()
    rs = [async_r("fast"), slow_async, slow_sync, sync_r("queued behind")]
    for r in rs:
        sig.connect(r)
    view = sig.using(pool, timeout=0.1)

    async def main() -> Any:
        # If asend waited for the blocked thread it would never return.
        result = await view.asend_robust(sender=None)
        with pytest.raises(TimeoutError, match="did not finish"):
            await view.asend(sender=None)
        release.set()
        return result

    try:
        with caplog.at_level(logging.ERROR, logger="concsignals"):
            result = run_clean(main)
    finally:
        release.set()
        if pool is not None:
            pool.shutdown()
    assert [r for r, _ in result] == rs
    assert result[0][1] == "fast"
    assert all(isinstance(v, TimeoutError) for _, v in result[1:3])
    if executor is None:  # queued behind slow_sync in the worker thread
        assert isinstance(result[3][1], TimeoutError)
    else:
        assert result[3][1] == "queued behind"
    assert cancelled == ["slow_async", "slow_async"]
    assert len(caplog.records) == sum(isinstance(v, TimeoutError) for _, v in result)


def test_a_timeout_that_is_not_reached_changes_nothing():
    sig = Signal()
    rs = [async_r("a"), sync_r("s")]
    for r in rs:
        sig.connect(r)

    async def main() -> Any:
        return await sig.using(None, timeout=5).asend(sender=None)

    assert run_clean(main) == [(rs[0], "a"), (rs[1], "s")]


# -- sync send with async receivers --------------------------------------------------


def test_send_runs_async_receivers_and_returns_all_results_in_order():
    sig = Signal()
    log: list[Any] = []
    rs = [sync_r(0, log), async_r(1, log, 0.01), sync_r(2, log), async_r(3, log)]
    for r in rs:
        sig.connect(r)
    assert sig.send(sender=None) == [(r, i) for i, r in enumerate(rs)]
    assert sig.send_robust(sender=None) == [(r, i) for i, r in enumerate(rs)]
    # Each async receiver begins before the next receiver is called.
    assert log == [0, 1, 2, 3] * 2


def test_send_calls_sync_receivers_inline_in_the_callers_thread():
    sig = Signal()
    threads: list[int] = []

    def s(sender: object, **kwargs: Any) -> None:
        threads.append(threading.get_ident())

    sig.connect(s)
    sig.connect(async_r("a"), weak=False)
    sig.send(sender=None)
    assert threads == [threading.get_ident()]


def test_send_with_async_receivers_stops_at_the_first_failure():
    sig = Signal()
    log: list[str] = []

    async def fails(sender: object, **kwargs: Any) -> None:
        raise Boom("x")

    sig.connect(sync_r("before", log), weak=False)
    sig.connect(fails)
    sig.connect(sync_r("after", log), weak=False)
    with pytest.raises(Boom):
        sig.send(sender=None)
    assert log == ["before"]


def test_send_with_async_receivers_cancels_them_when_a_sync_one_fails():
    sig = Signal()
    cancelled: list[str] = []

    async def slow(sender: object, **kwargs: Any) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append("slow")
            raise

    def fails(sender: object, **kwargs: Any) -> None:
        raise Boom("x")

    sig.connect(slow)
    sig.connect(fails)
    with pytest.raises(Boom):
        sig.send(sender=None)
    assert cancelled == ["slow"]


def test_send_robust_with_async_receivers_returns_errors_in_slots(caplog):
    sig = Signal()

    async def fails(sender: object, **kwargs: Any) -> None:
        raise Boom("async")

    def sync_fails(sender: object, **kwargs: Any) -> None:
        raise Boom("sync")

    rs = [fails, sync_fails, async_r("ok")]
    for r in rs:
        sig.connect(r)
    with caplog.at_level(logging.ERROR, logger="concsignals"):
        result = sig.send_robust(sender=None)
    assert [r for r, _ in result] == rs
    assert [str(v) for _, v in result] == ["async", "sync", "ok"]
    assert all(v.__traceback__ is not None for _, v in result[:2])
    assert len(caplog.records) == 2


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_with_async_receivers_never_swallows_base_exceptions(method):
    sig = Signal()
    cancelled: list[str] = []

    async def slow(sender: object, **kwargs: Any) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append("slow")
            raise

    def fatal(sender: object, **kwargs: Any) -> None:
        raise Fatal

    sig.connect(slow)
    sig.connect(fatal)
    with pytest.raises(Fatal):
        getattr(sig, method)(sender=None)
    assert cancelled == ["slow"]


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_inside_a_running_loop_tells_the_caller_to_use_asend(method):
    sig = Signal()
    sig.connect(async_r("a"), weak=False)
    plain = Signal()
    plain.connect(sync_r("s"), weak=False)

    async def main() -> None:
        with pytest.raises(RuntimeError) as info:
            getattr(sig, method)(sender=None)
        message = str(info.value)
        assert f"await signal.a{method}(" in message
        assert "async_a" in message  # names the async receiver
        assert "running" in message
        # Sync-only signals are fine anywhere.
        assert [v for _, v in plain.send(sender=None)] == ["s"]

    run_clean(main)


class Owner:
    """A sender with receivers of its own."""


@pytest.mark.parametrize("method", ["send", "send_robust"])
@pytest.mark.parametrize(
    "how", ["any-sender", "own-sender", "executor", "monitored", "own-monitored"]
)
def test_once_the_only_async_receiver_died_a_send_inside_a_loop_runs(
    method: str, how: str, request: pytest.FixtureRequest
) -> None:
    """Django's parity (issue 21 item 8): with no live async receiver left,
    a sync send from a running loop does not refuse; it returns the live
    receivers' results, the dead one's slot left out."""
    from concsignals import monitoring

    sender: object = Owner() if how.startswith("own") else None
    sig = Signal()
    ran_on: list[threading.Thread] = []
    first, last = sync_r("first"), sync_r("last")
    holder: list[Any] = [AsyncCallable()]
    sig.connect(first, sender=sender, weak=False)
    sig.connect(holder[0], sender=sender)  # weak: dies below
    sig.connect(last, weak=False)

    def where(sender: object, **kwargs: Any) -> str:
        ran_on.append(threading.current_thread())
        return "where"

    sig.connect(where, weak=False)
    # Sent once while it lives: the tuple of entries a send reads is cached
    # with the async entry in it.
    assert len(sig.send(sender=sender)) == 4
    holder.clear()
    gc.collect()
    assert sig._snapshot.has_async, "the death is not compacted away yet"
    view: Any = sig
    if how == "executor":
        pool = ThreadPoolExecutor(2)
        request.addfinalizer(pool.shutdown)
        view = sig.using(pool)
    watcher = object()
    if how.endswith("monitored"):
        monitoring.install(watcher)
        request.addfinalizer(lambda: monitoring.uninstall(watcher))

    async def main() -> list[Any]:
        return [v for _, v in getattr(view, method)(sender=sender)]

    for _ in range(2):
        ran_on.clear()
        assert run_clean(main) == ["first", "last", "where"]
        if how != "executor":  # inline, as a send of sync receivers runs
            assert ran_on == [threading.current_thread()]


def test_an_async_receiver_that_dies_after_the_send_chose_a_loop_is_no_refusal():
    """The race beside the test above: the only async receiver dies between
    the send's choice of the loop path and the refusal's check; the send
    runs (on a private loop) and returns the live receivers' results."""
    from concsignals._send import Send

    sig = Signal()
    holder: list[Any] = [AsyncCallable()]
    sig.connect(holder[0])
    sig.connect(sync_r("s"), weak=False)
    entries = sig._snapshot.lookup(None)
    assert any(e.is_async for e in entries)
    holder.clear()
    gc.collect()

    async def main() -> list[Any]:
        return [v for _, v in casync.send_from_sync(Send(sig, entries, None, {}), None)]

    assert run_clean(main) == ["s"]


def test_a_sync_receiver_inside_a_mixed_send_may_send_a_mixed_signal():
    inner = Signal()
    inner.connect(async_r("inner async"), weak=False)
    outer = Signal()

    def nested(sender: object, **kwargs: Any) -> Any:
        return [v for _, v in inner.send(sender=None)]

    outer.connect(async_r("outer async"), weak=False)
    outer.connect(nested)
    assert [v for _, v in outer.send(sender=None)] == ["outer async", ["inner async"]]


def test_a_sync_receiver_on_a_worker_thread_of_asend_may_send_a_mixed_signal():
    inner = Signal()
    inner.connect(async_r("inner async"), weak=False)
    outer = Signal()

    def nested(sender: object, **kwargs: Any) -> Any:
        return [v for _, v in inner.send(sender=None)]

    outer.connect(nested)

    async def main() -> Any:
        return await outer.asend(sender=None)

    assert run_clean(main) == [(nested, ["inner async"])]


@pytest.mark.timeout(20)
def test_send_with_async_receivers_through_an_executor_and_timeout():
    pool = ThreadPoolExecutor(2, thread_name_prefix="the-pool")
    release = threading.Event()
    sig = Signal()

    def blocked(sender: object, **kwargs: Any) -> None:
        release.wait(10)

    def on_pool(sender: object, **kwargs: Any) -> bool:
        return threading.current_thread().name.startswith("the-pool")

    rs = [async_r("a"), on_pool]
    for r in rs:
        sig.connect(r)
    try:
        assert sig.using(pool).send(sender=None) == [(rs[0], "a"), (on_pool, True)]
        sig.connect(blocked)
        logging.getLogger("concsignals").disabled = True
        result = sig.using(pool, timeout=0.05).send_robust(sender=None)
        with pytest.raises(TimeoutError):
            sig.using(pool, timeout=0.05).send(sender=None)
    finally:
        logging.getLogger("concsignals").disabled = False
        release.set()
        pool.shutdown()
    assert [v for _, v in result[:2]] == ["a", True]
    assert isinstance(result[2][1], TimeoutError)


def test_send_leaves_no_loop_behind_and_does_not_touch_the_threads_loop():
    sig = Signal()
    sig.connect(async_r("a"), weak=False)
    policy_loop = asyncio.new_event_loop()
    asyncio.set_event_loop(policy_loop)
    try:
        sig.send(sender=None)
        assert asyncio.get_event_loop() is policy_loop
    finally:
        asyncio.set_event_loop(None)
        policy_loop.close()


# -- many loops and threads at once ---------------------------------------------------


@pytest.mark.timeout(30)
def test_concurrent_asends_from_many_threads_while_receivers_churn(switch_often):
    sig = Signal()
    stable = [async_r("a0"), sync_r("s1"), async_r("a2", delay=0.001), sync_r("s3")]
    for r in stable:
        sig.connect(r)
    churn = [async_r("churn-a"), sync_r("churn-s")]
    stop = threading.Event()
    errors: list[BaseException] = []

    def churner() -> None:
        while not stop.is_set():
            for r in churn:
                sig.connect(r)
            for r in churn:
                sig.disconnect(r)

    def sender_thread() -> None:
        async def main() -> None:
            for _ in range(30):
                result = await sig.asend_robust(sender=None)
                tags = [v for _, v in result]
                stable_tags = [t for t in tags if not str(t).startswith("churn")]
                assert stable_tags == ["a0", "s1", "a2", "s3"]
                assert len(tags) == len(set(tags))
                assert all(not isinstance(v, Exception) for v in tags)

        try:
            run_clean(main, alone=False)
        except BaseException as err:
            errors.append(err)

    writers = [threading.Thread(target=churner)]
    senders = [threading.Thread(target=sender_thread) for _ in range(3)]
    for t in writers + senders:
        t.start()
    for t in senders:
        t.join()
    stop.set()
    for t in writers:
        t.join()
    assert errors == []


# -- executors: nested sends, processes, deadlines of the sync send -------------------


# A deadlock cannot be interrupted from inside: on timeout, end the process.
@pytest.mark.timeout(20, method="thread")
def test_a_nested_mixed_send_through_a_busy_one_worker_pool_finishes():
    """The only worker runs a receiver that sends, through the same pool, a
    signal with async receivers: its sync receivers must run right there."""
    pool = ThreadPoolExecutor(1)
    inner = Signal(executor=pool)
    threads: list[tuple[str, int]] = []

    def inner_sync(sender: object, **kwargs: Any) -> str:
        threads.append(("inner", threading.get_ident()))
        return "inner sync"

    inner_rs = [async_r("inner async"), inner_sync]
    for r in inner_rs:
        inner.connect(r)

    def nested(sender: object, **kwargs: Any) -> Any:
        threads.append(("outer", threading.get_ident()))
        return [v for _, v in inner.send(sender=None)]

    def nested_asend(sender: object, **kwargs: Any) -> Any:
        result = asyncio.run(inner.asend_robust(sender=None))
        return [v for _, v in result]

    outer = Signal(executor=pool)
    outer.connect(nested)
    outer.connect(nested_asend)

    async def main() -> Any:
        return await outer.asend(sender=None)

    try:
        result = run_clean(main)
    finally:
        pool.shutdown(wait=False)
    expected = ["inner async", "inner sync"]
    assert result == [(nested, expected), (nested_asend, expected)]
    # The nested sync send called its sync receiver right in the busy worker.
    assert threads[0][1] == threads[1][1]


@pytest.mark.timeout(60)
def test_asend_on_a_process_pool_refuses_unpicklable_calls_before_starting(
    process_pool,
):
    from tests.receivers import Reply

    sig = Signal(executor=process_pool)
    started: list[str] = []

    async def first(sender: object, **kwargs: Any) -> str:
        started.append("first")
        return "first"

    unpicklable = sync_r("local function")  # a closure: cannot be pickled
    rs = [first, Reply("remote"), unpicklable]
    for r in rs:
        sig.connect(r, weak=False)

    async def main() -> Any:
        with pytest.raises(Exception, match="cannot be pickled"):
            await sig.asend(sender=None)
        assert started == []  # nothing began: the send failed at hand-off
        logging.getLogger("concsignals").disabled = True
        try:
            return await sig.asend_robust(sender=None)
        finally:
            logging.getLogger("concsignals").disabled = False

    result = run_clean(main)
    assert [r for r, _ in result] == rs  # the local receiver objects
    assert [v for _, v in result[:2]] == ["first", "remote"]
    assert "local function" in str(result[2][1])
    assert "cannot be pickled" in str(result[2][1])


def test_sync_send_deadline_times_out_unfinished_async_receivers():
    sig = Signal()
    cancelled: list[str] = []

    async def slow(sender: object, **kwargs: Any) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append("slow")
            raise

    rs = [slow, sync_r("s"), async_r("quick")]
    for r in rs:
        sig.connect(r, weak=False)
    logging.getLogger("concsignals").disabled = True
    try:
        result = sig.using(None, timeout=0.05).send_robust(sender=None)
    finally:
        logging.getLogger("concsignals").disabled = False
    assert [r for r, _ in result] == rs
    assert isinstance(result[0][1], TimeoutError)
    assert "did not finish" in str(result[0][1])
    assert [v for _, v in result[1:]] == ["s", "quick"]
    assert cancelled == ["slow"]
    with pytest.raises(TimeoutError, match="slow"):
        sig.using(None, timeout=0.05).send(sender=None)


def test_sync_send_deadline_checked_around_inline_calls():
    sig = Signal()
    log: list[str] = []

    def overruns(sender: object, **kwargs: Any) -> str:
        time.sleep(0.1)
        return "late"

    rs = [overruns, async_r("after", log)]
    for r in rs:
        sig.connect(r, weak=False)
    logging.getLogger("concsignals").disabled = True
    try:
        result = sig.using(None, timeout=0.05).send_robust(sender=None)
    finally:
        logging.getLogger("concsignals").disabled = False
    assert [r for r, _ in result] == rs
    assert "did not finish" in str(result[0][1])
    assert "was not started" in str(result[1][1])
    assert log == []  # not begun after the deadline


def test_nothing_stays_in_flight_when_the_loop_closes_right_after_asend(
    switch_often,
):
    sig = Signal()
    sig.connect(sync_r("s"), weak=False)
    sig.connect(async_r("a"), weak=False)
    for _ in range(50):
        loop = asyncio.new_event_loop()
        try:
            result = loop.run_until_complete(sig.asend(sender=None))
            assert [v for _, v in result] == ["s", "a"]
        finally:
            loop.close()  # without waiting for the default executor
    assert casync._in_flight == set()


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_base_exception_ends_asend_robust_at_once(kind):
    sig = Signal()
    cancelled: list[str] = []

    async def slow(sender: object, **kwargs: Any) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append("slow")
            raise

    async def async_fatal(sender: object, **kwargs: Any) -> None:
        await asyncio.sleep(0.01)
        raise Fatal

    def sync_fatal(sender: object, **kwargs: Any) -> None:
        time.sleep(0.01)
        raise Fatal

    sig.connect(slow)
    sig.connect(async_fatal if kind == "async" else sync_fatal)

    async def main() -> None:
        with pytest.raises(Fatal):
            # Not waiting for slow: it is cancelled once Fatal is seen.
            await asyncio.wait_for(sig.asend_robust(sender=None), 10)
        assert cancelled == ["slow"]

    run_clean(main)


@pytest.mark.timeout(30)
def test_asends_cancelled_at_random_moments_leave_nothing_behind(
    switch_often, asyncio_logs
):
    import random

    sig = Signal()
    rs = [async_r("a", delay=0.001), sync_r("s"), async_r("b"), sync_r("t")]
    for r in rs:
        sig.connect(r, weak=False)
    stuck = Signal()  # never finishes unless its send cancels it

    async def forever(sender: object, **kwargs: Any) -> None:
        await asyncio.Event().wait()

    for r in (sync_r("s"), forever, async_r("a")):
        stuck.connect(r, weak=False)
    outcomes = {"cancelled": 0, "finished": 0}

    async def main() -> None:
        rng = random.Random(4)
        for i in range(150):
            target = stuck if i % 3 == 0 else sig
            task = asyncio.create_task(target.asend_robust(sender=None))
            for _ in range(rng.randrange(6)):
                await asyncio.sleep(0)
            task.cancel()
            try:
                result = await task
            except asyncio.CancelledError:
                outcomes["cancelled"] += 1
            else:
                outcomes["finished"] += 1
                assert [v for _, v in result] == ["a", "s", "b", "t"]
        await asyncio.sleep(0.05)  # let the worker threads report back

    run_clean(main)  # no task left, nothing reported, nothing in flight
    assert outcomes["cancelled"] > 0


def test_repeated_asends_whose_first_sync_receiver_fails_raise_its_error():
    """Regression: the second of two such asends in a row raised CancelledError
    (the receiver's own error only in a note), found by the stress harness."""
    sig = Signal()

    def fails(sender: object, **kwargs: Any) -> None:
        raise ValueError("boom")

    def ok(sender: object, **kwargs: Any) -> int:
        return 1

    sig.connect(fails)
    sig.connect(ok)

    async def main() -> list[str]:
        raised = []
        for _ in range(50):
            try:
                await sig.asend(None)
            except ValueError as err:
                raised.append(str(err))
        return raised

    assert run_clean(main) == ["boom"] * 50


# -- the private loop's edges (mutants of the full mutation run) -------------------


def test_a_nested_mixed_send_that_fails_raises_in_the_receiver_that_sent_it():
    """The nested send runs its loop on a helper thread; its failure is
    raised in the calling receiver, not returned as a value."""
    inner = Signal()

    async def fails(sender: object, **kwargs: Any) -> None:
        raise Boom("inner")

    inner.connect(fails)
    caught: list[BaseException] = []

    def nested(sender: object, **kwargs: Any) -> str:
        try:
            inner.send(sender=None)
        except Boom as err:
            caught.append(err)
        return "nested"

    outer = Signal()
    outer.connect(async_r("outer async"), weak=False)
    outer.connect(nested)
    assert [v for _, v in outer.send(sender=None)] == ["outer async", "nested"]
    assert [str(e) for e in caught] == ["inner"]


@pytest.mark.timeout(30)
def test_a_sync_send_in_a_fresh_threads_running_loop_is_refused():
    """Refused in a thread that never ran a private loop of concsignals."""
    sig = Signal()
    sig.connect(async_r("a"), weak=False)
    errors: list[BaseException] = []

    async def main() -> None:
        try:
            sig.send(sender=None)
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    thread.join(20)
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert "await signal.asend(" in str(errors[0])


def test_a_task_left_on_the_private_loop_is_cancelled_and_awaited_at_close():
    """An async receiver of a sync send starts a task and returns: when the
    send's private loop closes, the task is cancelled, and runs its
    clean-up before the loop is gone."""
    log: list[str] = []

    async def background() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # clean-up that needs the loop
            log.append("cancelled")
            raise

    tasks: list[asyncio.Task[None]] = []

    async def starts_a_task(sender: object, **kwargs: Any) -> str:
        tasks.append(asyncio.get_running_loop().create_task(background()))
        await asyncio.sleep(0)  # it starts
        return "started"

    sig = Signal()
    sig.connect(starts_a_task)
    assert [v for _, v in sig.send(sender=None)] == ["started"]
    assert log == ["cancelled"]
    assert tasks[0].cancelled()


def cleans_up_when_cancelled(
    sig: Signal, seconds: float
) -> tuple[list[str], asyncio.Event]:
    """Connect a receiver that waits until cancelled, then cleans up for
    ``seconds``; its log, and an event set when it started."""
    state: list[str] = []
    started = asyncio.Event()

    async def cleans_up(sender: object, **kwargs: Any) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(seconds)
            state.append("cleaned up")
            raise

    sig.connect(cleans_up, weak=False)
    return state, started


def test_a_cancelled_asend_waits_for_its_one_receivers_clean_up(asyncio_logs):
    """One receiver, cancelled with the caller, takes a while to clean up:
    the cancelled ``asend`` still returns only after it ended."""
    sig = Signal()
    state, started = cleans_up_when_cancelled(sig, 0.1)

    async def main() -> None:
        task = asyncio.create_task(sig.asend(sender=None))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert state == ["cleaned up"]

    run_clean(main)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("ignores", [False, True], ids=["cleans-up", "ignores"])
@pytest.mark.parametrize("method", ["asend", "asend_robust"])
def test_at_the_deadline_asend_returns_and_its_cancelled_task_ends_in_the_background(
    method, ignores, asyncio_logs
):
    """The deadline bounds ``asend`` (issue 21, item 5): a task still running
    then is cancelled and abandoned, as a thread is, whether its clean-up is
    slow or it ignores the cancellation.  It is held until it ends (not
    garbage-collected mid-flight), and its end reaches the send."""
    sig = Signal()
    state: list[str] = []

    async def main() -> None:
        release, ended = asyncio.Event(), asyncio.Event()

        async def slow(sender: object, **kwargs: Any) -> str:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                state.append("cancelled")
                await release.wait()  # a clean-up that lasts until released
                state.append("cleaned up")
                if not ignores:
                    raise
            finally:
                ended.set()
            return "ignored the cancellation"

        sig.connect(slow, weak=False)
        view = sig.using(None, timeout=0.1)
        if method == "asend":
            with pytest.raises(TimeoutError, match="did not finish"):
                await view.asend(sender=None)
        else:
            (result,) = await view.asend_robust(sender=None)
            assert isinstance(result[1], TimeoutError)
        assert state == ["cancelled"]  # returned while the task cleans up
        gc.collect()  # the abandoned task is held
        release.set()
        await ended.wait()
        assert state == ["cancelled", "cleaned up"]

    run_clean(main)


def mark_as_coroutine_function(fn: Any) -> Any:
    """What asgiref's ``markcoroutinefunction`` does: inspect's marker on
    3.12+, asyncio's before."""
    if hasattr(inspect, "markcoroutinefunction"):
        return inspect.markcoroutinefunction(fn)
    fn._is_coroutine = asyncio.coroutines._is_coroutine
    return fn


class AwaitableReply:
    """Not a coroutine, but awaitable (``__await__``), like asyncio's Futures."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __await__(self) -> Any:
        yield from asyncio.sleep(0).__await__()
        return self.value


def test_an_async_receiver_may_return_any_awaitable():
    """A sync function marked as a coroutine function (as asgiref does) may
    return any awaitable: it is awaited, not refused."""

    def marked(sender: object, **kwargs: Any) -> AwaitableReply:
        return AwaitableReply("awaited")

    sig = Signal()
    sig.connect(mark_as_coroutine_function(marked))
    assert [v for _, v in sig.send(sender=None)] == ["awaited"]


def test_a_cancelled_asend_waits_for_clean_up_only_until_its_deadline(asyncio_logs):
    """Cancelled while a receiver cleans up past the deadline: ``asend``
    stops waiting at the deadline; the receiver's task is held until it
    ends (not destroyed while pending), and nothing is logged."""
    sig = Signal()
    state, started = cleans_up_when_cancelled(sig, 0.6)

    async def main() -> None:
        task = asyncio.create_task(sig.using(None, timeout=0.2).asend(sender=None))
        await started.wait()
        began = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - began < 0.5  # the deadline, not the clean-up
        assert state == []
        gc.collect()  # a task nobody held would be destroyed here
        while casync._in_flight:
            await asyncio.sleep(0.05)
        assert state == ["cleaned up"]

    run_clean(main)


def test_a_function_with_pythons_coroutine_marker_is_an_async_receiver(monkeypatch):
    """``inspect.markcoroutinefunction`` (3.12+) sets a marker attribute that
    ``inspect.iscoroutinefunction`` checks; concsignals asks inspect about
    any function carrying it.  Before 3.12 the marker is emulated here."""

    def marked(sender: object, **kwargs: Any) -> Any:
        return AwaitableReply("marked")

    if hasattr(inspect, "markcoroutinefunction"):
        inspect.markcoroutinefunction(marked)
    else:
        mark = object()
        real = inspect.iscoroutinefunction
        monkeypatch.setattr(
            inspect,
            "iscoroutinefunction",
            lambda f: getattr(f, "_is_coroutine_marker", None) is mark or real(f),
        )
        marked._is_coroutine_marker = mark  # type: ignore[attr-defined]
    assert hasattr(marked, "_is_coroutine_marker")
    assert is_async_receiver(marked)
    sig = Signal()
    sig.connect(marked)
    assert [v for _, v in sig.send(sender=None)] == ["marked"]


def test_a_failure_after_a_receiver_the_send_cancelled_still_counts():
    """Slot 0 is cancelled by the send (it closed on slot 1's failure): its
    slot drops out, and slot 1's failure is still the send's outcome."""
    sig = Signal()

    async def slow(sender: object, **kwargs: Any) -> str:
        await asyncio.sleep(10)
        return "slow"

    async def fails(sender: object, **kwargs: Any) -> str:
        raise Boom("second")

    sig.connect(slow)
    sig.connect(fails)

    async def main() -> None:
        with pytest.raises(Boom, match="second") as caught:
            await sig.asend(sender=None)
        assert getattr(caught.value, "__notes__", []) == []

    run_clean(main)


def test_a_plain_function_is_sync_before_asyncio_is_imported(monkeypatch):
    """Without ``asyncio.coroutines`` loaded, nothing can carry its marker."""
    import sys

    monkeypatch.delitem(sys.modules, "asyncio.coroutines")

    def plain(sender: object, **kwargs: Any) -> None:
        pass

    assert not is_async_receiver(plain)


def test_marked_receivers_are_async_through_partials_methods_and_call():
    import types

    def returns_awaitable(*args: Any, **kwargs: Any) -> AwaitableReply:
        return AwaitableReply("marked")

    marked = mark_as_coroutine_function(returns_awaitable)

    class MarkedCall:
        pass

    MarkedCall.__call__ = mark_as_coroutine_function(  # type: ignore[attr-defined]
        lambda self, *a, **kw: AwaitableReply("call")
    )

    class AsyncCall:
        async def __call__(self, *args: Any, **kwargs: Any) -> str:
            return "bound"

    class Owner:
        pass

    assert is_async_receiver(functools.partial(marked))
    assert is_async_receiver(MarkedCall())
    # A method bound to a callable object: its __call__ is async.
    assert is_async_receiver(types.MethodType(AsyncCall(), Owner()))
    assert not is_async_receiver(types.MethodType(lambda self, **kw: None, Owner()))


# -- issue 21: asend on the one engine ------------------------------------------


class Queued(ProcessPoolExecutor):
    """An out-of-process executor (a ``ProcessPoolExecutor`` to concsignals,
    whose cancelled futures never ran) that starts no process: every call
    stays queued, its Future pending, until the test ends it or the send
    cancels it."""

    def __init__(self) -> None:
        super().__init__(1)
        self.queued: list[Future[Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kw: Any) -> Any:
        fut: Future[Any] = Future()
        self.queued.append(fut)
        return fut


@pytest.fixture
def queued() -> Iterator[Queued]:
    pool = Queued()
    yield pool
    pool.shutdown()


async def until(check: Callable[[], bool]) -> None:
    """Let the loop run until ``check()`` (steps, not time)."""
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


@pytest.mark.timeout(20)
@pytest.mark.parametrize("closed_by", ["failure", "deadline", "cancellation"])
def test_asend_on_processes_cancels_what_it_handed_over_when_it_closes(
    queued: Queued, closed_by: str
) -> None:
    """Issue 21, item 2: ``asend`` on a process pool let every queued call
    run (here: waited for them for ever) once the send closed."""
    sig = Signal()
    rs = [Reply("a"), Reply("b"), Reply("c")]
    for r in rs:
        sig.connect(r)

    async def main() -> None:
        timeout = 0.2 if closed_by == "deadline" else None
        task = asyncio.ensure_future(sig.using(queued, timeout=timeout).asend(Shop))
        await until(lambda: len(queued.queued) == 3)
        if closed_by == "failure":
            queued.queued[0].set_exception(ValueError("first"))
            with pytest.raises(ValueError, match="first"):
                await task
        elif closed_by == "deadline":
            with pytest.raises(TimeoutError, match="was not started"):
                await task
        else:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run_clean(main)
    cancelled = [f.cancelled() for f in queued.queued]
    assert cancelled == ([False, True, True] if closed_by == "failure" else [True] * 3)


@pytest.mark.timeout(20)
def test_calls_begin_in_connection_order_an_async_one_first() -> None:
    """Issue 21, item 3: a sync call after an async one began first (it was
    handed over at once, the async one only scheduled)."""
    began: list[str] = []

    class Eager(Executor):
        """In process; runs each job at once, in the sender's thread."""

        concsignals_in_process = True

        def submit(self, fn: Callable[..., Any], /, *args: Any, **kw: Any) -> Any:
            fut: Future[Any] = Future()
            fut.set_running_or_notify_cancel()
            fut.set_result(fn(*args, **kw))
            return fut

    async def first(**kw: Any) -> str:
        began.append("async")
        return "async"

    def second(**kw: Any) -> str:
        began.append("sync")
        return "sync"

    sig = Signal()
    sig.connect(first)
    sig.connect(second)

    async def main() -> Any:
        return await sig.using(Eager()).asend(Shop)

    assert [v for _, v in run_clean(main)] == ["async", "sync"]
    assert began == ["async", "sync"]


@pytest.mark.timeout(20)
def test_calls_begin_in_connection_order_a_sync_one_first() -> None:
    """Issue 21, item 3: an async call after a sync one still queued in the
    executor began first."""
    began: list[str] = []
    jobs: list[Callable[[], Any]] = []

    class Held(Executor):
        """In process; runs nothing until the test runs its jobs."""

        concsignals_in_process = True

        def submit(self, fn: Callable[..., Any], /, *args: Any, **kw: Any) -> Any:
            fut: Future[Any] = Future()

            def job() -> None:
                if fut.set_running_or_notify_cancel():
                    fut.set_result(fn(*args, **kw))

            jobs.append(job)
            return fut

    def first(**kw: Any) -> str:
        began.append("sync")
        return "sync"

    async def second(**kw: Any) -> str:
        began.append("async")
        return "async"

    sig = Signal()
    sig.connect(first)
    sig.connect(second)

    async def main() -> Any:
        task = asyncio.ensure_future(sig.using(Held()).asend(Shop))
        await until(lambda: len(jobs) == 1)
        for _ in range(10):
            await asyncio.sleep(0)
        assert began == []  # the async call waits for the sync one to begin
        jobs[0]()
        return await task

    assert [v for _, v in run_clean(main)] == ["sync", "async"]
    assert began == ["sync", "async"]


@pytest.mark.timeout(20)
def test_asend_robust_puts_a_shut_down_default_executor_in_the_sync_slots(
    asyncio_logs: None,
) -> None:
    """Issue 21, item 4: ``asend_robust`` raised the loop's error instead."""
    sig = Signal()
    sig.connect(a := async_r("a"))
    sig.connect(b := sync_r("b"))
    sig.connect(c := sync_r("c"))

    async def main() -> Any:
        await asyncio.get_running_loop().shutdown_default_executor()
        logging.getLogger("concsignals").disabled = True
        try:
            result = await sig.asend_robust(Shop)
        finally:
            logging.getLogger("concsignals").disabled = False
        with pytest.raises(RuntimeError):
            await sig.asend(Shop)
        return result

    result = run_clean(main)
    assert [r for r, _ in result] == [a, b, c]
    assert result[0][1] == "a"
    assert all(isinstance(v, RuntimeError) for _, v in result[1:])
    assert result[1][1] is not result[2][1]


@pytest.mark.timeout(20)
def test_a_send_with_an_async_receiver_from_the_users_job_on_a_full_pool_finishes() -> (
    None
):
    """Issue 21, item 1: the sync call waited behind the very job that sent
    (a pool of one worker): the "run queued calls yourself" fallback existed
    only without async receivers."""
    pool = ThreadPoolExecutor(1)
    sig = Signal()
    sig.connect(async_r("a"), weak=False)
    sig.connect(sync_r("s"), weak=False)
    try:
        fut = pool.submit(lambda: sig.using(pool).send(Shop))
        assert [v for _, v in fut.result(timeout=10)] == ["a", "s"]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
