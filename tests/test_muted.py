"""Muting scoped to a context: ``signal.muted()`` and ``concsignals.muted()``
(issue 23).

A mute silences calls in the sends made in the context that entered it (this
thread, this task, and the copies of its context concsignals makes for the
calls it hands over), and nowhere else; it never edits the connections.  The
concurrent cases overlap for real: each holds one send open on an event until
the other has been made.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import concsignals
from concsignals import INLINE, Serial, Signal
from tests.backends import Backend
from tests.receivers import Bank, Reply, Shop

pytestmark = pytest.mark.timeout(30)

#: Which task of a test is sending (receivers' tasks copy it).
who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="")


class Boom(Exception):
    pass


class Tagged:
    """A receiver that returns its tag (a distinct object per tag)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __call__(self, **named: Any) -> str:
        return self.tag

    def __repr__(self) -> str:
        return f"Tagged({self.tag!r})"


def tags(responses: list[tuple[Any, Any]]) -> list[Any]:
    return [value for _, value in responses]


def ab() -> tuple[Signal, Tagged, Tagged]:
    sig = Signal()
    a, b = Tagged("a"), Tagged("b")
    sig.connect(a, weak=False)
    sig.connect(b, weak=False)
    return sig, a, b


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2, thread_name_prefix="muted-pool") as p:
        yield p


# -- scope: this thread, this task ----------------------------------------------


def test_a_mute_in_one_thread_leaves_a_concurrent_send_in_another_alone() -> None:
    """B's send is under way (its receiver parked) while A, muted, sends."""
    sig = Signal()
    calls: list[str] = []
    b_calling, a_sent, a_in, b_done = (threading.Event() for _ in range(4))

    def r(**named: Any) -> str:
        name = threading.current_thread().name
        calls.append(name)
        if name == "B":
            b_calling.set()
            assert a_sent.wait(10)
        return name

    sig.connect(r)
    got: dict[str, Any] = {}

    def a() -> None:
        with sig.muted():
            a_in.set()
            assert b_calling.wait(10)
            got["A"] = sig.send(Shop)
            a_sent.set()
            assert b_done.wait(10)  # B sends again while A is still muted
            got["A again"] = sig.send(Shop)

    def b() -> None:
        assert a_in.wait(10)
        got["B"] = sig.send(Shop)
        got["B again"] = sig.send(Shop)
        b_done.set()

    threads = [
        threading.Thread(target=a, name="A"),
        threading.Thread(target=b, name="B"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert got == {"A": [], "A again": [], "B": [(r, "B")], "B again": [(r, "B")]}
    assert calls == ["B", "B"]


def test_two_tasks_one_muted_one_not() -> None:
    asyncio.run(two_tasks())


async def two_tasks() -> None:
    sig = Signal()
    b_calling, a_sent = asyncio.Event(), asyncio.Event()

    async def r(**named: Any) -> str:
        name = who.get()
        if name == "B":
            b_calling.set()
            await a_sent.wait()  # A's muted send happens while B's is open
        return name

    sig.connect(r)

    async def a() -> list[Any]:
        who.set("A")
        with sig.muted():
            await b_calling.wait()
            got = await sig.asend(Shop)
            a_sent.set()
            return got

    async def b() -> list[Any]:
        who.set("B")
        return await sig.asend_robust(Shop)

    got_a, got_b = await asyncio.wait_for(asyncio.gather(a(), b()), 20)
    assert got_a == []
    assert got_b == [(r, "B")]


def test_a_thread_started_inside_a_mute_is_not_muted() -> None:
    sig = ab()[0]
    got: list[Any] = []
    with sig.muted():
        t = threading.Thread(target=lambda: got.append(tags(sig.send(Shop))))
        t.start()
        t.join(20)
        assert sig.send(Shop) == []
    assert got == [["a", "b"]]


def test_a_task_created_inside_a_mute_is_muted_only_while_it_lasts() -> None:
    asyncio.run(task_inside())


async def task_inside() -> None:
    """Another mute stays active throughout, so the process-wide count never
    hides a mute that has ended."""
    sig = ab()[0]
    go, sent_inside = asyncio.Event(), asyncio.Event()
    got: list[list[Any]] = []

    async def later() -> None:
        got.append(tags(await sig.asend(Shop)))  # the mute still holds
        sent_inside.set()
        await go.wait()
        got.append(tags(await sig.asend(Shop)))  # the mute has ended

    with Signal().muted():  # elsewhere: some mute is active all along
        with sig.muted():
            task = asyncio.create_task(later())
            await asyncio.wait_for(sent_inside.wait(), 20)
        go.set()
        await asyncio.wait_for(task, 20)
    assert got == [[], ["a", "b"]]


# -- what a mute matches ------------------------------------------------------------


def test_muting_one_receiver_leaves_the_others_and_muting_all_silences_all() -> None:
    sig, a, _ = ab()
    with sig.muted(a):
        assert tags(sig.send(Shop)) == ["b"]
    with sig.muted():
        assert sig.send(Shop) == []
    with concsignals.muted(sig):
        assert sig.send(Shop) == []
    assert tags(sig.send(Shop)) == ["a", "b"]


def test_mutes_nest_and_each_end_restores_what_the_outer_one_holds() -> None:
    sig, a, _ = ab()
    other, c = Signal(), Tagged("c")
    other.connect(c, weak=False)
    with sig.muted(a):
        assert tags(sig.send(Shop)) == ["b"]
        with concsignals.muted(sig, other):
            assert sig.send(Shop) == []
            assert other.send(Shop) == []
            with sig.muted(a):  # the same rule again: ends on its own
                assert sig.send(Shop) == []
            assert sig.send(Shop) == []
        assert tags(sig.send(Shop)) == ["b"]  # the outer mute still holds
        assert tags(other.send(Shop)) == ["c"]
    assert tags(sig.send(Shop)) == ["a", "b"]


def test_mutes_left_out_of_order_each_end_their_own() -> None:
    sig, a, _ = ab()
    one, every = sig.muted(a), sig.muted()
    one.__enter__()
    every.__enter__()
    one.__exit__(None, None, None)
    assert sig.send(Shop) == []  # ``every`` still holds
    every.__exit__(None, None, None)
    assert tags(sig.send(Shop)) == ["a", "b"]


def test_one_mute_object_nests_and_is_entered_in_two_threads_at_once() -> None:
    sig, a, _ = ab()
    quiet = sig.muted(a)
    with quiet:
        with quiet:
            assert tags(sig.send(Shop)) == ["b"]
        assert tags(sig.send(Shop)) == ["b"]
    assert tags(sig.send(Shop)) == ["a", "b"]

    first_in, second_out = threading.Event(), threading.Event()
    got: dict[str, Any] = {}

    def first() -> None:
        with quiet:
            first_in.set()
            assert second_out.wait(10)
            got["first"] = tags(sig.send(Shop))  # the other's exit left this on

    def second() -> None:
        assert first_in.wait(10)
        with quiet:
            got["second"] = tags(sig.send(Shop))
        second_out.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert got == {"first": ["b"], "second": ["b"]}


def test_a_sender_scoped_mute_silences_the_sends_for_that_sender_only() -> None:
    sig = Signal()
    anyone, own = Tagged("anyone"), Tagged("own")
    sig.connect(anyone, weak=False)
    sig.connect(own, sender=Shop, weak=False)
    with sig.muted(sender=Shop):
        assert sig.send(Shop) == []
        assert tags(sig.send(Bank)) == ["anyone"]
    with sig.muted(anyone, sender=Shop):
        assert tags(sig.send(Shop)) == ["own"]
        assert tags(sig.send(Bank)) == ["anyone"]
    with sig.muted(own):
        assert tags(sig.send(Shop)) == ["anyone"]
    assert tags(sig.send(Shop)) == ["anyone", "own"]


def test_bound_methods_are_matched_as_disconnect_matches_them() -> None:
    """A fresh ``obj.method`` names the connection of ``obj.method``, as
    receiver and as sender; one connected with a dispatch_uid too."""

    class Plugin:
        def on(self, **named: Any) -> str:
            return "on"

        def source(self) -> None:
            pass

    sig, p = Signal(), Plugin()
    sig.connect(p.on)
    sig.connect(Tagged("uid"), dispatch_uid="key", weak=False)
    uid_receiver = sig.receivers[1]
    with sig.muted(p.on):
        assert tags(sig.send(Shop)) == ["uid"]
    with sig.muted(uid_receiver):
        assert tags(sig.send(Shop)) == ["on"]
    with sig.muted(sender=p.source):
        assert sig.send(p.source) == []
        assert tags(sig.send(Plugin().source)) == ["on", "uid"]


# -- the connections do not change ---------------------------------------------------


def test_a_mute_changes_neither_the_receivers_nor_has_listeners() -> None:
    sig, a, b = ab()
    with sig.muted(), sig.muted(a, sender=Shop):
        assert sig.receivers == [a, b]
        assert sig.has_listeners()
        assert sig.has_listeners(Shop)
        assert sig.send(Shop) == []


def test_an_exception_inside_the_block_still_unmutes() -> None:
    sig = ab()[0]
    with pytest.raises(Boom), sig.muted():
        assert sig.send(Shop) == []
        raise Boom
    assert tags(sig.send(Shop)) == ["a", "b"]


def test_the_decorator_mutes_each_call_of_a_sync_function() -> None:
    sig, a, _ = ab()

    @sig.muted(a)
    def handler(x: int) -> tuple[int, list[Any]]:
        return x, tags(sig.send(Shop))

    assert handler(1) == (1, ["b"])
    assert handler.__name__ == "handler"
    assert tags(sig.send(Shop)) == ["a", "b"]

    @concsignals.muted(sig)
    def fails() -> None:
        assert sig.send(Shop) == []
        raise Boom

    with pytest.raises(Boom):
        fails()
    assert tags(sig.send(Shop)) == ["a", "b"]


def test_the_decorator_mutes_each_call_of_an_async_function() -> None:
    asyncio.run(decorated_async())


async def decorated_async() -> None:
    sig = ab()[0]
    inside, go = asyncio.Event(), asyncio.Event()

    @sig.muted()
    async def handler() -> list[Any]:
        inside.set()
        await go.wait()  # the other task sends while this one is muted
        return await sig.asend(Shop)

    task = asyncio.create_task(handler())
    await asyncio.wait_for(inside.wait(), 20)
    assert tags(await sig.asend(Shop)) == ["a", "b"]
    go.set()
    assert await asyncio.wait_for(task, 20) == []
    assert tags(await sig.asend(Shop)) == ["a", "b"]


# -- every send path ------------------------------------------------------------------


async def _both_async(sig: Signal) -> tuple[Any, Any]:
    return await sig.asend(Shop), await sig.asend_robust(Shop)


def test_every_send_of_a_signal_leaves_out_the_muted_receiver(
    pool: ThreadPoolExecutor,
) -> None:
    """Inline (the fast path, a sender route, async receivers), robust,
    async, submit, a view and a signal with an executor."""

    async def c(**named: Any) -> str:
        return "c"

    signals = {
        "plain": Signal(),
        "routed": Signal(),
        "mixed": Signal(),
        "pooled": Signal(executor=pool),
    }
    for kind, sig in signals.items():
        a, b = Tagged("a"), Tagged("b")
        sig.connect(a, weak=False)
        sig.connect(b, weak=False)
        if kind == "routed":
            sig.connect(Tagged("own"), sender=Bank, weak=False)
        want = ["b"]
        if kind == "mixed":
            sig.connect(c)
            want = ["b", "c"]
        assert len(sig.send(Shop)) == len(want) + 1  # the fast path's cache is built
        with sig.muted(a):
            assert tags(sig.send(Shop)) == want
            assert tags(sig.send_robust(Shop)) == want
            assert [tags(x) for x in asyncio.run(_both_async(sig))] == [want, want]
            assert tags(sig.submit(Shop).result(20)) == want
            view = sig.using(pool, timeout=20)
            assert tags(view.send(Shop)) == want
            assert tags(view.send_robust(Shop)) == want
            assert tags(view.submit(Shop).result(20)) == want
            assert tags(asyncio.run(view.asend(Shop))) == want
            assert tags(asyncio.run(view.asend_robust(Shop))) == want


@pytest.fixture
def executor(backend: Backend, request: pytest.FixtureRequest) -> Any:
    return backend.make(request, 2)


def test_on_every_backend(backend: Backend, executor: Any) -> None:
    """Threads, processes, dask and the async backends: the muted call is
    never handed over."""
    sig = Signal()
    sig.connect(muted := Reply("muted"), weak=False)
    sig.connect(kept := Reply("kept"), weak=False)
    with sig.muted(muted):
        got = backend.send(sig, executor, None, Shop, {})
        robust = backend.send_robust(sig, executor, None, Shop, {})
    assert got == [(kept, "kept")]
    assert robust == [(kept, "kept")]


def test_a_send_a_pool_job_makes_runs_in_the_senders_muted_context(
    pool: ThreadPoolExecutor,
) -> None:
    """The muted signal is sent from receivers running on the pool (a
    pool-fanned send, and a via=pool connection): the job copies the
    sender's context, mute included."""
    inner, c = Signal(), Tagged("c")
    inner.connect(c, weak=False)

    def relay(**named: Any) -> list[Any]:
        assert threading.current_thread().name.startswith("muted-pool")
        return tags(inner.send(Shop))

    outer = Signal()
    outer.connect(relay)
    direct = Signal()
    direct.connect(relay, via=pool)
    with concsignals.muted(inner):
        assert tags(outer.using(pool).send(Shop)) == [[]]
        assert tags(direct.send(Shop)) == [[]]
    assert tags(outer.using(pool).send(Shop)) == [["c"]]
    assert tags(direct.send(Shop)) == [["c"]]


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.mark.parametrize("target", ["inline", "pool", "loop", "serial", "forget"])
def test_per_connection_targets_respect_the_mute(
    target: str, pool: ThreadPoolExecutor, loop_thread: LoopThread
) -> None:
    """A muted connection's call is not handed to its target; its slot is
    absent.  The others still run where they are connected."""
    serial = Serial()
    via: dict[str, Any] = {
        "inline": {"via": INLINE},
        "pool": {"via": pool},
        "loop": {"via": loop_thread.loop},
        "serial": {"via": serial},
        "forget": {"via": pool, "wait": False},
    }
    ran: list[str] = []

    def muted(**named: Any) -> str:
        ran.append("muted")
        return "muted"

    sig, kept = Signal(), Tagged("kept")
    sig.connect(muted, **via[target])
    sig.connect(kept, **via[target])
    with sig.muted(muted):
        got = sig.send(Shop)
        robust = sig.send_robust(Shop)
    assert [r for r, _ in got] == [kept]
    assert [r for r, _ in robust] == [kept]
    after = sig.send(Shop)  # unmuted: both run, on the same target (a
    assert [r for r, _ in after] == [muted, kept]  # Serial runs in order)
    if target == "forget":
        for _, fut in after:
            fut.result(20)
    assert ran == ["muted"]


def test_a_django_signal_leaves_out_the_muted_receiver() -> None:
    pytest.importorskip("django", reason="needs Django: the dev extra, .[dev]")
    pytest.importorskip("asgiref", reason="needs asgiref: the dev extra, .[dev]")
    from concsignals.django import Signal as DjangoSignal

    class Wrapped(DjangoSignal):
        """Replaces _live_receivers, as sentry-sdk does (with wrappers)."""

        def _live_receivers(self, sender: object) -> tuple[list[Any], list[Any]]:
            sync, asynchronous = super()._live_receivers(sender)
            return [Wrapper(r) for r in sync], asynchronous

    async def c(**named: Any) -> str:
        return "c"

    for cls in (DjangoSignal, Wrapped):
        sig, a, b = cls(), Tagged("a"), Tagged("b")
        sig.connect(a, weak=False)
        sig.connect(b, weak=False)
        assert tags(sig.send(Shop)) == ["a", "b"]  # the fast path's cache is built
        with sig.muted(a):
            assert tags(sig.send(Shop)) == ["b"]
            assert tags(sig.send_robust(Shop)) == ["b"]
            assert [tags(x) for x in asyncio.run(_both_async(sig))] == [["b"], ["b"]]
        sig.connect(c)
        with sig.muted(a):
            assert tags(sig.send(Shop)) == ["b", "c"]
            assert tags(sig.send_robust(Shop)) == ["b", "c"]
            assert [tags(x) for x in asyncio.run(_both_async(sig))] == [
                ["b", "c"],
                ["b", "c"],
            ]
        with concsignals.muted(sig):
            assert sig.send(Shop) == []
        assert tags(sig.send(Shop)) == ["a", "b", "c"]


class Wrapper:
    def __init__(self, receiver: Any) -> None:
        self.receiver = receiver

    def __call__(self, **named: Any) -> Any:
        return self.receiver(**named)


# -- bad input ------------------------------------------------------------------------


def test_bad_input_gets_a_clear_error_naming_the_object() -> None:
    sig = Signal()
    with pytest.raises(TypeError, match=r"receiver 42 is not callable"):
        sig.muted(42)  # type: ignore[arg-type]
    thing = object()
    with pytest.raises(TypeError, match=rf"Signal objects, not {thing!r}"):
        concsignals.muted(sig, thing)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="at least one signal"):
        concsignals.muted()

    def gen() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match=r"generator function .*gen"):
        sig.muted()(gen)


def test_leaving_a_mute_where_it_was_not_entered_is_refused() -> None:
    sig = ab()[0]
    quiet = sig.muted()
    with pytest.raises(RuntimeError, match="not entered"):
        quiet.__exit__(None, None, None)
    quiet.__enter__()
    failed: list[BaseException] = []

    def elsewhere() -> None:
        try:
            quiet.__exit__(None, None, None)
        except RuntimeError as err:
            failed.append(err)

    t = threading.Thread(target=elsewhere)
    t.start()
    t.join(20)
    assert len(failed) == 1
    assert sig.send(Shop) == []  # still muted here
    quiet.__exit__(None, None, None)
    assert tags(sig.send(Shop)) == ["a", "b"]
