"""Sends without a Send: ``_lean.py``.

Two kinds of sync send (no deadline, no monitor) take paths of their own, as
cheap as a ``submit``: every call ``wait=False`` to a target in this process
(``fire_only``), and a lone waited call on a loop or a Serial's own worker
(``wait_one``).  ``tests/test_delivery.py`` proves the rules of delivery on
every way of sending, and many of its sync sends take these paths.  Here:
what the paths do by themselves (a refused call, the mark a nested send
reads, an interruption, which sends take them), each test seen failing with
its line of ``_lean.py`` broken.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from concsignals import Serial, Signal, _lean, _threads, monitoring


def here(signal: Any, sender: Any, **named: Any) -> str:
    return threading.current_thread().name


@pytest.fixture
def no_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    """No time-based fallback (see ``_threads.worker_of``)."""
    monkeypatch.setattr(_threads, "PATIENCE", 1e9)


def spy_on(monkeypatch: pytest.MonkeyPatch, name: str) -> list[bool]:
    """Records, for each send offered to ``_lean.<name>``, whether it took it."""
    taken: list[bool] = []
    real = getattr(_lean, name)

    def spy(*args: Any) -> Any:
        try:
            out = real(*args)
        except BaseException:  # it took the send, which raised
            taken.append(True)
            raise
        taken.append(out is not None)
        return out

    monkeypatch.setattr(_lean, name, spy)
    return taken


@pytest.fixture
def lean_sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Records, for each send, whether it took the fire-and-forget path."""
    yield spy_on(monkeypatch, "fire_only")


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


# -- a lone waited call: wait_one -------------------------------------------------


class Stop(BaseException):
    """An interruption (Ctrl-C, say) in the sending thread."""


def boom(signal: Any, sender: Any, **named: Any) -> None:
    raise LookupError("boom")


def outcome(sig: Signal, how: str) -> Any:
    try:
        return [
            (r.__name__, v if not isinstance(v, Exception) else repr(v))
            for r, v in getattr(sig, how)(sender=None)
        ]
    except Exception as err:  # send: the receiver's failure propagates
        return ("raised", repr(err))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["send", "send_robust"])
@pytest.mark.parametrize("case", ["returns", "fails", "refused", "gone"])
@pytest.mark.parametrize("kind", ["loop", "serial"])
def test_a_lone_waited_call_has_the_general_paths_outcome(
    how: str,
    case: str,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same send, with and without ``wait_one``: the same slots, the
    same error raised, the same failure logged."""
    results = []
    for lean in (True, False):
        taken = spy_on(monkeypatch, "wait_one")
        if not lean:
            monkeypatch.setattr(_lean, "wait_one", lambda *a: None)
        loop = asyncio.new_event_loop()
        runner = threading.Thread(target=loop.run_forever)
        runner.start()
        target: Any = loop if kind == "loop" else Serial()
        sig = Signal()

        def gone(signal: Any, sender: Any, **named: Any) -> None:
            raise AssertionError("a receiver gone is called")

        receiver = {"returns": here, "fails": boom, "refused": here, "gone": gone}
        sig.connect(receiver[case], via=target, weak=case == "gone")
        if case == "refused":
            if kind == "loop":
                loop.call_soon_threadsafe(loop.stop)
                runner.join(10)
                loop.close()
            else:
                target.shutdown()
        if case == "gone":
            del gone
            receiver.clear()
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="concsignals"):
            got = outcome(sig, how)
        logged = [repr(rec.exc_info[1]) for rec in caplog.records if rec.exc_info]
        results.append((got, logged))
        if kind == "serial":
            target.shutdown()
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
            runner.join(10)
            loop.close()
        assert taken == ([True] if lean and case != "gone" else [])
        monkeypatch.undo()
    lean_out, general_out = results
    if case == "returns":  # the thread that ran it differs: its name's start
        assert [v.split("-")[0] for _, v in lean_out[0]] == [
            v.split("-")[0] for _, v in general_out[0]
        ]
    else:
        assert lean_out == general_out
    if case == "fails" and how == "send_robust":
        assert lean_out[1] == ["LookupError('boom')"]  # logged once


class InterruptedWait(Future[Any]):
    """A Future whose first wait is interrupted once ``ready`` is set."""

    ready = threading.Event()

    def exception(self, timeout: float | None = None) -> Any:
        if not getattr(self, "interrupted", False):
            self.interrupted = True
            assert self.ready.wait(10)
            raise Stop("interrupted")
        return super().exception(timeout)


@pytest.mark.timeout(30)
def test_an_interrupted_wait_waits_for_the_begun_call_then_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log: list[str] = []
    release = threading.Event()
    began = threading.Event()
    monkeypatch.setattr(InterruptedWait, "ready", began)
    monkeypatch.setattr(_lean, "Future", InterruptedWait)
    serial = Serial()

    def parked(signal: Any, sender: Any, **named: Any) -> None:
        began.set()
        release.wait(10)
        log.append("ended")

    def sending() -> None:
        try:
            sig.send(sender=None)
        except Stop:
            log.append("raised")

    sig = Signal()
    sig.connect(parked, via=serial)
    sender = threading.Thread(target=sending)
    sender.start()
    assert began.wait(10)
    sender.join(0.2)
    assert sender.is_alive()  # waits for the call it began
    release.set()
    sender.join(10)
    assert log == ["ended", "raised"]
    serial.shutdown()


@pytest.mark.timeout(30)
def test_an_interrupted_wait_withdraws_a_call_not_begun(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    called: list[str] = []
    serial = Serial()
    go = threading.Event()
    held = threading.Event()

    def hold() -> None:
        held.set()
        go.wait(10)

    serial.submit(hold)
    assert held.wait(10)
    ready = threading.Event()
    ready.set()
    monkeypatch.setattr(InterruptedWait, "ready", ready)
    monkeypatch.setattr(_lean, "Future", InterruptedWait)
    sig = Signal()
    sig.connect(lambda **kw: called.append("late"), via=serial, weak=False)
    with pytest.raises(Stop):
        sig.send(sender=None)
    go.set()
    serial.shutdown()  # every job it had ended
    assert called == []
