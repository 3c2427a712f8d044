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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from concsignals import Signal, _threads
from tests.receivers import Reply

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


# -- where a send on a thread pool runs its calls (_threads.worker_of) ----------


@pytest.mark.timeout(30)
def test_a_send_from_a_users_job_on_its_saturated_pool_finishes_on_its_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pool's only worker runs a job the user submitted, which sends
    through that pool: no worker will ever take the calls.  concsignals ran
    a job on that worker before, so it knows the sender is the pool's worker
    and runs the calls itself at once (the time fallback is switched off)."""
    monkeypatch.setattr(_threads, "PATIENCE", 600.0)
    one = ThreadPoolExecutor(1)
    sig = Signal()

    def where(**kw: Any) -> threading.Thread:
        return threading.current_thread()

    sig.connect(where)
    [(_, worker)] = sig.using(one).send(None)  # a job of concsignals ran there

    def users_job() -> Any:
        # The deadline only ends a send that never finishes (the test fails
        # then, by its own limit), so that the stuck worker lets the process exit.
        return sig.using(one, timeout=25).send(None)

    try:
        assert one.submit(users_job).result(timeout=20) == [(where, worker)]
    finally:
        one.shutdown(wait=False)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["send", "submit"])
def test_an_ordinary_send_on_a_busy_pool_never_runs_its_calls_on_its_thread(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The main thread, and ``submit()``'s thread of concsignals' own pool,
    are no worker of a user's pool: they only wait, however long the pool
    takes (the time fallback is made instant, so a sender that could steal
    would).  Here the pool's only worker stays busy past the deadline: no
    call begins at all, and none runs on the sender's thread."""
    assert threading.current_thread() is threading.main_thread()
    monkeypatch.setattr(_threads, "PATIENCE", 0.0)
    one = ThreadPoolExecutor(1)
    go = threading.Event()
    one.submit(go.wait, 30)  # the only worker is busy
    ran: list[threading.Thread] = []

    def where(**kw: Any) -> None:
        ran.append(threading.current_thread())

    sig = Signal()
    sig.connect(where)
    view = sig.using(one, timeout=0.5)
    try:
        if how == "send":
            result = view.send_robust(None)
        else:
            result = view.submit(None).result(timeout=20)
    finally:
        go.set()
        one.shutdown()
    assert ran == []
    [(r, err)] = result
    assert r is where
    assert "was not started" in str(err)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("timeout", [None, 20.0])
def test_an_interrupt_just_after_the_last_call_settled_does_not_hang_the_send(
    monkeypatch: pytest.MonkeyPatch, timeout: float | None
) -> None:
    """The sender saw every call settle (its wait took the done lock) and a
    ``KeyboardInterrupt`` arrives right then: the send raises it at once; it
    must not wait for the done lock a second time (until the deadline, or
    for ever)."""
    real_wait = _threads.wait

    def interrupted(*args: Any) -> None:
        real_wait(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(_threads, "wait", interrupted)
    sig = Signal()
    sig.connect(r := Reply("r"))
    pool = ThreadPoolExecutor(1)
    outcome: list[str] = []

    def sender() -> None:
        try:
            sig.using(pool, timeout=timeout).send(None)
        except KeyboardInterrupt:
            outcome.append("interrupted")

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    t.join(10)  # a hang detector: the send returns at once, or never
    pool.shutdown(wait=False)
    assert outcome == ["interrupted"]
    del r
