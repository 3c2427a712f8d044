"""Fire and forget without a Send: ``_deliver.fire_only``.

A sync send (no deadline, no monitor) whose every call is ``wait=False`` to a
target in this process takes a path of its own, as cheap as a ``submit``.
``tests/test_delivery.py`` proves the rules of fire and forget on every way
of sending; most of its sync sends take this path.  Here: what this path does
by itself (a refused call, the mark a nested send reads, when it is taken),
each test seen failing with its line of ``_deliver.py`` broken.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from concsignals import Serial, Signal, _deliver, _threads, monitoring


def here(signal: Any, sender: Any, **named: Any) -> str:
    return threading.current_thread().name


@pytest.fixture
def no_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    """No time-based fallback (see ``_threads.worker_of``)."""
    monkeypatch.setattr(_threads, "PATIENCE", 1e9)


@pytest.fixture
def lean_sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Records, for each send, whether it took the fire-and-forget path."""
    taken: list[bool] = []
    real = _deliver.fire_only

    def spy(*args: Any) -> Any:
        out = real(*args)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(_deliver, "fire_only", spy)
    yield taken


def refusing_targets() -> dict[str, Any]:
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    serial = Serial()
    serial.shutdown()
    loop = asyncio.new_event_loop()
    return {"pool": pool, "serial": serial, "loop": loop}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("how", ["send", "send_robust"])
@pytest.mark.parametrize("kind", ["pool", "serial", "loop"])
def test_a_call_its_target_refuses_is_logged_and_in_its_future(
    how: str, kind: str, caplog: pytest.LogCaptureFixture, lean_sends: list[bool]
) -> None:
    """A shut-down pool or Serial, a loop closed since the connect: the send
    returns, the slot's Future carries the target's error, and the error is
    logged as ``send_robust`` logs it."""
    targets = refusing_targets()
    target = targets[kind]
    sig = Signal()
    sig.connect(here, via=target, wait=False)
    targets["loop"].close()  # accepted open at connect, closed by the send
    with caplog.at_level(logging.ERROR, logger="concsignals"):
        [(receiver, fut)] = getattr(sig, how)(sender=None)
    assert receiver is here
    err = fut.exception(0)
    assert isinstance(err, RuntimeError), err
    assert any(rec.exc_info and rec.exc_info[1] is err for rec in caplog.records)
    assert lean_sends == [True]


@pytest.mark.timeout(20)
def test_a_call_made_by_a_pools_only_worker_marks_that_pool(no_patience: None) -> None:
    """The job runs marked as on its pool (``executors.on_pools``): a send it
    makes to that pool, and waits for, runs the call in its own thread
    instead of queueing it behind itself (without the mark: a hang)."""
    with ThreadPoolExecutor(1, thread_name_prefix="only") as one:
        inner = Signal()
        inner.connect(here, via=one)

        def outer(sender: Any, **kw: Any) -> Any:
            return inner.send(sender=None)

        sig = Signal()
        sig.connect(outer, via=one, wait=False)
        [(_, fut)] = sig.send(sender=None)
        [(_, thread)] = fut.result(15)
    assert thread.startswith("only")


def test_a_send_the_path_cannot_make_takes_the_general_one(
    lean_sends: list[bool],
) -> None:
    """Only sends of nothing but fire-and-forget sync calls in one phase,
    without a monitor, take the path; each other send gives it up at once."""
    pool = ThreadPoolExecutor(2)

    async def coro(signal: Any, sender: Any, **named: Any) -> str:
        return "async"

    def waited(signal: Any, sender: Any, **named: Any) -> str:
        return "waited"

    ok = Signal()
    ok.connect(here, via=pool, wait=False)
    ok.connect(here, wait=False, phase=0, dispatch_uid="owned pool")
    mixed = Signal()
    mixed.connect(here, via=pool, wait=False)
    mixed.connect(waited, via=pool)
    phased = Signal()
    phased.connect(here, via=pool, wait=False)
    phased.connect(here, via=pool, wait=False, phase=1, dispatch_uid="later")
    asynchronous = Signal()
    asynchronous.connect(coro, via=pool, wait=False)
    for sig in (ok, mixed, phased, asynchronous):
        for _, out in sig.send(sender=None):
            if isinstance(out, Future):
                out.result(10)
    assert lean_sends == [True, False, False, False]

    class Watch:
        def call_ended(self, call: Any) -> None:
            pass

    watch = Watch()
    monitoring.install(watch)
    try:
        for _, fut in ok.send(sender=None):
            fut.result(10)
    finally:
        monitoring.uninstall(watch)
    assert lean_sends == [True, False, False, False]  # monitored: not offered
    pool.shutdown()


@pytest.mark.timeout(20)
def test_a_bounded_serial_makes_a_lean_send_wait_for_room() -> None:
    """Without a deadline a fire-and-forget send to a full bounded Serial
    waits for room, and nothing is dropped."""
    bounded = Serial(maxsize=1)
    release = threading.Event()
    began = threading.Event()
    sig = Signal()

    def parked(signal: Any, sender: Any, **named: Any) -> str:
        began.set()
        release.wait(10)
        return "parked"

    sig.connect(parked, via=bounded, wait=False)
    [(_, first)] = sig.send(sender=None)  # runs, parked
    assert began.wait(10)
    [(_, second)] = sig.send(sender=None)  # queued: the queue is full
    sent: list[Any] = []
    third_sent = threading.Thread(target=lambda: sent.append(sig.send(sender=None)))
    third_sent.start()
    third_sent.join(0.2)
    assert third_sent.is_alive() and not sent  # waits for room
    release.set()
    third_sent.join(10)
    [(_, third)] = sent[0]
    assert [f.result(10) for f in (first, second, third)] == ["parked"] * 3
    bounded.shutdown()
