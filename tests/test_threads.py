"""Senders racing writers, with thread switches forced every microsecond.

Every send is checked against the intervals in which each connection existed:
a receiver connected for the whole send is in its result, one disconnected for
the whole send is not, nobody appears twice, and connection order is kept.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from concsignals import Signal

now = time.perf_counter_ns


pytestmark = pytest.mark.usefixtures("switch_often")


@dataclass
class Connection:
    """One connect..disconnect lifetime of one receiver object."""

    token: tuple[int, int]
    receiver: Callable[..., Any]
    sender: object = None
    connect_started: int = 0
    connect_returned: int = 0
    disconnect_started: int | None = None
    disconnect_returned: int | None = None


@dataclass
class SendRecord:
    started: int
    returned: int
    tokens: list[tuple[int, int]]


@dataclass
class Race:
    sig: Signal
    sender: object
    connections: dict[tuple[int, int], Connection] = field(default_factory=dict)
    sends: list[SendRecord] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def make_receiver(token: tuple[int, int]) -> Callable[..., Any]:
    def r(sender: object, **kwargs: Any) -> tuple[int, int]:
        return token

    return r


def writer(race: Race, writer_id: int, sender: object) -> None:
    for n in range(10**9):
        if race.stop.is_set():
            return
        token = (writer_id, n)
        conn = Connection(token, make_receiver(token), sender)
        race.connections[token] = conn
        conn.connect_started = now()
        race.sig.connect(conn.receiver, sender=sender)
        conn.connect_returned = now()
        time.sleep(0)
        conn.disconnect_started = now()
        assert race.sig.disconnect(conn.receiver, sender=sender)
        conn.disconnect_returned = now()


def sender_loop(race: Race, robust: bool) -> None:
    send = race.sig.send_robust if robust else race.sig.send
    while not race.stop.is_set():
        started = now()
        result = send(sender=race.sender)
        returned = now()
        race.sends.append(SendRecord(started, returned, [t for _, t in result]))


def check(race: Race) -> int:
    """Check every recorded send; return how many were checked."""
    # Each writer holds one connection at a time, in sequence: per writer, the
    # only connection that can span a send is the last to connect before it.
    by_writer: dict[int, list[Connection]] = {}
    for conn in sorted(race.connections.values(), key=lambda c: c.connect_returned):
        by_writer.setdefault(conn.token[0], []).append(conn)
    returned_at = {w: [c.connect_returned for c in cs] for w, cs in by_writer.items()}
    for record in race.sends:
        tokens = record.tokens
        assert len(tokens) == len(set(tokens)), f"duplicate receiver in {tokens}"
        for token in tokens:
            conn = race.connections[token]
            assert conn.sender is None or conn.sender is race.sender, token
            gone = conn.connect_started > record.returned or (
                conn.disconnect_returned is not None
                and conn.disconnect_returned < record.started
            )
            assert not gone, f"{token} was called though disconnected throughout"
        present = set(tokens)
        for writer_id, conns in by_writer.items():
            i = bisect.bisect_left(returned_at[writer_id], record.started) - 1
            if i < 0:
                continue
            conn = conns[i]
            if conn.sender is not None and conn.sender is not race.sender:
                continue
            if conn.disconnect_started is None or (
                conn.disconnect_started > record.returned
            ):
                assert conn.token in present, f"{conn.token} missing from a send"
        # Connection order: one connect that returned before another began
        # must come first in every result that holds both.
        for earlier, later in itertools.pairwise(tokens):
            a, b = race.connections[earlier], race.connections[later]
            assert not b.connect_returned < a.connect_started, (
                f"{earlier} called before {later}, connected after it"
            )
    return len(race.sends)


def run_race(race: Race, writers: list[object], senders: int, seconds: float) -> None:
    threads = [
        threading.Thread(target=guard(race, writer), args=(race, i, s))
        for i, s in enumerate(writers)
    ]
    threads += [
        threading.Thread(target=guard(race, sender_loop), args=(race, i % 2 == 1))
        for i in range(senders)
    ]
    for t in threads:
        t.start()
    race.stop.wait(seconds)
    race.stop.set()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "deadlock: a thread is stuck"
    assert race.errors == []


def guard(race: Race, fn: Callable[..., None]) -> Callable[..., None]:
    def run(*args: Any) -> None:
        try:
            fn(*args)
        except BaseException as err:
            race.errors.append(err)
            race.stop.set()

    return run


class Model:
    pass


@pytest.mark.timeout(60)
def test_senders_racing_writers_see_whole_connections_in_order():
    race = Race(Signal(), sender=Model)
    stable = [make_receiver((-1, i)) for i in range(3)]
    for i, r in enumerate(stable):
        sender = Model if i == 1 else None
        race.connections[(-1, i)] = Connection((-1, i), r, sender, 0, 0)
        race.sig.connect(r, sender=sender)
    # Writers churn receivers for any sender, for Model, and for another sender.
    run_race(race, writers=[None, Model, None, object()], senders=3, seconds=2.0)
    checked = check(race)
    assert checked > 100
    for record in race.sends:
        assert [t for t in record.tokens if t[0] == -1] == [(-1, 0), (-1, 1), (-1, 2)]


@pytest.mark.timeout(60)
def test_disconnect_in_another_thread_wins_before_the_call():
    """Once disconnect() has returned, no send, even one under way, calls it."""
    sig = Signal()
    gate = threading.Event()
    release = threading.Event()
    called: list[str] = []

    def first(sender: object, **kwargs: Any) -> None:
        gate.set()
        release.wait(10)

    def second(sender: object, **kwargs: Any) -> None:
        called.append("second")

    sig.connect(first)
    sig.connect(second)
    t = threading.Thread(target=sig.send, kwargs={"sender": None})
    t.start()
    assert gate.wait(10)
    assert sig.disconnect(second)  # the send already holds its snapshot
    release.set()
    t.join(10)
    assert called == []


@pytest.mark.timeout(60)
def test_many_threads_connecting_at_once_lose_no_connection():
    sig = Signal()
    receivers = [[make_receiver((w, i)) for i in range(200)] for w in range(4)]

    def connect_all(rs: list[Callable[..., Any]]) -> None:
        for r in rs:
            sig.connect(r)

    threads = [threading.Thread(target=connect_all, args=(rs,)) for rs in receivers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    tokens = [t for _, t in sig.send(sender=None)]
    assert sorted(tokens) == sorted((w, i) for w in range(4) for i in range(200))
    for w in range(4):  # each thread's own connections stay in its order
        mine = [t for t in tokens if t[0] == w]
        assert mine == sorted(mine)
