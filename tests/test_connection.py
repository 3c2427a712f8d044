"""``Connection``: the handle ``connect()`` returns (issue 23).

What it disconnects (this connection, not one made since), what it reports
(connected, the receiver, calls under way), and ``blocked()``: no call of the
connection begins while it is held, in any thread, and it stays connected.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Any

import pytest

from concsignals import Connection, Serial, Signal
from concsignals import django as cdjango
from tests.test_quiesce import Parked, in_thread

pytestmark = pytest.mark.timeout(30)


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, **named: Any) -> str:
        self.calls += 1
        return "called"


def test_connect_returns_the_connection() -> None:
    sig = Signal()
    r = Counting()
    conn = sig.connect(r)
    assert isinstance(conn, Connection)
    assert conn.signal is sig and conn.receiver is r and conn.connected
    assert conn.in_flight == 0
    assert "connected" in repr(conn)
    assert isinstance(cdjango.Signal().connect(r), Connection)


def test_connecting_again_hands_back_the_same_connection() -> None:
    sig = Signal()
    r = Counting()
    first, again = sig.connect(r), sig.connect(r)
    assert again.disconnect()
    assert not first.connected and not again.connected
    assert sig.receivers == []


def test_a_handle_disconnects_its_own_connection_only() -> None:
    sig = Signal()
    r = Counting()
    old = sig.connect(r)
    assert sig.disconnect(r)
    new = sig.connect(r)  # the same receiver again: a new connection
    assert not old.disconnect()
    assert new.connected and sig.receivers == [r]
    assert new.disconnect()
    assert not new.connected and new.receiver is None


def test_a_dead_receiver_is_disconnected_under_its_handle() -> None:
    sig = Signal()
    r = Counting()
    conn = sig.connect(r)
    del r
    gc.collect()
    assert not conn.connected and conn.receiver is None


def test_disconnect_with_wait_through_the_handle() -> None:
    log: list[str] = []
    parked = Parked(log)
    sig = Signal()
    conn = sig.connect(parked)
    in_thread(lambda: sig.send(sender=None))
    assert parked.began.wait(10)
    assert conn.in_flight == 1
    t, out = in_thread(lambda: conn.disconnect(wait=True))
    t.join(0.3)
    assert t.is_alive()
    log.append("let go")
    parked.go.set()
    t.join(10)
    assert out == [True] and log == ["let go", "call ended"]
    assert conn.in_flight == 0


def test_after_a_wait_timed_out_the_handle_waits_again() -> None:
    log: list[str] = []
    parked = Parked(log)
    sig = Signal()
    conn = sig.connect(parked)
    in_thread(lambda: sig.send(sender=None))
    assert parked.began.wait(10)
    with pytest.raises(TimeoutError):
        conn.disconnect(wait=True, timeout=0.05)
    assert not sig.disconnect(parked)  # by receiver: nothing left to find
    t, out = in_thread(lambda: conn.disconnect(wait=True))
    t.join(0.3)
    assert t.is_alive()  # the second wait waits, though nothing was connected
    log.append("let go")
    parked.go.set()
    t.join(10)
    assert out == [False] and log == ["let go", "call ended"]

    async def again() -> bool:
        return await conn.adisconnect(timeout=10)

    assert asyncio.run(again()) is False


def test_adisconnect_through_the_handle() -> None:
    log: list[str] = []
    parked = Parked(log)
    sig = Signal()
    conn = sig.connect(parked)
    in_thread(lambda: sig.send(sender=None))
    assert parked.began.wait(10)

    async def main() -> bool:
        waiting = asyncio.ensure_future(conn.adisconnect(timeout=10))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        parked.go.set()
        return await waiting

    assert asyncio.run(main()) is True
    assert log == ["call ended"]


def test_in_flight_counts_the_calls_under_way_on_a_pool() -> None:
    log: list[str] = []
    parked = Parked(log)
    pool = ThreadPoolExecutor(2)
    sig = Signal()
    conn = sig.connect(parked, via=pool, wait=False)
    sig.send(sender=None)
    sig.send(sender=None)
    while conn.in_flight < 2:  # the second call begins on its own
        assert parked.began.wait(10)
        threading.Event().wait(0.001)
    parked.finish()
    pool.shutdown(wait=True)
    assert conn.in_flight == 0


# -- blocked() ------------------------------------------------------------------------


def test_no_call_begins_while_blocked_in_any_thread() -> None:
    sig = Signal()
    r, other = Counting(), Counting()
    conn = sig.connect(r)
    sig.connect(other)
    with conn.blocked():
        assert [v for _, v in sig.send(sender=None)] == ["called"]  # other only
        t, out = in_thread(lambda: sig.send_robust(sender=None))
        t.join(10)
        assert len(out[0]) == 1
        assert sig.receivers == [r, other]  # still connected
        assert conn.connected
    assert r.calls == 0 and other.calls == 2
    sig.send(sender=None)
    assert r.calls == 1


def test_a_call_queued_while_blocked_is_skipped_where_it_begins() -> None:
    serial = Serial()
    held, go = threading.Event(), threading.Event()
    serial.submit(lambda: (held.set(), go.wait(10)))
    assert held.wait(10)
    sig = Signal()
    r = Counting()
    conn = sig.connect(r, via=serial, wait=False)
    [(_, fut)] = sig.send(sender=None)  # queued behind the held job
    with conn.blocked():
        go.set()
        with pytest.raises(CancelledError):
            fut.result(10)
    assert fut.cancelled() and r.calls == 0
    serial.shutdown()


def test_blocks_nest_and_overlap_from_two_threads() -> None:
    sig = Signal()
    r = Counting()
    conn = sig.connect(r)
    entered, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with conn.blocked():
            entered.set()
            assert leave.wait(10)

    t = threading.Thread(target=hold)
    with conn.blocked():
        t.start()
        assert entered.wait(10)
        with conn.blocked():
            pass
        sig.send(sender=None)
    sig.send(sender=None)  # the other thread still holds it
    leave.set()
    t.join(10)
    assert r.calls == 0
    sig.send(sender=None)
    assert r.calls == 1


def test_a_blocked_connection_stays_through_other_writes() -> None:
    """Writers read through the block: a connect and a disconnect of others
    (which compact the signal) keep it."""
    sig = Signal()
    r, a = Counting(), Counting()
    conn = sig.connect(r)
    with conn.blocked():
        sig.connect(a)
        sig.disconnect(a)
        sig.connect(Counting(), weak=False)
    assert conn.connected
    sig.send(sender=None)
    assert r.calls == 1


def test_a_disconnect_while_blocked_wins() -> None:
    sig = Signal()
    r = Counting()
    conn = sig.connect(r)
    with conn.blocked():
        assert sig.disconnect(r)
    assert not conn.connected
    sig.send(sender=None)
    assert r.calls == 0
