"""Lifetimes under churn: memory stays flat, the garbage collector never deadlocks."""

from __future__ import annotations

import gc
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from concsignals import Signal


class Listener:
    def on_event(self, sender: object, **kwargs: Any) -> int:
        return 1


class Sender:
    pass


def growth_after(cycles: int, step: Callable[[], None]) -> int:
    """Bytes still allocated after ``cycles`` more calls of ``step``, past warm-up."""
    for _ in range(1000):
        step()
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(cycles):
            step()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before


@pytest.mark.timeout(120)
def test_connect_disconnect_churn_of_one_bound_method_leaves_memory_flat():
    sig = Signal()
    listener = Listener()

    def cycle() -> None:
        sig.connect(listener.on_event)
        sig.disconnect(listener.on_event)

    grown = growth_after(100_000, cycle)
    # django.dispatch 5.2 grows by tens of MB here: one weakref.finalize per
    # connect, alive as long as the listener.
    assert grown < 64 * 1024, f"grew by {grown} bytes"


@pytest.mark.timeout(120)
def test_short_lived_senders_with_their_own_connections_leave_memory_flat():
    sig = Signal()
    listener = Listener()

    def cycle() -> None:
        s = Sender()
        sig.connect(listener.on_event, sender=s)
        sig.send(sender=s)

    grown = growth_after(50_000, cycle)
    assert grown < 64 * 1024, f"grew by {grown} bytes"
    sig.connect(listener.on_event)  # a write prunes what died since
    assert len(sig._snapshot.entries) == 1
    assert sig._snapshot.routes == {}


@pytest.mark.timeout(120)
def test_short_lived_receivers_leave_memory_flat():
    sig = Signal()

    def cycle() -> None:
        listener = Listener()
        sig.connect(listener.on_event)
        sig.send(sender=None)

    grown = growth_after(50_000, cycle)
    assert grown < 64 * 1024, f"grew by {grown} bytes"


@pytest.fixture
def fast_switching() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


class Cyclic:
    """A weak receiver that only the cyclic garbage collector can free."""

    def __init__(self) -> None:
        self.me = self

    def on_event(self, sender: object, **kwargs: Any) -> str:
        return "cyclic"


@pytest.mark.timeout(60)
def test_gc_storm_neither_deadlocks_nor_raises(fast_switching):
    """Cyclic weak receivers die inside gc.collect() on every thread while
    other threads connect, disconnect and send."""
    sig = Signal()
    stable = Listener()
    sig.connect(stable.on_event, weak=False)
    errors: list[BaseException] = []
    stop = threading.Event()

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                while not stop.is_set():
                    work()
            except BaseException as err:  # report everything, even KeyboardInterrupt
                errors.append(err)
                stop.set()

        return run

    def make_garbage() -> None:
        for _ in range(20):
            sig.connect(Cyclic().on_event)
        gc.collect()

    def churn() -> None:
        listener = Listener()
        sig.connect(listener.on_event)
        sig.connect(listener.on_event, sender=Sender)
        sig.disconnect(listener.on_event)

    def send() -> None:
        results = sig.send(sender=Sender)
        assert results[0][1] == 1, results
        assert all(resp in (1, "cyclic") for _, resp in sig.send_robust(Sender))

    threads = [
        threading.Thread(target=guarded(w))
        for w in (make_garbage, make_garbage, churn, churn, send, send, send)
    ]
    for t in threads:
        t.start()
    stop.wait(3.0)
    stop.set()
    for t in threads:
        t.join(10.0)
    assert not any(t.is_alive() for t in threads), "a thread is stuck: deadlock"
    assert errors == []
    gc.collect()
    sig.connect(stable.on_event)  # a write prunes the dead
    assert sig.receivers == [stable.on_event]
