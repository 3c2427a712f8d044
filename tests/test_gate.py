"""The begin gate, raced deterministically (issues 10 and 17).

"Once a send is closed, no call of it begins" depends on timing: a worker may
have *taken* a call's job before the send closed and *begin* it afterwards.
These tests hold a job at exactly that point (taken, not begun), close the
send (a failure, the deadline, cancellation), let the send return, and only
then release the job: the gate must refuse it.  Without the gate, every one
of them fails every time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from concsignals import Signal, _run
from tests.receivers import Reply, Shop

T = TypeVar("T")


class Boom(Exception):
    pass


class HeldPool(ThreadPoolExecutor):
    """A thread pool that holds the job of its ``hold``-th submit (0-based)
    after a worker took it and before it runs: ``taken`` is set then, and
    the job waits for ``release``."""

    def __init__(self, workers: int, hold: int) -> None:
        super().__init__(workers, thread_name_prefix="held")
        self.hold = hold
        self.submits = 0
        self.taken = threading.Event()
        self.release = threading.Event()
        self.held: list[Future[Any]] = []

    def submit(self, fn: Callable[..., T], /, *args: Any, **kw: Any) -> Future[T]:
        index, self.submits = self.submits, self.submits + 1
        if index != self.hold:
            return super().submit(fn, *args, **kw)

        def held() -> T:
            self.taken.set()
            assert self.release.wait(30)
            return fn(*args, **kw)

        fut = super().submit(held)
        self.held.append(fut)  # type: ignore[arg-type]
        return fut

    def finish(self) -> None:
        """Release the held job and wait until it has run."""
        self.release.set()
        for fut in self.held:
            fut.result(timeout=30)


@pytest.fixture
def held() -> Iterator[HeldPool]:
    pool = HeldPool(2, hold=1)
    yield pool
    pool.release.set()
    pool.shutdown()


def signal_with(held: HeldPool, called: list[str], sig: Signal | None = None) -> Signal:
    """[fails once the victim's job is taken, victim]."""
    sig = sig or Signal()

    def fails(**kw: Any) -> None:
        assert held.taken.wait(30)
        raise Boom("x")

    def victim(**kw: Any) -> str:
        called.append("victim")
        return "victim"

    sig.connect(fails, weak=False)
    sig.connect(victim, weak=False)
    return sig


@pytest.mark.timeout(30)
def test_a_job_taken_before_a_failure_closed_the_send_never_begins(
    held: HeldPool,
) -> None:
    called: list[str] = []
    sig = signal_with(held, called)
    with pytest.raises(Boom):
        sig.using(held).send(Shop)
    held.finish()
    assert called == []


@pytest.mark.timeout(30)
def test_a_job_taken_before_the_deadline_never_begins_after_it(
    held: HeldPool,
) -> None:
    called: list[str] = []
    sig = Signal()
    sig.connect(first := Reply("first"))

    def victim(**kw: Any) -> str:
        called.append("victim")
        return "victim"

    sig.connect(victim)
    result = sig.using(held, timeout=0.2).send_robust(Shop)
    assert held.taken.is_set()
    held.finish()
    assert called == []
    assert result[0] == (first, "first")
    assert "was not started" in str(result[1][1])


@pytest.mark.timeout(30)
def test_asend_on_threads_never_begins_a_taken_job_after_a_failure(
    held: HeldPool,
) -> None:
    called: list[str] = []
    sig = signal_with(held, called)

    async def main() -> None:
        with pytest.raises(Boom):
            await sig.using(held).asend(Shop)

    asyncio.run(main())
    held.finish()
    assert called == []


class HeldOffload(Signal):
    """``asend`` without an executor: its job of sync receivers is held
    after the executor took it (the hook concsignals.django overrides)."""

    taken: threading.Event
    release: threading.Event
    jobs: list[Any]

    def _offload_sync(self, job: Callable[[], T]) -> Awaitable[T]:
        def held() -> T:
            self.taken.set()
            assert self.release.wait(30)
            return job()

        fut = asyncio.get_running_loop().run_in_executor(None, held)
        self.jobs.append(fut)
        return fut


@pytest.mark.timeout(30)
def test_asend_never_begins_its_offloaded_sync_calls_after_a_failure() -> None:
    sig = HeldOffload()
    sig.taken, sig.release, sig.jobs = threading.Event(), threading.Event(), []
    called: list[str] = []

    async def fails(**kw: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(None, sig.taken.wait, 30)
        raise Boom("x")

    def victim(**kw: Any) -> None:
        called.append("victim")

    sig.connect(fails)
    sig.connect(victim)

    async def main() -> None:
        with pytest.raises(Boom):
            await sig.asend(Shop)
        sig.release.set()
        await asyncio.gather(*sig.jobs)

    asyncio.run(main())
    assert called == []


@pytest.mark.timeout(30)
def test_cancelling_a_submit_future_stops_a_taken_job(held: HeldPool) -> None:
    """Issue 11 item 4, on an executor: cancel() succeeds; nothing begins."""
    called: list[str] = []
    sig = Signal()
    sig.connect(first := Reply("first"))

    def victim(**kw: Any) -> None:
        called.append("victim")

    sig.connect(victim)
    fut = sig.using(held).submit(Shop)
    assert held.taken.wait(10)
    assert fut.cancel()
    held.finish()
    assert called == []
    del first


@pytest.mark.timeout(30)
@pytest.mark.parametrize("timeout", [None, 10.0])
def test_cancelling_a_submit_future_without_an_executor_stops_later_calls(
    monkeypatch: pytest.MonkeyPatch, timeout: float | None
) -> None:
    """Issue 11 item 4, on the owned pool (``signal.submit()``, and a view
    with a deadline): the Future is concsignals' own, so cancel() succeeds
    while the send runs, and no later call begins."""
    pool = ThreadPoolExecutor(1)
    monkeypatch.setattr(_run.executors, "owned_pool", lambda: pool)
    entered, go = threading.Event(), threading.Event()
    called: list[str] = []

    def blocker(**kw: Any) -> None:
        entered.set()
        assert go.wait(30)

    def victim(**kw: Any) -> None:
        called.append("victim")

    sig = Signal()
    sig.connect(blocker)
    sig.connect(victim)
    fut = sig.using(None, timeout=timeout).submit(Shop)
    assert entered.wait(10)
    assert fut.cancel()
    go.set()
    pool.submit(int).result(timeout=10)  # the send's job has ended
    pool.shutdown()
    assert called == []


class SlowHandOff(Executor):
    """Hands calls to ``inner``; the first hand-off takes ``pause`` seconds."""

    def __init__(self, inner: Executor, pause: float) -> None:
        self.inner = inner
        self.pause = pause
        self.submits = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kw: Any) -> Future[T]:
        self.submits += 1
        if self.submits == 1:
            time.sleep(self.pause)  # certainly past the deadline: 0.5 > 0.1
        return self.inner.submit(fn, *args, **kw)


@pytest.mark.timeout(60)
def test_no_call_is_handed_over_once_the_deadline_passed(
    process_pool: Executor,
) -> None:
    slow = SlowHandOff(process_pool, pause=0.5)
    sig = Signal()
    sig.connect(a := Reply("a"))
    sig.connect(b := Reply("b"))
    result = sig.using(slow, timeout=0.1).send_robust(Shop)
    assert slow.submits == 1
    assert [r for r, _ in result] == [a, b]
    assert "was not started" in str(result[1][1])
