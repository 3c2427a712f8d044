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
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from concsignals import Signal, _run
from tests.receivers import Carried, Halt, Reply, Shop, Stop

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
        self.futures: list[Future[Any]] = []  # of every submit, in order

    def submit(self, fn: Callable[..., T], /, *args: Any, **kw: Any) -> Future[T]:
        index, self.submits = self.submits, self.submits + 1
        if index != self.hold:
            self.futures.append(fut := super().submit(fn, *args, **kw))
            return fut

        def held() -> T:
            self.taken.set()
            assert self.release.wait(30)
            return fn(*args, **kw)

        fut = super().submit(held)
        self.held.append(fut)  # type: ignore[arg-type]
        self.futures.append(fut)  # type: ignore[arg-type]
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
    held: HeldPool, clock: Clock
) -> None:
    """The first call ends; the victim's job is taken; then the deadline
    passes (on the test clock), and only then is the job let go."""
    called: list[str] = []
    sig = Signal()
    sig.connect(first := Reply("first"))

    def victim(**kw: Any) -> str:
        called.append("victim")
        return "victim"

    sig.connect(victim)

    def deadline_passes() -> None:
        assert held.taken.wait(10)
        held.futures[0].result(timeout=10)  # the first call has ended
        clock.pass_deadlines()
        held.release.set()

    threading.Thread(target=deadline_passes).start()
    result = sig.using(held, timeout=20).send_robust(Shop)
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


class Clock:
    """The deadlines' clock, for tests: it stands still until the test moves
    it (:meth:`pass_deadlines`), so no deadline passes before the events a
    test orders before it, however slow the machine.  Waits still last real
    time: a wait "until the deadline" lasts the send's ``timeout``."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def pass_deadlines(self) -> None:
        self.now += 10_000.0


def patch_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """A :class:`Clock` read by every module that reads deadlines."""
    from concsignals import _pickled, _send, _threads

    tick = Clock()
    for module in (_send, _threads, _pickled):
        monkeypatch.setattr(module, "monotonic", tick)
    return tick


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return patch_clock(monkeypatch)


class SlowHandOff(Executor):
    """Hands calls to ``inner``; the deadline passes during the first hand-off."""

    def __init__(self, inner: Executor, clock: Clock) -> None:
        self.inner = inner
        self.clock = clock
        self.submits = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kw: Any) -> Future[T]:
        self.submits += 1
        if self.submits == 1:
            self.clock.pass_deadlines()
        return self.inner.submit(fn, *args, **kw)


@pytest.mark.timeout(60)
def test_no_call_is_handed_over_once_the_deadline_passed(
    process_pool: Executor, clock: Clock
) -> None:
    slow = SlowHandOff(process_pool, clock)
    sig = Signal()
    sig.connect(a := Reply("a"))
    sig.connect(b := Reply("b"))
    result = sig.using(slow, timeout=0.1).send_robust(Shop)
    assert slow.submits == 1
    assert [r for r, _ in result] == [a, b]
    assert "was not started" in str(result[1][1])


# -- handed over, then cancelled (out of process) ---------------------------------


def connected(*receivers: Any) -> tuple[Signal, list[Any]]:
    """A new signal with ``receivers`` connected (weakly), in that order; the
    list keeps them alive."""
    sig = Signal()
    for r in receivers:
        sig.connect(r)
    return sig, list(receivers)


class Parked(ProcessPoolExecutor):
    """An out-of-process executor whose queue a test controls.

    It is a ``ProcessPoolExecutor`` to concsignals (whose cancelled futures
    never ran), but starts no process: the jobs listed in ``run`` run at once
    in the caller's thread, and the others are *parked*: their Futures stay
    pending, as calls queued behind busy workers do, until the send cancels
    them or the test ends them (:meth:`fail`, :meth:`end`).  Tests order
    those ends by events of the send, never by time: :meth:`at` runs a step
    right after a given call was handed over, :meth:`on_cancel` when the
    send cancels a given parked call."""

    def __init__(self, run: set[int], quiet: bool = False) -> None:
        super().__init__(1)
        self.run = run
        self.quiet = quiet
        self.submits = 0
        self.parked: list[ParkedFuture] = []
        self.steps: dict[int, list[Callable[[], object]]] = {}
        self.cancelling: dict[int, list[Callable[[], object]]] = {}

    def submit(self, fn: Callable[..., T], /, *args: Any, **kw: Any) -> Future[T]:
        index, self.submits = self.submits, self.submits + 1
        fut = Quiet() if self.quiet else ParkedFuture()
        if index in self.run:
            fut.set_running_or_notify_cancel()
            try:
                fut.set_result(fn(*args, **kw))
            except BaseException as err:
                fut.set_exception(err)
        else:
            fut.cancelling = self.cancelling.get(len(self.parked), [])
            self.parked.append(fut)
        for step in self.steps.pop(index, ()):
            step()
        return fut

    def at(self, index: int, step: Callable[[], object]) -> None:
        """Run ``step`` once the ``index``-th call has been handed over (in
        the sender's thread, before its ``submit`` returns)."""
        self.steps.setdefault(index, []).append(step)

    def on_cancel(self, k: int, step: Callable[[], object]) -> None:
        """Run ``step`` when the send cancels the ``k``-th parked call."""
        self.cancelling.setdefault(k, []).append(step)

    def fail(self, k: int, err: BaseException) -> None:
        """The ``k``-th parked call raises ``err`` now."""
        self.end(k, err=err)

    def end(self, k: int, value: Any = None, err: BaseException | None = None) -> None:
        """The ``k``-th parked call returns ``value`` (or raises ``err``) now."""
        fut = self.parked[k]
        assert fut.set_running_or_notify_cancel(), f"parked call {k} was cancelled"
        if err is None:
            fut.set_result(value)
        else:
            fut.set_exception(err)


class ParkedFuture(Future[Any]):
    """A parked call's Future; ``cancelling``: steps run when the send cancels
    it, before its cancellation is recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelling: list[Callable[[], object]] = []

    def cancel(self) -> bool:
        if not self.done():  # parked: the steps come first, then its callbacks
            for step in self.cancelling:
                step()
        return super().cancel()


class Quiet(ParkedFuture):
    """A Future that never runs its done-callbacks: the sender sees it done
    before any callback could record its outcome (a callback may run late,
    on the thread that completed it)."""

    def add_done_callback(self, fn: Callable[[Future[Any]], object]) -> None:
        pass


def in_a_thread(step: Callable[[], object]) -> Callable[[], None]:
    """``step``, run in a new thread: it races the sender's next steps, for
    tests whose outcome is the same whichever comes first."""
    return lambda: threading.Thread(target=step).start()


@pytest.fixture
def parked() -> Iterator[Callable[..., Parked]]:
    made: list[Parked] = []

    def make(run: set[int], quiet: bool = False) -> Parked:
        made.append(Parked(run, quiet))
        return made[-1]

    yield make
    for p in made:
        p.shutdown()


@pytest.mark.timeout(30)
def test_handed_over_calls_cancelled_at_the_deadline_were_not_started(
    parked: Callable[..., Parked], clock: Clock
) -> None:
    """The parked calls never end: the send returns at its deadline (here,
    when its wait of ``timeout`` seconds ends, the clock passes it) and
    cancels them."""
    pool = parked({0})
    pool.on_cancel(0, clock.pass_deadlines)
    sig = Signal()
    sig.connect(a := Reply("a"))
    sig.connect(b := Reply("b"))
    sig.connect(c := Reply("c"))
    result = sig.using(pool, timeout=0.2).send_robust(Shop)
    assert [r for r, _ in result] == [a, b, c]
    assert result[0][1] == "a"
    for r, err in result[1:]:
        assert isinstance(err, TimeoutError)
        assert f"receiver {r!r} was not started within the 0.2 s timeout" in str(err)
    assert len(pool.parked) == 2
    assert all(f.cancelled() for f in pool.parked)


@pytest.mark.timeout(30)
def test_handed_over_calls_cancelled_after_a_failure_drop_out(
    parked: Callable[..., Parked],
) -> None:
    """The earliest call fails while later ones wait in the executor's queue:
    the send closes and cancels them; never begun, they are no part of the
    outcome (no note on the error, no time-out)."""
    pool = parked(set())
    pool.at(2, in_a_thread(lambda: pool.fail(0, Boom("first"))))
    sig, _held = connected(Reply("a"), Reply("b"), Reply("c"))
    with pytest.raises(Boom, match="first") as caught:
        sig.using(pool, timeout=20).send(Shop)
    assert getattr(caught.value, "__notes__", []) == []
    assert [f.cancelled() for f in pool.parked] == [False, True, True]


@pytest.mark.timeout(30)
def test_an_earlier_call_still_queued_at_the_deadline_wins_over_a_later_failure(
    parked: Callable[..., Parked], clock: Clock
) -> None:
    """Call 1 fails (closing the send, which cancels call 2); call 0, earlier,
    is still queued at the deadline and is cancelled then: it timed out
    without starting, and as the earliest slot its time-out is raised."""
    pool = parked(set())
    pool.at(2, lambda: pool.fail(1, Boom("second")))
    pool.on_cancel(0, clock.pass_deadlines)  # the deadline passes only then
    sig, receivers = connected(Reply("a"), Reply("b"), Reply("c"))
    with pytest.raises(TimeoutError, match="was not started") as caught:
        sig.using(pool, timeout=0.2).send(Shop)
    assert f"receiver {receivers[0]!r} was not started" in str(caught.value)
    notes = getattr(caught.value, "__notes__", [])
    assert len(notes) == 1 and "Boom: second" in notes[0]
    assert [f.cancelled() for f in pool.parked] == [True, False, True]


@pytest.mark.timeout(30)
def test_cancelling_a_submit_future_cancels_the_calls_handed_over(
    parked: Callable[..., Parked], caplog: pytest.LogCaptureFixture
) -> None:
    """``submit()`` through an out-of-process executor (no deadline): its
    Future is concsignals' own; cancelling it closes the send, which cancels
    every call still queued, and settles it quietly (its outcome has nowhere
    to go: nothing is logged)."""
    pool = parked(set())
    sig, _held = connected(Reply("a"), Reply("b"))
    fut = sig.using(pool).submit(Shop)
    assert not fut.done()
    assert len(pool.parked) == 2
    with caplog.at_level(logging.DEBUG):
        assert fut.cancel()
    assert all(f.cancelled() for f in pool.parked)
    assert caplog.records == []


@pytest.mark.timeout(30)
def test_a_submit_closed_while_handing_over_cancels_what_it_handed(
    parked: Callable[..., Parked],
) -> None:
    """A fatal error while ``submit()`` is still handing calls over closes the
    send before it could cancel anything; what was handed over is cancelled
    once the hand-off is done, and the Future gets the error."""
    pool = parked({1})
    sig, _held = connected(Reply("a"), Halt(), Reply("c"))
    fut = sig.using(pool).submit(Shop)
    assert isinstance(fut.exception(timeout=10), Stop)
    assert len(pool.parked) == 1  # "c" was never handed over
    assert pool.parked[0].cancelled()


@pytest.mark.timeout(30)
def test_a_robust_send_lets_the_calls_after_a_failure_run(
    parked: Callable[..., Parked],
) -> None:
    """``send_robust`` on a process pool: a failure cancels nothing.  Call 0
    fails while calls 1 and 2 are still queued (its outcome is recorded in
    the sender's thread, where a send that closed on it would cancel them at
    once); they end afterwards, and ``end`` refuses a cancelled call."""
    pool = parked(set())
    cancelled: list[int] = []
    pool.on_cancel(1, lambda: cancelled.append(1))
    pool.on_cancel(2, lambda: cancelled.append(2))
    pool.at(2, lambda: pool.fail(0, Boom("first")))
    pool.at(2, in_a_thread(lambda: (pool.end(1, "b"), pool.end(2, "c"))))
    sig, receivers = connected(Reply("a"), Reply("b"), Reply("c"))
    result = sig.using(pool).send_robust(Shop)
    assert [r for r, _ in result] == receivers
    assert isinstance(result[0][1], Boom)
    assert [v for _, v in result[1:]] == ["b", "c"]
    assert cancelled == []


@pytest.mark.timeout(30)
def test_the_sender_cancels_the_queue_on_a_failure_its_callback_did_not_record(
    parked: Callable[..., Parked],
) -> None:
    """The sender saw call 0 fail before any callback recorded it (the send is
    not closed yet): it closes the send and cancels the queued calls itself,
    rather than wait for them (here, forever: there is no deadline)."""
    pool = parked(set(), quiet=True)
    pool.at(2, in_a_thread(lambda: pool.fail(0, Boom("first"))))
    sig, _held = connected(Reply("a"), Reply("b"), Reply("c"))
    with pytest.raises(Boom, match="first") as caught:
        sig.using(pool).send(Shop)
    assert getattr(caught.value, "__notes__", []) == []
    assert [f.cancelled() for f in pool.parked] == [False, True, True]


@pytest.mark.timeout(30)
def test_only_the_calls_after_the_earliest_failure_are_cancelled(
    parked: Callable[..., Parked], clock: Clock
) -> None:
    """Call 2 fails while calls 0 and 1, earlier, still wait in the queue:
    only call 3 is cancelled then; 0 and 1 time out at the deadline (either
    could still have failed first)."""
    pool = parked(set())
    pool.at(3, lambda: pool.fail(2, Boom("third")))
    pool.on_cancel(0, clock.pass_deadlines)  # the deadline passes only then
    sig, receivers = connected(Reply("a"), Reply("b"), Reply("c"), Reply("d"))
    with pytest.raises(TimeoutError) as caught:
        sig.using(pool, timeout=0.2).send(Shop)
    assert f"receiver {receivers[0]!r} was not started" in str(caught.value)
    notes = getattr(caught.value, "__notes__", [])
    assert len(notes) == 2
    assert f"{receivers[1]!r} also failed" in notes[0] and "was not started" in notes[0]
    assert "Boom: third" in notes[1]
    assert [f.cancelled() for f in pool.parked] == [True, True, False, True]


# A receiver that dies while the send pickles: it is skipped, the rest go.
doomed: list[Reply] = []


class KillsWhenPickled:
    """A receiver whose pickling drops the only reference to the next one
    (``doomed``); in the worker it is ``Reply("first")``."""

    def __call__(self, signal: Any, sender: Any, **named: Any) -> str:
        return "first"

    def __reduce__(self) -> Any:
        doomed.clear()
        return (Reply, ("first",))


@pytest.mark.timeout(30)
def test_a_receiver_that_dies_while_the_send_pickles_is_skipped_and_the_rest_go(
    parked: Callable[..., Parked],
) -> None:
    pool = parked({0, 1, 2})
    doomed[:] = [Reply("doomed")]
    sig = Signal()
    sig.connect(first := KillsWhenPickled())
    sig.connect(doomed[0])  # weak
    sig.connect(after := Reply("after"))
    result = sig.using(pool).send_robust(Shop)
    assert result == [(first, "first"), (after, "after")]


class Carrying:
    """A monitor whose carrier goes with each call to the worker."""

    def carrier(self, call: Any) -> Carried:
        return Carried(f"call {call.index}")


@pytest.mark.timeout(30)
def test_the_monitors_carriers_go_with_each_call_handed_over(
    parked: Callable[..., Parked],
) -> None:
    from concsignals import monitoring

    pool = parked({0, 1})
    sig, _held = connected(Reply("a"), Reply("b"))
    monitor = Carrying()
    Carried.log.clear()
    monitoring.install(monitor)
    try:
        assert [v for _, v in sig.using(pool).send(Shop)] == ["a", "b"]
    finally:
        monitoring.uninstall(monitor)
    assert Carried.log == [
        ("enter", "call 0", None),
        ("exit", "call 0", None),
        ("enter", "call 1", None),
        ("exit", "call 1", None),
    ]
