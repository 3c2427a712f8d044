"""A receiver's lifetime: ``disconnect(wait=True)``, ``adisconnect`` and
``drain`` (issue 23).

Each test parks a call of the receiver on an event (``Parked``), so the call
has surely begun and surely not ended when the disconnect is made; the
disconnect runs in a thread of its own, and the test checks that it returns
only after the call was let go, which it records.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import concsignals
from concsignals import Serial, Signal, monitoring
from concsignals import django as cdjango
from tests.receivers import WaitForFile

pytestmark = pytest.mark.timeout(30)


class Parked:
    """A receiver whose calls wait for ``go``; ``began`` once one began.
    ``log`` records the end of each call and, from the test, the return of
    the disconnect: their order is what a test checks."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.began = threading.Event()
        self.go = threading.Event()
        self.ended = threading.Event()

    #: False: a call returns at once (a send that warms a signal up).
    armed = True

    def __call__(self, **named: Any) -> str:
        if not self.armed:
            return "warm"
        self.began.set()
        assert self.go.wait(20), "never let go"
        self.log.append("call ended")
        self.ended.set()
        return "parked"

    def finish(self) -> None:
        """Let the call go and see it end (before the test's loop closes)."""
        self.go.set()
        assert self.ended.wait(10)

    def __repr__(self) -> str:
        return "<Parked receiver>"


class AsyncParked(Parked):
    async def __call__(self, **named: Any) -> str:  # type: ignore[override]
        self.began.set()
        while not self.go.is_set():
            await asyncio.sleep(0.001)
        self.log.append("call ended")
        self.ended.set()
        return "parked"


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="loop", daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as err:  # the test reads it
            out.append(err)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


#: How a call of the parked receiver is made, each way a call can run.
WAYS = [
    "send",  # the fast path: the signal was sent through once before
    "send-first",  # the first send after a connect: _inline.call_inline
    "send-past-a-dead-one",  # the fast path skips a receiver gone meanwhile
    "send_robust",
    "monitored",
    "django",
    "pool",
    "via-pool",
    "via-loop",
    "via-serial",
    "fire-and-forget",
    "fire-and-forget-monitored",
    "async-via-loop",
    "asend",
]


class Watch:
    def call_ended(self, call: Any) -> None:
        pass


def start(way: str, log: list[str], loop_thread: LoopThread) -> tuple[Signal, Parked]:
    """Connect a parked receiver the ``way`` says and start a send of it in
    another thread; return once the call has begun."""
    parked = AsyncParked(log) if way in ("async-via-loop", "asend") else Parked(log)
    sig: Signal = cdjango.Signal() if way == "django" else Signal()
    pool = ThreadPoolExecutor(2)
    options: dict[str, Any] = {
        "via-pool": {"via": pool},
        "via-loop": {"via": loop_thread.loop},
        "async-via-loop": {"via": loop_thread.loop},
        "via-serial": {"via": Serial()},
        "fire-and-forget": {"via": pool, "wait": False},
        "fire-and-forget-monitored": {"via": pool, "wait": False},
    }.get(way, {})
    if way == "send-past-a-dead-one":
        dead = Parked(log)
        dead.armed = False
        sig.connect(dead)  # weakly: gone below, still in the send's tuple
    sig.connect(parked, weak=False, **options)
    if way in ("send", "django", "send-past-a-dead-one"):  # the fast path
        parked.armed = False
        sig.send(sender=None)
        parked.armed = True
    if way == "send-past-a-dead-one":
        del dead
        gc.collect()
    sends: dict[str, Callable[[], Any]] = {
        "pool": lambda: sig.using(pool).send(sender=None),
        "send_robust": lambda: sig.send_robust(sender=None),
        "asend": lambda: asyncio.run(sig.asend(sender=None)),
    }
    send = sends.get(way, lambda: sig.send(sender=None))
    watch = Watch()
    if way.endswith("monitored"):
        monitoring.install(watch)
    try:
        in_thread(send)
        assert parked.began.wait(10)
    finally:
        monitoring.uninstall(watch)
    return sig, parked


@pytest.mark.parametrize("way", WAYS)
def test_disconnect_with_wait_returns_once_the_running_call_ended(
    way: str, loop_thread: LoopThread
) -> None:
    log: list[str] = []
    sig, parked = start(way, log, loop_thread)
    t, out = in_thread(lambda: sig.disconnect(parked, wait=True))
    t.join(0.3)
    assert t.is_alive(), f"returned while the call runs: {out}"
    log.append("let go")
    parked.go.set()
    t.join(10)
    log.append("disconnect returned")
    assert out == [True]
    assert log == ["let go", "call ended", "disconnect returned"]


@pytest.mark.parametrize("way", ["send", "via-pool", "asend"])
def test_disconnect_without_wait_returns_while_the_call_runs(
    way: str, loop_thread: LoopThread
) -> None:
    log: list[str] = []
    sig, parked = start(way, log, loop_thread)
    assert sig.disconnect(parked)
    assert log == []  # the call still runs
    parked.finish()


@pytest.mark.parametrize("way", ["send", "via-pool", "via-serial"])
def test_a_timed_out_wait_names_the_call_and_the_receiver_stays_gone(
    way: str, loop_thread: LoopThread
) -> None:
    log: list[str] = []
    sig, parked = start(way, log, loop_thread)
    with pytest.raises(TimeoutError, match="the disconnected receiver"):
        sig.disconnect(parked, wait=True, timeout=0.05)
    assert sig.receivers == []
    parked.finish()


@pytest.mark.parametrize("how", ["send", "via-pool", "asend"])
def test_a_receiver_disconnects_itself_with_wait(how: str) -> None:
    sig = Signal()
    pool = ThreadPoolExecutor(1)

    def itself(**named: Any) -> bool:
        return sig.disconnect(itself, wait=True, timeout=5)

    async def itself_async(**named: Any) -> bool:
        return sig.disconnect(itself_async, wait=True, timeout=5)

    if how == "asend":
        sig.connect(itself_async)
        [(_, got)] = asyncio.run(sig.asend(sender=None))
    else:
        sig.connect(itself, via=pool if how == "via-pool" else None)
        [(_, got)] = sig.send(sender=None)
    assert got is True
    pool.shutdown()


def test_a_call_in_another_process_is_waited_for_through_its_future(
    process_pool: Executor, tmp_path: Path
) -> None:
    began, go = tmp_path / "began", tmp_path / "go"
    receiver = WaitForFile("done", str(go), 20, began=str(began))
    sig = Signal()
    conn = sig.connect(receiver, weak=False)
    sending, sent = in_thread(lambda: sig.using(process_pool).send(sender=None))
    give_up = time.monotonic() + 20
    while not began.exists():
        assert time.monotonic() < give_up, "the call never began in the worker"
        time.sleep(0.01)
    with pytest.raises(TimeoutError, match="another process"):
        sig.disconnect(receiver, wait=True, timeout=0.2)
    waiting, out = in_thread(lambda: conn.disconnect(wait=True))
    waiting.join(0.3)
    assert waiting.is_alive()  # the worker's call has not returned
    go.touch()
    waiting.join(20)
    sending.join(20)
    assert out == [False] and sent == [[(receiver, "done")]]


def test_a_queued_call_is_not_waited_for_and_never_runs() -> None:
    serial = Serial()
    held, go = threading.Event(), threading.Event()
    serial.submit(lambda: (held.set(), go.wait(10)))
    assert held.wait(10)
    called: list[str] = []
    sig = Signal()
    sig.connect(lambda **kw: called.append("x"), via=serial, wait=False, weak=False)
    [(receiver, fut)] = sig.send(sender=None)  # queued behind the held job
    assert sig.disconnect(receiver, wait=True, timeout=5)  # nothing ran yet
    go.set()
    with pytest.raises(CancelledError):
        fut.result(10)
    assert fut.cancelled() and called == []
    serial.shutdown()


def test_a_sync_wait_on_a_loops_thread_for_a_task_there_refuses(
    loop_thread: LoopThread,
) -> None:
    log: list[str] = []
    sig, parked = start("async-via-loop", log, loop_thread)
    outcome: Future[Any] = Future()

    def on_the_loop() -> None:
        try:
            outcome.set_result(sig.disconnect(parked, wait=True, timeout=5))
        except BaseException as err:
            outcome.set_exception(err)

    loop_thread.loop.call_soon_threadsafe(on_the_loop)
    with pytest.raises(RuntimeError, match="adisconnect"):
        outcome.result(10)
    parked.finish()


def test_adisconnect_on_that_loop_waits_without_blocking_it(
    loop_thread: LoopThread,
) -> None:
    log: list[str] = []
    sig, parked = start("async-via-loop", log, loop_thread)
    waiting = asyncio.run_coroutine_threadsafe(
        sig.adisconnect(parked, timeout=10), loop_thread.loop
    )
    ticked = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop_thread.loop)
    assert ticked.result(10) is None  # the loop runs on meanwhile
    assert not waiting.done()
    parked.go.set()
    assert waiting.result(10) is True
    assert log == ["call ended"]


# -- drain ------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["signal", "everything"])
@pytest.mark.parametrize("way", ["send", "fire-and-forget", "via-serial", "asend"])
def test_drain_returns_once_every_call_ended(
    way: str, scope: str, loop_thread: LoopThread
) -> None:
    log: list[str] = []
    sig, parked = start(way, log, loop_thread)
    drain = sig.drain if scope == "signal" else concsignals.drain
    t, out = in_thread(lambda: drain(timeout=10))
    t.join(0.3)
    assert t.is_alive()
    log.append("let go")
    parked.go.set()
    t.join(10)
    assert out == [None]
    assert log == ["let go", "call ended"]


def test_drain_of_one_signal_does_not_wait_for_another(
    loop_thread: LoopThread,
) -> None:
    log: list[str] = []
    _, parked = start("send", log, loop_thread)
    Signal().drain(timeout=5)
    parked.finish()


def test_drain_waits_for_a_fire_and_forget_call_still_queued() -> None:
    serial = Serial()
    held, go = threading.Event(), threading.Event()
    serial.submit(lambda: (held.set(), go.wait(10)))
    assert held.wait(10)
    sig = Signal()
    sig.connect(lambda **kw: None, via=serial, wait=False, weak=False)
    sig.send(sender=None)
    with pytest.raises(TimeoutError, match="fire-and-forget"):
        sig.drain(timeout=0.05)
    go.set()
    sig.drain(timeout=10)
    serial.shutdown()


def test_drain_inside_a_receiver_refuses() -> None:
    sig = Signal()

    def draining(**named: Any) -> None:
        sig.drain(timeout=1)

    sig.connect(draining)
    with pytest.raises(RuntimeError, match="wait for itself"):
        sig.send(sender=None)


def test_adrain_waits_without_blocking_the_loop(loop_thread: LoopThread) -> None:
    log: list[str] = []
    _, parked = start("send", log, loop_thread)

    async def main() -> None:
        draining = asyncio.ensure_future(concsignals.adrain(timeout=10))
        await asyncio.sleep(0.05)
        assert not draining.done()
        parked.go.set()
        await draining

    asyncio.run(main())
    assert log == ["call ended"]


# -- fork ---------------------------------------------------------------------------


def test_a_forked_child_starts_with_nothing_in_flight(
    loop_thread: LoopThread,
) -> None:
    """A call running in another thread of the parent stays there: in the
    child, drain and a waiting disconnect return at once."""
    from tests.test_fork import in_child

    log: list[str] = []
    sig, parked = start("via-pool", log, loop_thread)
    fired, queued = start("fire-and-forget", log, loop_thread)

    def child() -> tuple[bool, bool]:
        concsignals.drain(timeout=5)
        return sig.disconnect(parked, wait=True, timeout=5), bool(fired.receivers)

    assert in_child(child) == (True, True)
    assert sig.receivers == [parked]  # the parent's connection is untouched
    parked.finish()
    queued.finish()
