"""Per-connection delivery: ``connect(via=, wait=, phase=)`` (issue 22).

Each rule of "Where receivers run" (docs/delivery.md) has its test here:
where each target runs a call, the begin gate where the call really begins,
context travelling with every call, fire and forget, phases as barriers, and
no deadlock when a call's target is the sender's own thread.  Timing is held
by events (a Serial or a loop kept busy until the test lets it go), never by
sleeping and hoping.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import pickle
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import pytest

import concsignals
from concsignals import INLINE, Serial, Signal, _threads, monitoring
from tests.receivers import Shop, echo

pytestmark = pytest.mark.timeout(30)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


def here(signal: Any, sender: Any, **named: Any) -> tuple[str, str]:
    """Which thread ran the call, and the sender's context variable there."""
    return threading.current_thread().name, request_id.get("unset")


async def here_async(signal: Any, sender: Any, **named: Any) -> tuple[str, str]:
    await asyncio.sleep(0)
    return threading.current_thread().name, request_id.get("unset")


class LoopThread:
    """An event loop running for ever in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="loop-thread", daemon=True
        )
        self.thread.start()

    def hold(self) -> threading.Event:
        """Block the loop until the returned event is set."""
        go = threading.Event()
        blocked = threading.Event()

        def block() -> None:
            blocked.set()
            go.wait(20)

        self.loop.call_soon_threadsafe(block)
        assert blocked.wait(10)
        return go

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2, thread_name_prefix="pool") as p:
        yield p


@pytest.fixture
def serial() -> Iterator[Serial]:
    s = Serial()
    yield s
    s.shutdown()


def held_serial(serial: Serial) -> threading.Event:
    """Keep ``serial``'s worker busy until the returned event is set."""
    go, busy = threading.Event(), threading.Event()

    def block() -> None:
        busy.set()
        go.wait(20)

    serial.submit(block)
    assert busy.wait(10)
    return go


def send_in_thread(
    send: Callable[[], Any],
) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(send())
        except BaseException as err:  # handed to the test
            out.append(err)

    t = threading.Thread(target=run)
    t.start()
    return t, out


# -- where each call runs -------------------------------------------------------------

SENDS = ["send", "send_robust", "asend", "submit"]


def do(sig: Signal, how: str, executor: Executor | None = None) -> Any:
    """One send of ``sig`` for ``Shop``, with request_id set to ``how``."""
    token = request_id.set(how)
    try:
        view = sig.using(executor)
        if how == "asend":
            return asyncio.run(view.asend(sender=Shop))
        if how == "submit":
            return view.submit(sender=Shop).result(20)
        return getattr(view, how)(sender=Shop)
    finally:
        request_id.reset(token)


@pytest.mark.parametrize("how", SENDS)
@pytest.mark.parametrize("receiver", [here, here_async], ids=["sync", "async"])
def test_each_target_runs_its_calls_where_it_says_with_the_senders_context(
    how: str, receiver: Any, loop_thread: LoopThread, pool: Executor, serial: Serial
) -> None:
    sig = Signal()
    sig.connect(receiver, via=pool, dispatch_uid="pool")
    sig.connect(receiver, via=loop_thread.loop, dispatch_uid="loop")
    sig.connect(receiver, via=serial, dispatch_uid="serial")
    sig.connect(receiver, dispatch_uid="plain")
    got = [value for _, value in do(sig, how)]
    threads = [name for name, _ in got]
    assert threads[0].startswith("pool_")
    assert threads[1] == "loop-thread"
    assert threads[2] == "concsignals-serial"
    assert not threads[3].startswith(("pool", "loop", "concsignals-serial"))
    assert [ctx for _, ctx in got] == [how] * 4  # the context went with each


@pytest.mark.parametrize("how", ["send", "asend", "submit"])
def test_inline_runs_in_the_sending_thread_even_in_a_send_on_a_pool(
    how: str, pool: Executor
) -> None:
    sig = Signal()
    sig.connect(here, via=INLINE)
    sig.connect(here, dispatch_uid="on the pool")
    seen: list[str] = []

    def sender() -> None:
        seen.append(threading.current_thread().name)
        got = do(sig, how, pool)
        seen.extend(name for (name, _) in (v for _, v in got))

    t = threading.Thread(target=sender, name="the-sender")
    t.start()
    t.join(20)
    assert seen[2].startswith("pool_")
    if how == "submit":  # a submit() runs its send on concsignals' own pool
        assert seen[1].startswith("concsignals")
    else:
        assert seen[1] == "the-sender"


def test_a_process_pool_target_runs_calls_in_another_process(
    process_pool: Executor, pool: Executor
) -> None:
    sig = Signal()
    sig.connect(echo, via=process_pool)
    sig.connect(here, via=pool)
    got = sig.send(sender=None, n=1)
    assert got[0][1] == (str(sig), "None", {"n": 1})
    assert got[1][1][0].startswith("pool_")


def test_results_stay_in_connection_order_across_targets(
    loop_thread: LoopThread, pool: Executor, serial: Serial
) -> None:
    sig = Signal()
    names = ["a", "b", "c", "d", "e"]
    targets: list[Any] = [serial, None, loop_thread.loop, INLINE, pool]
    receivers = []
    for name, target in zip(names, targets, strict=True):

        def r(sender: Any, _name: str = name, **kw: Any) -> str:
            return _name

        receivers.append(r)
        sig.connect(r, via=target)
    for how in SENDS:
        assert [v for _, v in do(sig, how)] == names


# -- the gate runs where the call begins ----------------------------------------------


def test_a_receiver_disconnected_while_its_call_waits_in_a_serial_is_not_called(
    serial: Serial,
) -> None:
    called: list[str] = []

    def late(sender: Any, **kw: Any) -> None:
        called.append("late")

    sig = Signal()
    sig.connect(late, via=serial)
    go = held_serial(serial)
    queued = threading.Event()
    real = serial.post  # every call a Serial queues passes here

    def post(*args: Any) -> None:
        real(*args)
        queued.set()

    serial.post = post  # type: ignore[method-assign]
    t, out = send_in_thread(lambda: sig.send(sender=None))
    assert queued.wait(10)  # the call waits behind the held job
    assert sig.disconnect(late)
    go.set()
    t.join(10)
    assert out == [[]] and called == []


def test_a_receiver_disconnected_while_its_call_waits_on_a_loop_is_not_called(
    loop_thread: LoopThread,
) -> None:
    called: list[str] = []

    def late(sender: Any, **kw: Any) -> None:
        called.append("late")

    async def late_async(sender: Any, **kw: Any) -> None:
        called.append("late_async")

    sig = Signal()
    sig.connect(late, via=loop_thread.loop)
    sig.connect(late_async, via=loop_thread.loop)
    go = loop_thread.hold()
    handed = threading.Event()
    real = loop_thread.loop.call_soon_threadsafe
    count = [0]

    def call_soon_threadsafe(*args: Any, **kw: Any) -> Any:
        handle = real(*args, **kw)
        count[0] += 1
        if count[0] == 2:
            handed.set()
        return handle

    loop_thread.loop.call_soon_threadsafe = call_soon_threadsafe  # type: ignore[method-assign]
    try:
        t, out = send_in_thread(lambda: sig.send(sender=None))
        assert handed.wait(10)  # both calls wait behind the blocked loop
        assert sig.disconnect(late) and sig.disconnect(late_async)
        go.set()
        t.join(10)
    finally:
        del loop_thread.loop.call_soon_threadsafe
    assert out == [[]] and called == []


# -- fire and forget ------------------------------------------------------------------


def test_a_fire_and_forget_slot_holds_a_future_and_the_send_does_not_wait(
    pool: Executor,
) -> None:
    go = threading.Event()

    def slow(sender: Any, **kw: Any) -> str:
        assert go.wait(10)
        return "done"

    sig = Signal()
    sig.connect(slow, via=pool, wait=False)
    sig.connect(here)
    [(r, fut), (_, (thread, _))] = sig.send(sender=None)
    assert r is slow and isinstance(fut, Future) and not fut.done()
    assert thread == threading.current_thread().name
    go.set()
    assert fut.result(10) == "done"


@pytest.mark.parametrize("how", ["send", "asend"])
def test_a_fire_and_forget_failure_is_logged_and_in_its_future_never_raised(
    how: str, pool: Executor, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(sender: Any, **kw: Any) -> None:
        raise LookupError("nobody waits")

    sig = Signal()
    sig.connect(boom, via=pool, wait=False)
    with caplog.at_level(logging.ERROR, logger="concsignals"):
        [(_, fut)] = do(sig, how)
        err = fut.exception(10)
    assert isinstance(err, LookupError)
    assert any(rec.exc_info and rec.exc_info[1] is err for rec in caplog.records)


def test_monitors_see_a_fire_and_forget_failure(pool: Executor) -> None:
    seen: list[Any] = []
    ended = threading.Event()

    class Watch:
        def call_ended(self, call: Any) -> None:
            seen.append((call.receiver, call.error))
            ended.set()

    def boom(sender: Any, **kw: Any) -> None:
        raise LookupError("seen")

    sig = Signal()
    sig.connect(boom, via=pool, wait=False)
    watch = Watch()
    monitoring.install(watch)
    try:
        [(_, fut)] = sig.send(sender=None)
        assert isinstance(fut.exception(10), LookupError)
        assert ended.wait(10)
    finally:
        monitoring.uninstall(watch)
    assert any(r is boom and isinstance(e, LookupError) for r, e in seen)


def test_a_fire_and_forget_call_outlives_the_sends_failure_and_deadline(
    pool: Executor,
) -> None:
    go = threading.Event()
    ended: list[str] = []

    def slow(sender: Any, **kw: Any) -> str:
        assert go.wait(10)
        ended.append("slow")
        return "still done"

    def boom(sender: Any, **kw: Any) -> None:
        raise LookupError("the send fails")

    def past_the_deadline(sender: Any, **kw: Any) -> None:
        go.wait(10)

    sig = Signal()
    sig.connect(slow, via=pool, wait=False)
    sig.connect(boom)
    with pytest.raises(LookupError):
        sig.send(sender=None)  # the failure closes the send
    late = Signal()
    late.connect(slow, via=pool, wait=False)
    late.connect(past_the_deadline, via=pool)
    [(_, fut), (_, err)] = late.using(None, timeout=0.05).send_robust(sender=None)
    assert isinstance(err, TimeoutError) and not fut.done()
    go.set()
    assert fut.result(10) == "still done"
    pool.shutdown(wait=True)  # type: ignore[attr-defined]
    assert ended == ["slow", "slow"]


def test_a_fire_and_forget_call_disconnected_before_it_began_is_cancelled(
    serial: Serial,
) -> None:
    called: list[str] = []

    def late(sender: Any, **kw: Any) -> None:
        called.append("late")

    sig = Signal()
    sig.connect(late, via=serial, wait=False)
    go = held_serial(serial)
    [(_, fut)] = sig.send(sender=None)
    assert sig.disconnect(late)
    go.set()
    with pytest.raises(Exception) as raised:
        fut.result(10)
    assert fut.cancelled(), raised.value
    assert called == []
    from concurrent.futures import wait

    assert wait([fut], timeout=10).done == {fut}  # as_completed/wait see it


def test_cancelling_a_fire_and_forget_future_withdraws_a_call_not_begun(
    serial: Serial,
) -> None:
    called: list[str] = []

    def late(sender: Any, **kw: Any) -> None:
        called.append("late")

    sig = Signal()
    sig.connect(late, via=serial, wait=False)
    go = held_serial(serial)
    [(_, fut)] = sig.send(sender=None)
    assert fut.cancel()
    go.set()
    serial.shutdown()  # every job it had ended
    assert called == []


# -- phases ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["send", "send_robust", "asend", "submit"])
def test_every_call_of_a_lower_phase_ends_before_a_higher_phase_begins(
    how: str, pool: Executor
) -> None:
    """Phase 0's call waits (up to 2 s) for phase 1's to begin: with the
    barrier it never does, and phase 1 begins only after phase 0 ended."""
    log: list[str] = []
    later_began = threading.Event()

    def first(sender: Any, **kw: Any) -> str:
        log.append("first began")
        later_began.wait(2)
        log.append("first ended")
        return "first"

    def later(sender: Any, **kw: Any) -> str:
        log.append("later began")
        later_began.set()
        return "later"

    def cache(sender: Any, **kw: Any) -> str:
        log.append("cache")
        return "cache"

    sig = Signal()
    sig.connect(later, via=pool, phase=1)
    sig.connect(first, via=pool)
    sig.connect(cache, via=pool, phase=-1)
    got = do(sig, how)
    assert [v for _, v in got] == ["later", "first", "cache"]  # connection order
    assert log == ["cache", "first began", "first ended", "later began"]


def test_a_failure_in_a_phase_begins_no_later_phase(pool: Executor) -> None:
    called: list[str] = []

    def boom(sender: Any, **kw: Any) -> None:
        raise LookupError("phase 0 failed")

    def later(sender: Any, **kw: Any) -> None:
        called.append("later")

    sig = Signal()
    sig.connect(boom, via=pool)
    sig.connect(later, via=pool, phase=1)
    with pytest.raises(LookupError):
        sig.send(sender=None)
    assert called == []
    got = [type(v) for _, v in sig.send_robust(sender=None)]
    assert got == [LookupError, type(None)]
    assert called == ["later"]


# -- no deadlock when the target is the sender's own thread ---------------------------


@pytest.fixture
def no_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    """No time-based fallback: only what concsignals knows of a thread
    decides where a call runs (see ``_threads.worker_of``)."""
    monkeypatch.setattr(_threads, "PATIENCE", 1e9)


@pytest.mark.timeout(10)
def test_a_send_on_a_loops_thread_to_that_loop_runs_the_call_there(
    loop_thread: LoopThread, no_patience: None
) -> None:
    sig = Signal()
    sig.connect(here, via=loop_thread.loop)
    done: Future[Any] = Future()

    def on_the_loop() -> None:
        done.set_result(sig.send(sender=None))

    loop_thread.loop.call_soon_threadsafe(on_the_loop)
    [(_, (thread, _))] = done.result(10)
    assert thread == "loop-thread"


def test_a_sync_send_on_a_loops_thread_to_an_async_receiver_there_fails_in_its_slot(
    loop_thread: LoopThread,
) -> None:
    sig = Signal()
    sig.connect(here_async, via=loop_thread.loop)
    done: Future[Any] = Future()
    loop_thread.loop.call_soon_threadsafe(
        lambda: done.set_result(sig.send_robust(sender=None))
    )
    [(_, err)] = done.result(10)
    assert isinstance(err, RuntimeError) and "would block that loop" in str(err)


def test_asend_on_a_loop_to_that_loop_awaits_without_blocking_it() -> None:
    async def main() -> Any:
        sig = Signal()
        sig.connect(here_async, via=asyncio.get_running_loop())
        sig.connect(here, via=asyncio.get_running_loop(), dispatch_uid="sync")
        return await sig.asend(sender=None)

    got = asyncio.run(main())
    assert [v[0] for _, v in got] == [threading.current_thread().name] * 2


@pytest.mark.timeout(10)
def test_a_send_from_a_serials_job_to_that_serial_runs_the_call_there(
    serial: Serial, no_patience: None
) -> None:
    sig = Signal()
    inner = Signal()
    inner.connect(here, via=serial)

    def outer(sender: Any, **kw: Any) -> Any:
        return inner.send(sender=None)

    sig.connect(outer, via=serial)
    [(_, [(_, (thread, _))])] = sig.send(sender=None)
    assert thread == "concsignals-serial"


def test_a_bounded_serial_full_from_its_own_job_fails_at_once() -> None:
    """Room in a full Serial is made by its worker: a fire-and-forget call
    queued from that very worker cannot wait for it (it would for ever)."""
    bounded = Serial(maxsize=1)
    inner = Signal()
    inner.connect(here, via=bounded, wait=False)

    def outer(sender: Any, **kw: Any) -> Any:
        [(_, first)] = inner.send(sender=None)  # queued: the queue is full
        [(_, second)] = inner.send(sender=None)
        return first, second

    sig = Signal()
    sig.connect(outer, via=bounded)
    [(_, (first, second))] = sig.send(sender=None)
    assert isinstance(second.exception(10), TimeoutError)
    assert first.result(10)[0] == "concsignals-serial"
    bounded.shutdown()


def test_a_send_from_a_pools_only_worker_to_that_pool_finishes() -> None:
    with ThreadPoolExecutor(1, thread_name_prefix="only") as one:
        inner = Signal()
        inner.connect(here, via=one)

        def outer(sender: Any, **kw: Any) -> Any:
            return inner.send(sender=None)

        sig = Signal()
        sig.connect(outer, via=one)
        [(_, [(_, (thread, _))])] = sig.send(sender=None)
    assert thread.startswith("only")


# -- Serial ---------------------------------------------------------------------------


def test_a_serial_runs_calls_one_at_a_time_in_the_order_sends_reached_it(
    serial: Serial, switch_often: None
) -> None:
    running = [0]
    overlap: list[int] = []
    order: list[int] = []
    lock = threading.Lock()

    def indexer(sender: Any, n: int, **kw: Any) -> int:
        with lock:
            running[0] += 1
            overlap.append(running[0])
        order.append(n)
        with lock:
            running[0] -= 1
        return n

    sig = Signal()
    sig.connect(indexer, via=serial, wait=False)
    futures = [sig.send(sender=None, n=n)[0][1] for n in range(200)]
    assert [f.result(10) for f in futures] == list(range(200))
    assert order == list(range(200)) and max(overlap) == 1


def test_a_full_bounded_serial_times_out_the_slot_and_drops_nothing() -> None:
    bounded = Serial(maxsize=1)
    go = threading.Event()
    ran: list[str] = []
    bounded.submit(go.wait, 10)  # running
    bounded.submit(go.wait, 10)  # queued: full

    def r(sender: Any, **kw: Any) -> str:
        ran.append("r")
        return "r"

    sig = Signal()
    sig.connect(r, via=bounded)
    [(_, err)] = sig.using(None, timeout=0.05).send_robust(sender=None)
    assert isinstance(err, TimeoutError) and "was not started" in str(err)
    go.set()
    assert [v for _, v in sig.send(sender=None)] == ["r"]  # room again
    bounded.shutdown()
    assert ran == ["r"]


def test_a_serial_on_an_executor_runs_its_calls_there(pool: Executor) -> None:
    on_pool = Serial(pool)
    sig = Signal()
    sig.connect(here, via=on_pool)
    [(_, (thread, _))] = sig.send(sender=None)
    assert thread.startswith("pool_")


# -- connect: bad input, and connections with options like any other ------------------


class Unpicklable:
    def __call__(self, sender: Any, **kw: Any) -> None:
        pass

    def __reduce__(self) -> Any:
        raise pickle.PicklingError("not this one")


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"via": "pool"}, TypeError, "connect(via=...) must be None"),
        ({"via": 3}, TypeError, "not 3"),
        ({"wait": 1}, TypeError, "connect(wait=...) must be True or False, not 1"),
        ({"phase": 1.5}, TypeError, "connect(phase=...) must be an int, not 1.5"),
        ({"phase": True}, TypeError, "must be an int, not True"),
    ],
)
def test_bad_options_are_refused_and_nothing_is_connected(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    sig = Signal()
    with pytest.raises(error) as raised:
        sig.connect(here, **kwargs)
    assert words in str(raised.value)
    assert not sig.has_listeners()


def test_an_unpicklable_receiver_for_a_process_pool_is_refused_at_connect(
    process_pool: Executor,
) -> None:
    sig = Signal()
    bad = Unpicklable()
    with pytest.raises(pickle.PicklingError) as raised:
        sig.connect(bad, via=process_pool, weak=False)
    assert repr(bad) in str(raised.value) and "other processes" in str(raised.value)
    assert not sig.has_listeners()


def test_a_closed_loop_is_refused() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(ValueError, match="is closed"):
        Signal().connect(here, via=loop)


def test_connections_with_options_filter_senders_disconnect_and_list_like_any(
    pool: Executor,
) -> None:
    sig = Signal()
    sig.connect(here, sender=Shop, via=pool, dispatch_uid="shop")
    sig.connect(echo, via=pool, phase=2)
    assert sig.receivers == [here, echo]
    assert [r for r, _ in sig.send(sender=object())] == [echo]
    assert [r for r, _ in sig.send(sender=Shop)] == [here, echo]
    assert sig.disconnect(dispatch_uid="shop", sender=Shop)
    assert sig.disconnect(echo)
    assert sig.send(sender=Shop) == [] and not sig.has_listeners()


def test_connecting_again_keeps_the_first_connections_options(pool: Executor) -> None:
    sig = Signal()
    sig.connect(here, via=pool)
    sig.connect(here, via=INLINE)
    [(_, (thread, _))] = sig.send(sender=None)
    assert thread.startswith("pool_")


def test_a_django_signal_takes_per_connection_options(pool: Executor) -> None:
    pytest.importorskip("django")
    from concsignals.django import Signal as DjangoSignal

    sig = DjangoSignal()
    sig.connect(here, via=pool)
    [(_, (thread, _))] = sig.send(sender=None)
    assert thread.startswith("pool_")
    [(_, (thread, _))] = asyncio.run(sig.asend(sender=None))
    assert thread.startswith("pool_")


def test_public_names() -> None:
    assert concsignals.INLINE is INLINE and concsignals.Serial is Serial
    assert repr(INLINE) == "concsignals.INLINE"
    assert pickle.loads(pickle.dumps(INLINE)) is INLINE
    assert os.getpid()  # (imports used)


# -- out of process, Dask, fork -------------------------------------------------------


def test_an_async_receiver_on_a_process_pool_runs_to_its_end_there(
    process_pool: Executor,
) -> None:
    from tests.receivers import pid_async

    sig = Signal()
    sig.connect(pid_async, via=process_pool)
    [(_, pid)] = sig.send(sender=None)
    assert isinstance(pid, int) and pid != os.getpid()
    [(_, pid)] = asyncio.run(sig.asend(sender=None))
    assert isinstance(pid, int) and pid != os.getpid()


@pytest.mark.timeout(120)
def test_a_dask_client_is_a_target(dask_client: Any) -> None:
    from tests.receivers import pid_async

    sig = Signal()
    sig.connect(echo, via=dask_client)
    sig.connect(pid_async, via=dask_client, wait=False)
    [(_, got), (_, fut)] = sig.send(sender=None, n=2)
    assert got == (str(sig), "None", {"n": 2})
    assert fut.result(60) != os.getpid()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_serial_works_in_a_forked_child(serial: Serial) -> None:
    from tests.test_fork import in_child

    sig = Signal()
    sig.connect(here, via=serial)
    assert sig.send(sender=None)[0][1][0] == "concsignals-serial"  # worker running

    def child() -> str:
        return str(sig.send(sender=None)[0][1][0])

    assert in_child(child) == "concsignals-serial"


# -- deadlines ------------------------------------------------------------------------


def test_a_call_still_queued_in_a_serial_at_the_deadline_is_withdrawn(
    serial: Serial,
) -> None:
    ran: list[str] = []

    def queued(sender: Any, **kw: Any) -> None:
        ran.append("queued")

    sig = Signal()
    sig.connect(queued, via=serial)
    go = held_serial(serial)
    [(_, err)] = sig.using(None, timeout=0.05).send_robust(sender=None)
    assert isinstance(err, TimeoutError) and "was not started" in str(err)
    go.set()
    serial.shutdown()
    assert ran == []


def test_an_async_call_on_another_loop_not_ended_at_the_deadline_is_cancelled(
    loop_thread: LoopThread,
) -> None:
    cancelled = threading.Event()

    async def stuck(sender: Any, **kw: Any) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    sig = Signal()
    sig.connect(stuck, via=loop_thread.loop)
    [(_, err)] = sig.using(None, timeout=0.2).send_robust(sender=None)
    assert isinstance(err, TimeoutError) and "did not finish" in str(err)
    assert cancelled.wait(10)


# -- fire and forget on every target --------------------------------------------------


@pytest.mark.parametrize("how", SENDS)
@pytest.mark.parametrize("receiver", [here, here_async], ids=["sync", "async"])
def test_fire_and_forget_runs_on_each_target_with_the_senders_context(
    how: str, receiver: Any, loop_thread: LoopThread, pool: Executor, serial: Serial
) -> None:
    sig = Signal()
    sig.connect(receiver, via=pool, wait=False, dispatch_uid="pool")
    sig.connect(receiver, via=loop_thread.loop, wait=False, dispatch_uid="loop")
    sig.connect(receiver, via=serial, wait=False, dispatch_uid="serial")
    sig.connect(receiver, via=INLINE, wait=False, dispatch_uid="inline")
    sig.connect(receiver, wait=False, dispatch_uid="plain")
    if how == "asend":  # a task left on the sender's loop: await it there

        async def sending() -> list[Any]:
            token = request_id.set(how)
            slots = await sig.asend(sender=Shop)
            request_id.reset(token)
            return [await asyncio.wrap_future(fut) for _, fut in slots]

        got = asyncio.run(sending())
    else:
        got = [fut.result(10) for _, fut in do(sig, how)]
    threads = [name for name, _ in got]
    assert threads[0].startswith("pool_")
    assert threads[1] == "loop-thread"
    assert threads[2] == "concsignals-serial"
    assert threads[4].startswith("concsignals")  # the pool concsignals owns
    assert [ctx for _, ctx in got] == [how] * 5


@pytest.mark.timeout(10)
def test_a_call_to_an_idle_serial_wakes_its_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Serial, "IDLE", 1e9)  # idle for ever: only a wake-up helps
    idle = Serial()
    sig = Signal()
    sig.connect(here, via=idle)
    assert sig.send(sender=None)[0][1][0] == "concsignals-serial"
    assert sig.send(sender=None)[0][1][0] == "concsignals-serial"  # woken
