"""``concsignals.testing``: capture, wait_for/await_for, connected, mute_signals.

Each promise of docs/testing.md has a test here; the one the issue names
(two threads capturing and muting at once without seeing each other) is
``test_two_threads_capture_and_mute_at_once_without_seeing_each_other``.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from concsignals import Signal, monitoring
from concsignals.testing import (
    ANY,
    Sent,
    await_for,
    capture,
    connected,
    mute_signals,
    wait_for,
)
from tests.backends import Backend
from tests.receivers import echo

pytestmark = pytest.mark.timeout(60)

#: For tests that watch the whole process (pytest-run-parallel runs them in
#: one thread: each copy would see the other copies' sends, or monitors).
process_wide = pytest.mark.thread_unsafe(
    reason="it watches the whole process (wait_for, scope='process', the "
    "monitors installed): each copy would see the others"
)


def ok(sender: Any, **kw: Any) -> str:
    return "ok"


def recording(calls: list[Any]) -> Any:
    def receiver(sender: Any, **kw: Any) -> Any:
        calls.append((sender, kw.get("n")))
        return kw.get("n")

    return receiver


# -- capture ---------------------------------------------------------------------


def test_capture_records_signal_sender_arguments_thread_and_results() -> None:
    sig = Signal()
    sig.connect(ok)
    with capture(sig) as sent:
        sig.send("s", n=1, extra="x")
    (one,) = sent.sent
    assert one.signal is sig and one.sender == "s"
    assert one.named == {"n": 1, "extra": "x"}
    assert one.thread is threading.current_thread()
    assert one.ended.is_set() and one.results == ((ok, "ok"),) and one.error is None
    assert sent.assert_sent(sig, sender="s", n=1) is one
    assert sent.assert_sent_once(sig, n=ANY) is one
    sent.assert_not_sent(sig, n=2)


def test_a_failing_send_is_recorded_with_its_error_and_results() -> None:
    sig = Signal()

    def boom(sender: Any, **kw: Any) -> None:
        raise KeyError("boom")

    sig.connect(boom)
    with capture() as sent:
        with pytest.raises(KeyError):
            sig.send(None)
        sig.send_robust(None)
    first, second = sent.sent
    assert isinstance(first.error, KeyError)
    assert second.error is None
    assert second.results[0][0] is boom and isinstance(second.results[0][1], KeyError)


def test_a_send_with_nobody_to_call_is_recorded() -> None:
    """Nothing connected, or every receiver muted: the code still sent."""
    sig = Signal()
    with capture(sig) as sent:
        sig.send("a")
        sig.send_robust("b")
        asyncio.run(sig.asend("c"))
        sig.submit("d").result()
        sig.using(None, timeout=5).send("e")
        sig.connect(ok)
        with sig.muted():
            sig.send("f")
    assert [s.sender for s in sent] == ["a", "b", "c", "d", "e", "f"]
    assert all(s.results == () for s in sent)


@pytest.fixture
def executor(backend: Backend, request: pytest.FixtureRequest) -> Any:
    """The backend's executor, made in setup (not in several threads)."""
    return backend.make(request, 2)


def test_capture_sees_every_send_path_on_every_backend(
    backend: Backend, executor: Any
) -> None:
    sig = Signal()
    sig.connect(echo)
    with capture(sig) as sent:
        backend.send(sig, executor, None, "plain", {"n": 1})
        backend.send_robust(sig, executor, None, "robust", {"n": 2})
    assert [s.sender for s in sent] == ["plain", "robust"]
    assert [s.named for s in sent] == [{"n": 1}, {"n": 2}]
    assert all(len(s.results) == 1 for s in sent)


def test_capture_sees_asend_submit_and_views_on_threads() -> None:
    sig = Signal()
    sig.connect(ok)
    with ThreadPoolExecutor(2) as pool, capture(sig) as sent:
        asyncio.run(sig.asend("asend", n=1))
        asyncio.run(sig.asend_robust("asend_robust"))
        sig.submit("submit").result()
        sig.using(pool).submit("view submit").result()
        sig.using(pool).send("view send")
        asyncio.run(sig.using(pool).asend("view asend"))
    senders = [s.sender for s in sent]
    assert senders == [
        "asend",
        "asend_robust",
        "submit",
        "view submit",
        "view send",
        "view asend",
    ]
    assert all(s.results == ((ok, "ok"),) for s in sent)


def test_capture_sees_concsignals_django_signals() -> None:
    pytest.importorskip("django", reason="needs Django: the test extra")
    from concsignals.django import Signal as DjangoSignal

    sig = DjangoSignal()
    sig.connect(ok)
    with capture(sig) as sent:
        sig.send("a", n=1)
        sig.send_robust("b")
        asyncio.run(sig.asend("c"))
    assert [s.sender for s in sent] == ["a", "b", "c"]
    assert sent.assert_sent_once(sig, sender="a", n=1).results == ((ok, "ok"),)


def test_capture_sees_a_django_send_with_nobody_to_call() -> None:
    pytest.importorskip("django", reason="needs Django: the test extra")
    from concsignals.django import Signal as DjangoSignal

    sig = DjangoSignal()
    with capture(sig) as sent:
        sig.send("a")
        sig.send_robust("b")
        asyncio.run(sig.asend("c"))
        asyncio.run(sig.asend_robust("d"))
        sig.connect(ok)
        with sig.muted():
            sig.send("muted")
    assert [s.sender for s in sent] == ["a", "b", "c", "d", "muted"]


def test_capture_filters_by_signal_and_sender() -> None:
    a, b = Signal(), Signal()
    with capture(a, sender="x") as sent:
        a.send("x")
        a.send("y")
        b.send("x")
    assert [(s.signal, s.sender) for s in sent] == [(a, "x")]


def test_failure_messages_list_what_was_sent_instead() -> None:
    sig, other = Signal(), Signal()
    with capture() as sent:
        sig.send("s", n=1)
        sig.send("s", n=2)
        other.send("t")
    with pytest.raises(AssertionError) as err:
        sent.assert_sent(sig, n=3)
    text = str(err.value)
    assert "expected a send of" in text and "n=3" in text
    assert "sent instead" in text and "n=1" in text and "n=2" in text
    assert "sender='t'" in text
    with pytest.raises(AssertionError, match=r"expected one send of .*got 2"):
        sent.assert_sent_once(sig)
    with pytest.raises(
        AssertionError, match=r"(?s)expected no send of .*got 2; these matched:.*n=1"
    ):
        sent.assert_not_sent(sig, sender="s")
    with capture() as empty, pytest.raises(AssertionError, match="nothing was sent"):
        empty.assert_sent(sig)


@process_wide
def test_context_scope_does_not_see_a_thread_started_by_hand() -> None:
    sig = Signal()
    with capture(sig) as mine, capture(sig, scope="process") as everywhere:
        t = threading.Thread(target=sig.send, args=("other thread",))
        t.start()
        t.join()
        sig.send("here")
    assert [s.sender for s in mine] == ["here"]
    assert [s.sender for s in everywhere] == ["other thread", "here"]
    (other,) = everywhere.of(sig, "other thread")
    assert other.thread is t


def test_context_scope_sees_tasks_and_calls_run_on_pools() -> None:
    """A task created inside, and a send a receiver makes on the pool that
    runs it (the pool's call runs in a copy of the sender's context)."""
    outer, inner = Signal(), Signal()

    def relay(sender: Any, **kw: Any) -> None:
        inner.send("from the pool")

    outer.connect(relay)

    async def main() -> None:
        await asyncio.create_task(inner.asend("from a task"))

    with ThreadPoolExecutor(2) as pool, capture(inner) as sent:
        outer.using(pool).send(None)
        asyncio.run(main())
    assert [s.sender for s in sent] == ["from the pool", "from a task"]
    assert sent.sent[0].thread is not threading.current_thread()


@pytest.mark.timeout(30)
def test_two_threads_capture_and_mute_at_once_without_seeing_each_other() -> None:
    """Thread A mutes and captures, thread B only captures, both sending the
    same signal at once: each capture holds its own thread's sends only, and
    only B's sends call the receiver."""
    sig = Signal()
    calls: list[Any] = []
    sig.connect(recording(calls), weak=False)
    both_in, both_sent = threading.Barrier(2), threading.Barrier(2)
    seen: dict[str, list[Any]] = {}

    def run(name: str, mute: bool) -> None:
        with capture(sig) as sent, mute_signals(sig) if mute else _nothing():
            both_in.wait()
            for n in range(50):
                sig.send(name, n=n)
            both_sent.wait()
        seen[name] = [(s.sender, s.named["n"], len(s.results)) for s in sent]

    threads = [threading.Thread(target=run, args=(n, n == "A")) for n in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["A"] == [("A", n, 0) for n in range(50)]  # muted: nobody called
    assert seen["B"] == [("B", n, 1) for n in range(50)]
    assert calls == [("B", n) for n in range(50)]


class _nothing:
    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        pass


@process_wide
def test_the_monitor_is_installed_only_while_a_capture_is_open() -> None:
    from concsignals._capture import _monitor

    assert _monitor not in monitoring.monitors()
    with capture():
        with capture(scope="process"):
            assert _monitor in monitoring.monitors()
        assert _monitor in monitoring.monitors()
    assert _monitor not in monitoring.monitors()


def test_bad_arguments_are_refused_by_name() -> None:
    with pytest.raises(
        TypeError, match=r"capture\(\) needs concsignals signals, not 3"
    ):
        capture(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scope must be 'context' or 'process'"):
        capture(scope="thread")
    rec = capture()
    with rec, pytest.raises(RuntimeError, match="already open"):
        rec.__enter__()
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        wait_for(Signal(), timeout=-1)


# -- wait_for / await_for ------------------------------------------------------------


@process_wide
def test_wait_for_does_not_miss_a_send_before_the_wait() -> None:
    """The send ends (in another thread) after the with began and before
    wait() is called: it is found."""
    sig = Signal()
    sig.connect(ok)
    with wait_for(sig, timeout=10) as w:
        t = threading.Thread(target=sig.send, args=("server",), kwargs={"n": 1})
        t.start()
        t.join()
        sent = w.wait()
    assert sent.sender == "server" and sent.results == ((ok, "ok"),)
    assert w.sent is sent


@process_wide
def test_wait_for_blocks_until_a_send_in_another_thread_ends() -> None:
    sig = Signal()
    go = threading.Event()

    def server() -> None:
        go.wait()
        sig.send("server")

    t = threading.Thread(target=server)
    t.start()
    with wait_for(sig, timeout=10) as w:
        go.set()
    t.join()
    assert w.sent is not None and w.sent.thread is t


@process_wide
def test_wait_for_check_and_sender_pick_the_send() -> None:
    sig = Signal()
    with wait_for(sig, timeout=10, sender="s", check=lambda s: s.named["n"] == 2) as w:
        for n in range(3):
            sig.send("other", n=n)
            sig.send("s", n=n)
    assert w.sent is not None and (w.sent.sender, w.sent.named) == ("s", {"n": 2})


@process_wide
def test_wait_for_times_out_listing_what_was_sent_meanwhile() -> None:
    sig, other = Signal(), Signal()
    with pytest.raises(TimeoutError) as err, wait_for(sig, timeout=0, sender="wanted"):
        sig.send("unwanted", n=7)
        other.send("x")
    text = str(err.value)
    assert "no send of" in text and "within 0 s" in text
    assert "sender='unwanted', n=7" in text and "sender='x'" in text


@process_wide
def test_wait_for_stops_watching_after_the_wait() -> None:
    from concsignals._capture import _monitor

    sig = Signal()
    with wait_for(sig, timeout=10):
        sig.send(None)
    assert _monitor not in monitoring.monitors()
    with pytest.raises(ZeroDivisionError), wait_for(sig, timeout=10):
        1 / 0  # noqa: B018 - the block raised: no wait, the watch ends
    assert _monitor not in monitoring.monitors()


@process_wide
def test_await_for_waits_without_blocking_the_loop() -> None:
    sig = Signal()
    sig.connect(ok)

    async def main() -> Sent:
        waiter = await_for(sig, timeout=10)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: sig.send("thread", n=1))
        return await waiter

    sent = asyncio.run(main())
    assert sent.sender == "thread" and sent.results == ((ok, "ok"),)


@process_wide
def test_await_for_as_async_with_and_its_timeout() -> None:
    sig = Signal()

    async def main() -> None:
        async with await_for(sig, timeout=10) as w:
            asyncio.get_running_loop().call_soon(sig.send, "later")
        assert w.sent is not None and w.sent.sender == "later"
        with pytest.raises(TimeoutError, match="nothing was sent"):
            await await_for(sig, timeout=0)

    asyncio.run(main())


# -- connected -------------------------------------------------------------------------


def test_connected_connects_for_the_with_only_even_on_error() -> None:
    sig = Signal()
    calls: list[Any] = []
    receiver = recording(calls)
    with connected(sig, receiver, sender="s") as conn:
        assert conn.connected
        sig.send("s", n=1)
        sig.send("t", n=2)
    assert not conn.connected and sig.receivers == []
    with pytest.raises(KeyError), connected(sig, receiver) as conn:
        raise KeyError
    assert not conn.connected
    assert calls == [("s", 1)]


def test_connected_waits_for_calls_still_running() -> None:
    sig = Signal()
    entered, release = threading.Event(), threading.Event()
    finished: list[bool] = []
    seen_after_with: list[bool] = []

    def slow(sender: Any, **kw: Any) -> None:
        entered.set()
        release.wait(10)
        finished.append(True)

    def test_body() -> None:
        with connected(sig, slow) as conn:
            sender.start()
            entered.wait(10)
            holder.append(conn)
        seen_after_with.append(bool(finished))

    holder: list[Any] = []
    sender = threading.Thread(target=sig.send, args=(None,))
    body = threading.Thread(target=test_body)
    body.start()
    entered.wait(10)
    while not holder or holder[0].connected:  # the with's exit disconnected
        threading.Event().wait(0.001)
    release.set()
    body.join()
    sender.join()
    assert seen_after_with == [True]


def test_connected_refuses_a_receiver_already_connected() -> None:
    sig = Signal()
    sig.connect(ok)
    with pytest.raises(ValueError, match="already connected"), connected(sig, ok):
        pass
    assert sig.receivers == [ok]


# -- mute_signals ---------------------------------------------------------------------


def test_mute_signals_as_context_manager_and_decorators() -> None:
    sig, other = Signal(), Signal()
    calls: list[Any] = []
    sig.connect(recording(calls), weak=False)
    other.connect(recording(calls), weak=False)
    with mute_signals(sig, other):
        sig.send("muted")
        other.send("muted")

    @mute_signals(sig)
    def func() -> None:
        sig.send("muted")
        other.send("func")

    @mute_signals(sig)
    async def coro() -> None:
        await sig.asend("muted")
        await other.asend("coro")

    @mute_signals(sig)
    class Tests:
        def test_one(self) -> None:
            sig.send("muted")

        def helper(self) -> None:
            sig.send("helper")

    func()
    asyncio.run(coro())
    Tests().test_one()
    Tests().helper()
    sig.send("after")
    assert [c[0] for c in calls] == ["func", "coro", "helper", "after"]


def test_mute_signals_nests_and_is_context_scoped() -> None:
    sig = Signal()
    calls: list[Any] = []
    sig.connect(recording(calls), weak=False)
    mute = mute_signals(sig)
    with mute:
        with mute:
            sig.send("muted")
        sig.send("muted")
        t = threading.Thread(target=sig.send, args=("other thread",))
        t.start()
        t.join()
    sig.send("after")
    assert [c[0] for c in calls] == ["other thread", "after"]


def test_mute_signals_decorates_a_factory_boy_factory() -> None:
    factory = pytest.importorskip("factory", reason="needs factory_boy")
    sig = Signal()
    calls: list[Any] = []
    sig.connect(recording(calls), weak=False)

    class Thing:
        def __init__(self, name: str) -> None:
            self.name = name
            sig.send(self)

    @mute_signals(sig)
    class ThingFactory(factory.Factory):  # type: ignore[misc]
        class Meta:
            model = Thing

        name = "x"

    assert ThingFactory.create().name == "x"
    assert ThingFactory.build().name == "x"
    assert calls == []
    Thing("y")
    assert len(calls) == 1


def test_factory_boy_mute_signals_works_on_concsignals_django_signals() -> None:
    pytest.importorskip("django", reason="needs Django")
    factory_django = pytest.importorskip("factory.django", reason="needs factory_boy")
    from concsignals.django import Signal as DjangoSignal

    sig = DjangoSignal()
    calls: list[Any] = []
    sig.connect(recording(calls), weak=False)
    sig.connect(recording(calls), sender="s", dispatch_uid="for s", weak=False)
    with factory_django.mute_signals(sig):
        sig.send("s", n=1)
    sig.send("s", n=2)
    assert calls == [("s", 2), ("s", 2)]


def test_the_public_names_of_concsignals_testing() -> None:
    import concsignals.testing

    assert sorted(concsignals.testing.__all__) == [
        "ANY",
        "Capture",
        "Sent",
        "Waiter",
        "await_for",
        "capture",
        "connected",
        "mute_signals",
        "wait_for",
    ]
