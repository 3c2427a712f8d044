"""Lifetimes under churn: memory stays flat, the garbage collector never deadlocks."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from concsignals import Signal


class Listener:
    def on_event(self, sender: object, **kwargs: Any) -> int:
        return 1


class Sender:
    pass


# Each measurement runs in a fresh interpreter: no thread another test left
# behind allocates while it counts.  sys.getallocatedblocks() counts every
# live block of the allocator and costs nothing per allocation.
MEASURE = """
import gc, sys
{setup}
def step():
{step}
for _ in range(1000):
    step()
gc.collect()
before = sys.getallocatedblocks()
for _ in range({cycles}):
    step()
gc.collect()
print(sys.getallocatedblocks() - before)
"""

PRELUDE = """
from concsignals import Signal
class Listener:
    def on_event(self, sender, **kwargs):
        return 1
class Sender:
    pass
"""


def blocks_grown(setup: str, step: str, cycles: int) -> int:
    """Allocator blocks still in use after ``cycles`` more runs of ``step``."""
    code = MEASURE.format(
        setup=PRELUDE + textwrap.dedent(setup),
        step=textwrap.indent(textwrap.dedent(step), "    "),
        cycles=cycles,
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=100
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


# django.dispatch 5.2 leaves several blocks per cycle here (one
# weakref.finalize per connect, alive as long as the listener): ~500,000
# blocks after 100,000 cycles.  A flat dispatcher stays within noise.
FLAT = 2_000


@pytest.mark.timeout(100)
def test_connect_disconnect_churn_of_one_bound_method_leaves_memory_flat():
    grown = blocks_grown(
        "sig = Signal(); listener = Listener()",
        """
        sig.connect(listener.on_event)
        sig.disconnect(listener.on_event)
        """,
        100_000,
    )
    assert grown < FLAT, f"{grown} more blocks after 100,000 cycles"


@pytest.mark.timeout(100)
def test_short_lived_senders_with_their_own_connections_leave_memory_flat():
    grown = blocks_grown(
        "sig = Signal(); listener = Listener()",
        """
        s = Sender()
        sig.connect(listener.on_event, sender=s)
        sig.send(sender=s)
        """,
        50_000,
    )
    assert grown < FLAT, f"{grown} more blocks after 50,000 senders"


@pytest.mark.timeout(100)
def test_short_lived_receivers_leave_memory_flat():
    grown = blocks_grown(
        "sig = Signal()",
        """
        listener = Listener()
        sig.connect(listener.on_event)
        sig.send(sender=None)
        """,
        50_000,
    )
    assert grown < FLAT, f"{grown} more blocks after 50,000 receivers"


def test_writes_compact_what_died_so_dead_senders_do_not_accumulate():
    """Compaction is amortised over writes: garbage never passes half of
    what is stored (plus a small constant)."""
    bound = 2 * 10 + 16  # twice what lives, plus compaction's minimum
    sig = Signal()
    listener = Listener()
    senders = [Sender() for _ in range(10)]
    for s in senders:
        sig.connect(listener.on_event, sender=s)
    for _ in range(1000):
        sig.connect(listener.on_event, sender=Sender())  # dies at once
        st = sig._snapshot.state
        assert len(st.routes) <= bound
        assert st.size <= bound
    sig.connect(listener.on_event)
    assert all(sig.has_listeners(s) for s in senders)


@pytest.mark.parametrize("sent", [False, True])
def test_a_strong_receiver_whose_sender_died_goes_without_the_collector(
    sent: bool,
) -> None:
    """A ``weak=False`` receiver lives while its sender does; once the death
    is compacted away, reference counting frees it: the signal leaves no
    cycle behind (a route's cached tuple once held its own entry, which held
    the receiver, until the cyclic collector ran)."""

    class Owner:
        def __call__(self, sender: object, **kwargs: Any) -> str:
            return "owner"

    sig = Signal()
    sender, owner = Sender(), Owner()
    gone = weakref.ref(owner)
    gc.collect()
    gc.disable()
    try:
        sig.connect(owner, sender=sender, weak=False)
        if sent:
            assert sig.send(sender=sender) == [(owner, "owner")]  # fills a cache
        sig.connect(Listener().on_event, sender=sender, weak=False)
        assert len(sig.send(sender=sender)) == 2
        del owner, sender  # the sender dies; only the signal held the owner
        assert sig.receivers == []  # compacts the reported death
        assert gone() is None, "the receiver waits for the cyclic collector"
    finally:
        gc.enable()


class Cyclic:
    """A weak receiver that only the cyclic garbage collector can free."""

    def __init__(self) -> None:
        self.me = self

    def on_event(self, sender: object, **kwargs: Any) -> str:
        return "cyclic"


@pytest.mark.timeout(60)
def test_gc_storm_neither_deadlocks_nor_raises(switch_often):
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
