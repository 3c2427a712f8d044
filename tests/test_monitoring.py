"""The monitoring API (issue 15): what monitors see, on every backend; monitors
that raise; slow-receiver warnings; nothing left installed."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from concsignals import Signal, _carriers, _monitor_events, monitoring
from tests.backends import Backend, process_pool, thread_pool
from tests.receivers import Fail, Reply, Shop, WaitForFile, kills


class Recorder:
    """A monitor that keeps every event it sees (from any thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sends: list[monitoring.SendEvent] = []
        self.ended: list[monitoring.SendEvent] = []
        self.began: list[monitoring.CallEvent] = []
        self.calls: list[monitoring.CallEvent] = []
        #: id(call): the thread call_ended ran on.
        self.ended_on: dict[int, str] = {}

    def send_began(self, send: monitoring.SendEvent) -> None:
        with self.lock:
            self.sends.append(send)

    def call_began(self, call: monitoring.CallEvent) -> None:
        with self.lock:
            self.began.append(call)

    def call_ended(self, call: monitoring.CallEvent) -> None:
        assert call.outcome is not None
        with self.lock:
            assert call not in self.calls, "two outcomes for one slot"
            self.calls.append(call)
            self.ended_on[id(call)] = threading.current_thread().name

    def send_ended(self, send: monitoring.SendEvent) -> None:
        with self.lock:
            self.ended.append(send)

    def outcomes(self, signal: Signal | None = None) -> list[str | None]:
        return [c.outcome for c in sorted(self.of(signal), key=lambda c: c.index)]

    def of(self, signal: Signal | None) -> list[monitoring.CallEvent]:
        """The ended calls of sends of ``signal`` (``None``: all); the nested
        backend's relay sends through a signal of its own."""
        return [c for c in self.calls if signal is None or c.send.signal is signal]

    def sends_of(self, signal: Signal) -> tuple[list[Any], list[Any]]:
        """The began and the ended sends of ``signal``."""
        return (
            [s for s in self.sends if s.signal is signal],
            [s for s in self.ended if s.signal is signal],
        )


class Broken:
    """A monitor that raises everywhere."""

    def __getattr__(self, name: str) -> Any:
        if name in ("send_began", "call_began", "carrier", "call_ended", "send_ended"):

            def fail(event: object) -> None:
                raise RuntimeError(f"broken monitor in {name}")

            return fail
        raise AttributeError(name)


@pytest.fixture
def executor(backend: Backend, request: pytest.FixtureRequest) -> Any:
    return backend.make(request, 4)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    monitoring.install(rec)
    try:
        yield rec
    finally:
        monitoring.uninstall(rec)
    assert not monitoring.installed


def robust(backend: Backend, sig: Signal, executor: Any, **kw: Any) -> Any:
    timeout = kw.pop("timeout", None)
    return backend.send_robust(sig, executor, timeout, Shop, kw)


def test_a_monitor_sees_the_send_and_every_call(
    backend: Backend, executor: Any, recorder: Recorder
) -> None:
    sig = Signal()
    a, b = Reply("a"), Fail("b")
    sig.connect(a)
    sig.connect(b)
    result = robust(backend, sig, executor, n=1)
    assert [r for r, _ in result] == [a, b]
    assert result[0][1] == "a" and isinstance(result[1][1], ValueError)
    (send,), ended = recorder.sends_of(sig)
    assert ended == [send]
    assert send.signal is sig and send.sender is Shop and send.robust
    assert send.receivers == (a, b) and send.executor is executor
    assert recorder.outcomes(sig) == ["result", "exception"]
    ok, failed = sorted(recorder.of(sig), key=lambda c: c.index)
    assert ok.result == "a" and isinstance(failed.error, ValueError)
    assert len([c for c in recorder.began if c.send is send]) == 2
    for call in (ok, failed):
        assert call.began is not None and call.ended is not None
        assert send.began <= call.began <= call.ended <= (send.ended or 0)
        assert call.duration is not None and call.duration >= 0
        if backend.shares_memory:
            assert call.thread is not None and call.process is not None
            # Reported as the call ended (Send.end), on its own thread.
            assert recorder.ended_on[id(call)] == call.thread
        else:
            assert call.thread is None and call.process is None


def test_the_plain_fast_send_is_monitored(recorder: Recorder) -> None:
    sig = Signal()
    sig.connect(Reply("a"), weak=False)
    assert [v for _, v in sig.send(Shop)] == ["a"]
    assert recorder.outcomes() == ["result"]
    assert recorder.calls[0].thread == threading.current_thread().name


def test_a_failure_in_send_leaves_later_calls_not_begun(
    backend: Backend, executor: Any, recorder: Recorder
) -> None:
    sig = Signal()
    sig.connect(Fail("first"), weak=False)
    sig.connect(Reply("later", delay=0.3 if backend.parallel else 0.0), weak=False)
    with pytest.raises(ValueError, match="first"):
        backend.send(sig, executor, None, Shop, {})
    _, ended = recorder.sends_of(sig)
    assert ended and isinstance(ended[0].error, ValueError)
    first, later = recorder.outcomes(sig)
    assert first == "exception"
    if backend.parallel:
        assert later in ("result", "not begun")
    else:
        assert later == "not begun"


def test_a_failure_in_a_plain_send_leaves_later_calls_not_begun(
    recorder: Recorder,
) -> None:
    sig = Signal()
    sig.connect(Reply("before"), weak=False)
    sig.connect(Fail("first"), weak=False)
    sig.connect(Reply("later"), weak=False)
    with pytest.raises(ValueError, match="first"):
        sig.send(Shop)  # the inline loop, not a Send
    assert recorder.outcomes(sig) == ["result", "exception", "not begun"]
    assert isinstance(recorder.ended[0].error, ValueError)


@pytest.mark.timeout(30)
def test_a_call_past_the_deadline_is_timed_out(
    backend: Backend, executor: Any, recorder: Recorder, tmp_path: Path
) -> None:
    sig = Signal()
    sig.connect(WaitForFile("slow", str(tmp_path / "go"), max_wait=0.6), weak=False)
    result = robust(backend, sig, executor, timeout=0.1)
    (tmp_path / "go").touch()
    assert isinstance(result[0][1], TimeoutError)
    assert recorder.outcomes(sig) == ["timed out"]


def test_a_receiver_disconnected_before_its_call_is_skipped(
    backend: Backend, executor: Any, recorder: Recorder
) -> None:
    if backend.parallel or not backend.shares_memory:
        pytest.skip("needs calls one after another in this process")
    sig = Signal()
    later = Reply("later")

    def first(**kw: Any) -> str:
        sig.disconnect(later)
        return "first"

    sig.connect(first)
    sig.connect(later)
    assert [v for _, v in robust(backend, sig, executor)] == ["first"]
    assert recorder.outcomes(sig) == ["result", "skipped"]


@pytest.mark.parametrize("pooled", [False, True], ids=["own-pool", "executor"])
def test_submit_is_monitored(recorder: Recorder, pooled: bool) -> None:
    from concurrent.futures import ThreadPoolExecutor

    sig = Signal()
    sig.connect(Reply("a"), weak=False)
    sig.connect(Fail("b"), weak=False)
    with ThreadPoolExecutor(2) as pool:
        view = sig.using(pool if pooled else None)
        result = view.submit(Shop).result(timeout=30)
    assert [type(v) for _, v in result] == [str, ValueError]
    (send,), ended = recorder.sends_of(sig)
    assert ended == [send] and send.robust and send.error is None
    assert send.executor is (pool if pooled else None)
    assert recorder.outcomes(sig) == ["result", "exception"]


@pytest.mark.parametrize("pooled", [False, True], ids=["own-pool", "executor"])
def test_a_submit_that_raises_is_monitored_with_its_error(
    recorder: Recorder, pooled: bool
) -> None:
    """A BaseException ends a robust submit: the Future and the monitor get
    it; the call it stopped is reported as not begun."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.receivers import Halt, Stop

    holder = [Reply("victim")]
    sig = Signal()
    sig.connect(kills(holder, "a"), weak=False)
    sig.connect(holder[0])  # weak: dies before its call begins
    sig.connect(Halt(), weak=False)
    sig.connect(Reply("later"), weak=False)
    with ThreadPoolExecutor(1) as pool:
        err = sig.using(pool if pooled else None).submit(Shop).exception(timeout=30)
    assert isinstance(err, Stop)
    (send,), ended = recorder.sends_of(sig)
    assert ended == [send] and send.error is err
    assert send.executor is (pool if pooled else None)
    assert recorder.outcomes(sig) == ["result", "skipped", "exception", "not begun"]


@pytest.mark.parametrize("pooled", [False, True], ids=["own-pool", "executor"])
def test_submit_reports_a_receiver_that_died_before_its_call_as_skipped(
    recorder: Recorder, pooled: bool
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    holder = [Reply("victim")]
    sig = Signal()
    sig.connect(kills(holder, "a"), weak=False)
    sig.connect(holder[0])
    with ThreadPoolExecutor(1) as pool:
        result = sig.using(pool if pooled else None).submit(Shop).result(timeout=30)
    assert [v for _, v in result] == ["a"]
    assert recorder.outcomes(sig) == ["result", "skipped"]


def test_a_nested_send_is_a_send_of_its_own(recorder: Recorder) -> None:
    outer, inner = Signal(), Signal()
    inner.connect(Reply("inner"), weak=False)

    def relay(**kw: Any) -> Any:
        return inner.send(Shop)

    outer.connect(relay)
    outer.send(Shop)
    assert [s.signal for s in recorder.sends] == [outer, inner]
    assert [s.signal for s in recorder.ended] == [inner, outer]
    assert sorted(c.outcome or "" for c in recorder.calls) == ["result", "result"]


def test_a_monitor_that_raises_never_breaks_a_send(
    backend: Backend,
    executor: Any,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sig = Signal()
    a, b = Reply("a"), Fail("b")
    sig.connect(a)
    sig.connect(b)
    expected = robust(backend, sig, executor)
    broken = Broken()
    monitoring.install(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="concsignals"):
            for _ in range(2):
                result = robust(backend, sig, executor)
                assert [(r, type(v)) for r, v in result] == [
                    (r, type(v)) for r, v in expected
                ]
                assert result[0][1] == "a"
    finally:
        monitoring.uninstall(broken)
    logged = [r for r in caplog.records if "Monitor" in r.getMessage()]
    assert len(logged) == 1, "a broken monitor's error is logged once"
    assert "broken monitor" in logged[0].getMessage()
    # The other monitor saw every send, the broken one notwithstanding.
    assert len(recorder.sends_of(sig)[1]) == 3
    assert recorder.outcomes(sig).count("exception") == 3


def _fail(hook: str, event: object) -> None:
    raise RuntimeError(f"broken monitor in {hook}")


class FailsIn:
    """A callable object (no ``__name__``) that raises."""

    def __init__(self, hook: str) -> None:
        self.hook = hook

    def __call__(self, event: object) -> None:
        _fail(self.hook, event)


class BrokenPartialMethods:
    """Each hook a ``functools.partialmethod``: reading it gives a
    ``functools.partial``, which has no ``__name__``."""

    def _fail(self, hook: str, event: object) -> None:
        _fail(hook, event)

    send_began = functools.partialmethod(_fail, "send_began")
    call_began = functools.partialmethod(_fail, "call_began")
    carrier = functools.partialmethod(_fail, "carrier")
    call_ended = functools.partialmethod(_fail, "call_ended")
    send_ended = functools.partialmethod(_fail, "send_ended")


class BrokenAttributes:
    """Each hook an attribute of the monitor: a ``functools.partial`` or a
    callable object."""

    def __init__(self, make: Callable[[str], Callable[[object], None]]) -> None:
        for hook in _monitor_events.HOOKS:
            setattr(self, hook, make(hook))


BROKEN_KINDS: dict[str, Callable[[], object]] = {
    "partialmethod": BrokenPartialMethods,
    "partial": lambda: BrokenAttributes(lambda h: functools.partial(_fail, h)),
    "callable-object": lambda: BrokenAttributes(FailsIn),
}


def _send_on(path: str, request: pytest.FixtureRequest, sig: Signal) -> Any:
    """One send of ``sig`` on ``path``."""
    if path == "inline":
        return sig.send(Shop)
    if path == "inline+deadline":
        return sig.using(None, timeout=60).send(Shop)
    if path == "asend":
        return asyncio.run(sig.asend(Shop))
    pool = thread_pool(request, 2) if path == "threads" else process_pool(request, 2)
    return sig.using(pool).send(Shop)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", list(BROKEN_KINDS))
@pytest.mark.parametrize(
    "path", ["inline", "inline+deadline", "threads", "processes", "asend"]
)
def test_a_monitor_whose_hooks_have_no_name_never_breaks_a_send(
    kind: str, path: str, request: pytest.FixtureRequest
) -> None:
    """A hook need not be a function: a ``partialmethod``, a ``partial`` or a
    callable object that raises is logged once, under the hook's name, and
    the send's results are those of an unmonitored send."""
    sig = Signal()
    a, b = Reply("a"), Reply("b")
    sig.connect(a)
    sig.connect(b)
    broken = BROKEN_KINDS[kind]()
    logger = logging.getLogger("concsignals")
    counter = CountMonitorErrors()
    logger.addHandler(counter)
    monitoring.install(broken)
    try:
        for _ in range(2):
            assert [v for _, v in _send_on(path, request, sig)] == ["a", "b"]
    finally:
        monitoring.uninstall(broken)
        logger.removeHandler(counter)
    assert counter.messages == ["send_began: broken monitor in send_began"]


class CountMonitorErrors(logging.Handler):
    """Counts the monitor errors logged, keeping no record (a record keeps
    its monitor alive through its arguments and traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        #: The errors logged (as text: no record is kept).
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "Monitor" in record.getMessage():
            self.count += 1
            if isinstance(record.args, tuple):  # (monitor, where, error)
                self.messages.append(f"{record.args[1]}: {record.args[2]}")


def test_a_broken_monitor_at_a_dead_ones_address_is_logged_too() -> None:
    """Once per monitor is by identity: a monitor made where a logged one
    was freed (the same ``id()``) is another monitor, and its error is
    logged."""
    sig = Signal()
    reply = Reply("a")
    sig.connect(reply)
    logger = logging.getLogger("concsignals")
    counter = CountMonitorErrors()

    def fail_with(monitor: object) -> int:
        before = counter.count
        monitoring.install(monitor)
        try:
            assert [v for _, v in sig.send(sender=Shop)] == ["a"]
        finally:
            monitoring.uninstall(monitor)
        return counter.count - before

    logger.addHandler(counter)
    logger.propagate = False  # pytest's handlers would keep the records
    try:
        first = Broken()
        assert fail_with(first) == 1
        assert fail_with(first) == 0, "the same monitor is logged once"
        address = id(first)
        del first
        gc.collect()
        # The mark goes with its monitor, so a new one at its address is new.
        assert address not in _carriers._broken
        # And when the allocator does reuse the address (it usually does):
        kept = [Broken() for _ in range(1000)]
        second = next((m for m in kept if id(m) == address), Broken())
        assert fail_with(second) == 1, "the new monitor's error was not logged"
        assert fail_with(second) == 0, "the same monitor is logged once"
    finally:
        logger.propagate = True
        logger.removeHandler(counter)


def test_slow_call_warnings_name_receiver_signal_duration_executor(
    backend: Backend, executor: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sig, quiet = Signal(), Signal()
    slow = Reply("slow", delay=0.05)
    sig.connect(slow)
    quiet.connect(slow)
    monitoring.slow_call_threshold(0.04)
    monitoring.slow_call_threshold(None, signal=quiet)
    try:
        with caplog.at_level(logging.WARNING, logger="concsignals"):
            robust(backend, sig, executor)
            robust(backend, quiet, executor)
    finally:
        monitoring.slow_call_threshold(None)
        monitoring.slow_call_threshold(None, signal=quiet)
    assert not monitoring.installed
    warned = [  # (the nested backend's relay is slow too)
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "relay" not in r.getMessage()
    ]
    assert len(warned) == 1
    text = warned[0].getMessage()
    assert "Reply" in text and repr(sig) in text and "threshold 0.040 s" in text
    where = "inline" if executor is None else repr(executor)
    assert where in text


def test_a_per_signal_threshold_without_a_global_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sig, other = Signal(), Signal()
    sig.connect(Reply("a"), weak=False)
    other.connect(Reply("b"), weak=False)
    monitoring.slow_call_threshold(0.0, signal=sig)
    try:
        with caplog.at_level(logging.WARNING, logger="concsignals"):
            sig.send(Shop)
            other.send(Shop)
    finally:
        monitoring.slow_call_threshold(None, signal=sig)
    assert [repr(sig) in r.getMessage() for r in caplog.records] == [True]


#: Module-level, so SignalRef names it ``tests.test_monitoring.order_shipped``.
order_shipped = Signal()


def test_a_slow_warning_names_a_module_level_signal_by_its_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    order_shipped.connect(Reply("a"), weak=False)
    monitoring.slow_call_threshold(0.0, signal=order_shipped)
    try:
        with caplog.at_level(logging.WARNING, logger="concsignals"):
            order_shipped.send(Shop)
    finally:
        monitoring.slow_call_threshold(None, signal=order_shipped)
        for r in order_shipped.receivers:
            order_shipped.disconnect(r)
    (record,) = caplog.records
    assert " of tests.test_monitoring.order_shipped: " in record.getMessage()


class SendsOnly(monitoring.Monitor):
    """Implements the send hooks; the call hooks are Monitor's own no-ops."""

    def __init__(self) -> None:
        self.ended: list[monitoring.SendEvent] = []

    def send_ended(self, send: monitoring.SendEvent) -> None:
        self.ended.append(send)


def test_a_monitor_without_call_hooks_gets_no_call_events(
    backend: Backend, executor: Any
) -> None:
    sig = Signal()
    sig.connect(Reply("a"), weak=False)
    sig.connect(Fail("b"), weak=False)
    mon = SendsOnly()
    made: list[object] = []
    real = _monitor_events.CallEvent

    def counted(*args: Any) -> Any:
        made.append(args)
        return real(*args)

    monitoring.install(mon)
    _monitor_events.CallEvent = counted  # type: ignore[assignment,misc]
    try:
        result = robust(backend, sig, executor)
    finally:
        _monitor_events.CallEvent = real  # type: ignore[misc]
        monitoring.uninstall(mon)
    assert [type(v) for _, v in result] == [str, ValueError]
    assert [s for s in mon.ended if s.signal is sig]
    assert made == []  # no CallEvent was made


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        monitoring.slow_call_threshold(-1.0)


def test_uninstalling_leaves_nothing_on(recorder: Recorder) -> None:
    from concsignals import _signal

    sig = Signal()
    sig.connect(Reply("a"), weak=False)
    assert _signal._monitored  # the fast path's own copy of `installed`
    sig.send(Shop)
    assert monitoring.uninstall(recorder)
    assert not _signal._monitored
    assert not monitoring.uninstall(recorder)
    assert monitoring.monitors() == () and not monitoring.installed
    sig.send(Shop)
    assert len(recorder.sends) == 1
    monitoring.install(recorder)  # the fixture uninstalls it again
    monitoring.install(recorder)
    assert monitoring.monitors() == (recorder,)


# -- the monitored plain send is the plain send -----------------------------------


class Context:
    """What :class:`Wrapping` returns from ``call_began``: entered around the
    call, told of its error."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def __enter__(self) -> None:
        self.log.append("enter")

    def __exit__(self, kind: Any, err: Any, tb: Any) -> None:
        self.log.append(("exit", kind))


class Wrapping(Recorder):
    """A recorder whose ``call_began`` returns a context for the call."""

    def __init__(self) -> None:
        super().__init__()
        self.contexts: list[Any] = []

    def call_began(self, call: monitoring.CallEvent) -> Context:
        super().call_began(call)
        return Context(self.contexts)


@pytest.mark.parametrize("robust", [False, True], ids=["send", "send_robust"])
def test_a_monitored_plain_send_does_what_the_plain_send_does(
    robust: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """``signal.send``/``send_robust`` without executor or deadline, watched:
    the receivers get the same arguments, the results, the failure, its log
    line and the dead receiver's clean-up are the plain send's; each call
    runs inside its monitor's context, which is told of the error."""
    seen: list[Any] = []
    holder: list[Any] = [Reply("gone")]

    def echo(signal: Any, sender: Any, **named: Any) -> str:
        seen.append((signal, sender, named))
        holder.clear()  # the next receiver dies mid-send
        gc.collect()  # now, on a free-threaded build too
        return "echo"

    sig = Signal()
    sig.connect(echo)
    sig.connect(holder[0])
    sig.connect(fail := Fail("bad"))
    sig.connect(after := Reply("after"))
    rec = Wrapping()
    monitoring.install(rec)
    try:
        with caplog.at_level(logging.ERROR, logger="concsignals"):
            if robust:
                result = sig.send_robust(Shop, n=1)
            else:
                with pytest.raises(ValueError, match="bad"):
                    sig.send(Shop, n=1)
    finally:
        monitoring.uninstall(rec)
    assert seen == [(sig, Shop, {"n": 1})]
    (send,) = rec.sends
    assert send.sender is Shop and send.robust is robust
    assert send.signal is sig
    (ended,) = rec.ended
    assert ended is send
    assert (ended.error is None) if robust else isinstance(ended.error, ValueError)
    if robust:
        assert [r for r, _ in result] == [echo, fail, after]
        assert result[0][1] == "echo" and result[2][1] == "after"
        assert isinstance(result[1][1], ValueError)
        assert rec.outcomes() == ["result", "skipped", "exception", "result"]
        by_index = sorted(rec.calls, key=lambda c: c.index)
        assert [c.result for c in by_index] == ["echo", None, None, "after"]
        assert rec.contexts == [
            "enter",
            ("exit", None),
            "enter",
            ("exit", ValueError),
            "enter",
            ("exit", None),
        ]
        (line,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert line.getMessage() == (
            f"Error calling {fail!r} in Signal.send_robust() (bad)"
        )
        assert line.exc_info is not None and line.exc_info[1] is result[1][1]
    else:
        assert rec.outcomes() == ["result", "skipped", "exception", "not begun"]
        assert rec.contexts == ["enter", ("exit", None), "enter", ("exit", ValueError)]
        assert caplog.records == []
    if robust:  # it met a dead entry and returned: later sends do not see it
        assert [e.get() for e in sig._snapshot.lookup(Shop)] == [echo, fail, after]


@pytest.mark.parametrize("robust", [False, True], ids=["send", "send_robust"])
def test_a_send_that_finds_the_monitors_gone_runs_unwatched(robust: bool) -> None:
    """``monitoring.installed`` was read true, but the last monitor was
    uninstalled before the send started watching: the plain send runs."""
    from concsignals import _inline

    seen: list[Any] = []

    def echo(signal: Any, sender: Any, **named: Any) -> str:
        seen.append((signal, sender, named))
        return "echo"

    sig = Signal()
    sig.connect(echo)
    sig.connect(fail := Fail("bad"))
    entries = sig._snapshot.lookup(Shop)
    assert not monitoring.installed
    if robust:
        result = _inline.send_watched(sig, entries, Shop, {"n": 1}, True)
        assert [r for r, _ in result] == [echo, fail]
        assert result[0][1] == "echo" and isinstance(result[1][1], ValueError)
    else:
        with pytest.raises(ValueError, match="bad"):
            _inline.send_watched(sig, entries, Shop, {"n": 1}, False)
    assert seen == [(sig, Shop, {"n": 1})]


def test_a_monitored_asend_runs_each_async_call_inside_its_context() -> None:
    import asyncio

    async def ok(signal: Any, sender: Any, **kw: Any) -> str:
        return "ok"

    async def bad(signal: Any, sender: Any, **kw: Any) -> str:
        raise ValueError("bad")

    sig = Signal()
    sig.connect(ok)
    sig.connect(bad)
    rec = Wrapping()
    monitoring.install(rec)
    try:
        result = asyncio.run(sig.asend_robust(Shop))
    finally:
        monitoring.uninstall(rec)
    assert result[0] == (ok, "ok") and isinstance(result[1][1], ValueError)
    assert [(c.index, c.receiver) for c in rec.began] == [(0, ok), (1, bad)]
    assert rec.contexts == ["enter", ("exit", None), "enter", ("exit", ValueError)]
    assert rec.outcomes(sig) == ["result", "exception"]


@pytest.mark.parametrize("robust", [False, True], ids=["send", "send_robust"])
def test_a_send_of_the_engine_that_finds_the_monitors_gone_runs_unwatched(
    robust: bool,
) -> None:
    """As the inline case above, for a send through the engine (``Send``):
    ``_run.watched`` is reached, but no monitor is left to watch it."""
    from concurrent.futures import ThreadPoolExecutor

    from concsignals import _run
    from concsignals._send import Send

    def where(signal: Any, sender: Any, **kw: Any) -> tuple[Any, str]:
        return sender, threading.current_thread().name

    sig = Signal()
    sig.connect(where)
    with ThreadPoolExecutor(2, thread_name_prefix="unwatched") as pool:
        send = Send(sig, sig._snapshot.lookup(Shop), Shop, {}, None, robust)
        assert not monitoring.installed
        [(r, (sender, thread))] = _run.watched(send, pool)
    assert r is where and sender is Shop
    assert thread.startswith("unwatched")  # on the executor it was given


def test_a_monitored_send_that_times_out_reports_the_calls_it_never_began(
    recorder: Recorder,
) -> None:
    """``send`` raises at the deadline: the call it never began is reported
    timed out, as the engine left it, not merely "not begun"."""
    sig = Signal()
    sig.connect(slow := Reply("slow", delay=0.3))
    sig.connect(later := Reply("later"))
    with pytest.raises(TimeoutError):
        sig.using(None, timeout=0.1).send(Shop)
    (ended,) = recorder.ended
    assert isinstance(ended.error, TimeoutError)
    assert recorder.outcomes(sig) == ["timed out", "timed out"]
    del slow, later


def test_a_nested_submit_reports_the_executor_it_runs_on(recorder: Recorder) -> None:
    from concurrent.futures import ThreadPoolExecutor

    inner = Signal()
    inner.connect(Reply("inner"), weak=False)
    with ThreadPoolExecutor(1) as pool:

        def nested(**kw: Any) -> Any:
            return [v for _, v in inner.using(pool).submit(Shop).result(timeout=10)]

        outer = Signal()
        outer.connect(nested)
        assert [v for _, v in outer.using(pool).send(Shop)] == [["inner"]]
    (send,), _ = recorder.sends_of(inner)
    assert send.executor is pool


def test_a_monitored_inline_send_with_a_deadline_tells_the_context_the_error() -> None:
    sig = Signal()
    sig.connect(ok := Reply("ok"))
    sig.connect(bad := Fail("bad"))
    rec = Wrapping()
    monitoring.install(rec)
    try:
        result = sig.using(None, timeout=10).send_robust(Shop)
    finally:
        monitoring.uninstall(rec)
    assert result[0] == (ok, "ok") and result[1][0] is bad
    assert rec.contexts == ["enter", ("exit", None), "enter", ("exit", ValueError)]


def test_a_monitored_asend_that_times_out_reports_the_calls_it_never_began(
    recorder: Recorder,
) -> None:
    import asyncio

    sig = Signal()
    sig.connect(slow := Reply("slow", delay=0.3))
    sig.connect(later := Reply("later"))
    with pytest.raises(TimeoutError):
        asyncio.run(sig.using(None, timeout=0.1).asend(Shop))
    (ended,) = recorder.ended
    assert isinstance(ended.error, TimeoutError)
    assert recorder.outcomes(sig) == ["timed out", "timed out"]
    del slow, later


def test_a_call_that_fails_after_the_deadline_is_timed_out_with_its_error(
    recorder: Recorder,
) -> None:
    sig = Signal()
    sig.connect(late := Fail("late", delay=0.3))
    result = sig.using(None, timeout=0.1).send_robust(Shop)
    assert isinstance(result[0][1], TimeoutError)
    assert isinstance(result[0][1].__cause__, ValueError)
    (call,) = recorder.calls
    assert call.outcome == "timed out"
    assert isinstance(call.error, ValueError) and str(call.error) == "late"
    del late


@pytest.mark.parametrize("deadline", [None, 0.1], ids=["failure", "deadline"])
def test_an_async_call_the_send_cancelled_is_reported_as_its_close(
    recorder: Recorder, deadline: float | None
) -> None:
    """Cancelled because another call failed: "exception"; because the
    deadline passed: "timed out"."""
    import asyncio

    async def slow(signal: Any, sender: Any, **kw: Any) -> str:
        await asyncio.sleep(10)
        return "slow"

    async def fails(signal: Any, sender: Any, **kw: Any) -> str:
        raise ValueError("second")

    sig = Signal()
    sig.connect(slow)
    if deadline is None:
        sig.connect(fails)
    with pytest.raises(ValueError if deadline is None else TimeoutError):
        asyncio.run(sig.using(None, timeout=deadline).asend(Shop))
    if deadline is None:
        assert recorder.outcomes(sig) == ["exception", "exception"]
    else:
        assert recorder.outcomes(sig) == ["timed out"]
