"""The error policy (issue 24): ``errors="first"|"group"`` and
``on_error="cancel"|"continue"`` on ``Signal(...)`` and ``signal.using(...)``.

The tests taking ``backend`` run once per backend of ``tests/backends.py``
(inline, threads, processes, dask, asend, nested); their sends go through
``signal.using(executor, timeout=...)``, which keeps the signal's policy.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from concsignals import Failure, SendError, Signal
from concsignals import django as cdjango
from tests.backends import Backend
from tests.receivers import Fail, Halt, Reply, Shop, Stop, Trace
from tests.test_behaviour import release, stuck

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def executor(backend: Backend, request: pytest.FixtureRequest) -> Any:
    return backend.make(request, 4)


def send(
    backend: Backend, signal: Signal, executor: Any, timeout: float | None = None
) -> Any:
    return backend.send(signal, executor, timeout, Shop, {})


def raised(
    backend: Backend, signal: Signal, executor: Any, timeout: float | None = None
) -> SendError:
    with pytest.raises(SendError) as info:
        send(backend, signal, executor, timeout)
    return info.value


def full_traceback(err: BaseException) -> str:
    return "".join(traceback.format_exception(err))


class Counting:
    """Counts its calls (in this process); fails with ``error`` if given."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls = 0
        self.error = error

    def __call__(self, **named: Any) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return "counted"


# -- errors="group" on every backend -------------------------------------------


def test_group_holds_every_failure_in_connection_order(
    backend: Backend, executor: Any
) -> None:
    sig = Signal(errors="group")
    sig.connect(first := Fail("first", delay=0.3))  # fails last in parallel
    sig.connect(ok := Reply("ok"))
    sig.connect(second := Fail("second"))
    err = raised(backend, sig, executor)
    assert [e.args for e in err.exceptions] == [("first",), ("second",)]
    assert [f.receiver for f in err.failures] == [first, second]
    assert all(isinstance(f, Failure) for f in err.failures)
    assert [f.error for f in err.failures] == list(err.exceptions)
    assert [r for r, _ in err.results] == [first, ok, second]
    assert err.results[1][1] == "ok"
    assert err.results[0][1] is err.exceptions[0]
    for member, name in zip(err.exceptions, ("Fail('first')", "Fail('second')")):
        assert any(name in note for note in member.__notes__)
        assert "fail_deep" in full_traceback(member)  # the worker's frames kept
    assert "2 of the 3 receiver calls" in str(err)


def test_group_continue_runs_every_receiver(backend: Backend, executor: Any) -> None:
    sig = Signal(errors="group")  # on_error="continue" is the default
    sig.connect(fail := Fail("early"))
    sig.connect(later := Reply("later"))
    err = raised(backend, sig, executor)
    assert err.results == [(fail, err.exceptions[0]), (later, "later")]


def test_a_timeout_is_a_timeout_error_member(
    backend: Backend, executor: Any, tmp_path: Path
) -> None:
    sig = Signal(errors="group")
    sig.connect(fail := Fail("x"))
    sig.connect(slow := stuck(backend, tmp_path))
    try:
        err = raised(backend, sig, executor, timeout=0.5)
    finally:
        release(slow)
    assert [f.receiver for f in err.failures] == [fail, slow]
    assert isinstance(err.exceptions[0], ValueError)
    assert isinstance(err.exceptions[1], TimeoutError)
    assert "WaitForFile('slow')" in str(err.exceptions[1])


def test_a_base_exception_is_never_grouped(
    backend: Backend, executor: Any, tmp_path: Path
) -> None:
    sig = Signal(errors="group")
    sig.connect(fail := Fail("x"))
    sig.connect(halt := Halt(delay=0.2))
    sig.connect(trace := Trace(str(tmp_path / "slow"), delay=0.6))
    with pytest.raises(Stop) as info:
        send(backend, sig, executor)
    assert not isinstance(info.value, SendError)
    assert trace.ended() or not trace.began()  # after every begun call ended
    del fail, halt


def test_first_continue_runs_every_receiver_and_raises_the_earliest(
    backend: Backend, executor: Any
) -> None:
    sig = Signal(on_error="continue")  # errors="first"
    sig.connect(Fail("earliest", delay=0.2), weak=False)
    sig.connect(Reply("ok"), weak=False)
    sig.connect(Fail("last"), weak=False)  # runs though an earlier one failed
    with pytest.raises(ValueError, match="earliest") as info:
        send(backend, sig, executor)
    assert not isinstance(info.value, SendError)
    assert any("Fail('last')" in note for note in info.value.__notes__)


# -- on_error="cancel" -----------------------------------------------------------

CANCEL_WAYS = ["inline", "one-thread", "asend", "django", "django-asend"]


def send_with(way: str, sig: Signal, pool: ThreadPoolExecutor) -> Any:
    if way == "one-thread":
        return sig.using(pool).send(sender=None)
    if way in ("asend", "django-asend"):
        return asyncio.run(sig.asend(sender=None))
    return sig.send(sender=None)


@pytest.mark.parametrize("way", CANCEL_WAYS)
def test_group_cancel_stops_the_calls_not_begun(way: str) -> None:
    make = cdjango.Signal if way.startswith("django") else Signal
    sig = make(errors="group", on_error="cancel")
    fail, after = Counting(ValueError("stop")), Counting()
    sig.connect(fail)
    sig.connect(after)
    with ThreadPoolExecutor(1) as pool, pytest.raises(SendError) as info:
        send_with(way, sig, pool)
    assert after.calls == 0
    assert info.value.failures == [(fail, fail.error)]
    assert info.value.results == [(fail, fail.error)]


def test_group_cancel_keeps_the_failures_of_calls_already_begun() -> None:
    sig = Signal(errors="group", on_error="cancel")
    second_began = threading.Event()

    def first(**named: Any) -> None:
        assert second_began.wait(10)
        raise ValueError("first")

    def second(**named: Any) -> None:
        second_began.set()
        raise KeyError("second")

    after = Counting()
    for r in (first, second, after):
        sig.connect(r)
    with ThreadPoolExecutor(2) as pool, pytest.raises(SendError) as info:
        sig.using(pool).send(sender=None)
    assert [f.receiver for f in info.value.failures] == [first, second]
    assert after.calls == 0


# -- the group as Python users handle it -------------------------------------------


def test_except_star_splits_and_keeps_results() -> None:
    sig = Signal(errors="group")
    sig.connect(bad_value := Counting(ValueError("v")))
    sig.connect(ok := Counting())
    sig.connect(bad_key := Counting(KeyError("k")))
    caught: dict[str, BaseException] = {}
    try:
        sig.send(sender=None)
    except* ValueError as group:
        caught["value"] = group
    except* KeyError as group:
        caught["key"] = group
    value, key = caught["value"], caught["key"]
    assert isinstance(value, SendError) and isinstance(key, SendError)
    assert value.failures == [(bad_value, bad_value.error)]
    assert key.failures == [(bad_key, bad_key.error)]
    whole = [(bad_value, bad_value.error), (ok, "counted"), (bad_key, bad_key.error)]
    assert value.results == whole and key.results == whole


def test_submit_future_carries_the_send_error() -> None:
    sig = Signal()
    sig.connect(fail := Counting(ValueError("x")))
    sig.connect(ok := Counting())
    with ThreadPoolExecutor(2) as pool:
        err = sig.using(pool, errors="group").submit(sender=None).exception(10)
        assert isinstance(err, SendError)
        assert err.results == [(fail, fail.error), (ok, "counted")]
        # errors="first": submit stays robust, the failure in its slot
        robust = sig.using(pool).submit(sender=None).result(10)
    assert robust == [(fail, fail.error), (ok, "counted")]
    default = Signal(errors="group")
    default.connect(fail)
    assert isinstance(default.submit(sender=None).exception(10), SendError)


def test_send_robust_ignores_the_policy(caplog: pytest.LogCaptureFixture) -> None:
    sig = Signal(errors="group", on_error="cancel")
    sig.connect(fail := Counting(ValueError("x")))
    sig.connect(ok := Counting())
    with caplog.at_level(logging.ERROR, logger="concsignals"):
        result = sig.send_robust(sender=None)
        aresult = asyncio.run(sig.asend_robust(sender=None))
    assert result == aresult == [(fail, fail.error), (ok, "counted")]
    assert len(caplog.records) == 2


def test_a_view_overrides_the_signals_policy() -> None:
    sig = Signal(errors="group")
    sig.connect(fail := Counting(ValueError("x")))
    sig.connect(ok := Counting())
    with pytest.raises(ValueError, match="x") as info:
        sig.using(errors="first").send(sender=None)  # on_error: cancel again
    assert not isinstance(info.value, SendError) and ok.calls == 0
    with pytest.raises(SendError):
        sig.using(on_error="cancel").send(sender=None)  # errors: the signal's
    assert ok.calls == 0
    assert "errors='group' on_error='cancel'" in repr(sig.using(on_error="cancel"))
    assert sig.using(None).executor is None


def test_django_signal_keeps_its_order_with_the_policy() -> None:
    sig = cdjango.Signal(errors="group")
    calls: list[str] = []

    async def async_fail(**named: Any) -> None:
        calls.append("async")
        raise KeyError("async")

    def sync_fail(**named: Any) -> None:
        calls.append("sync")
        raise ValueError("sync")

    def sync_ok(**named: Any) -> str:
        calls.append("ok")
        return "ok"

    for r in (async_fail, sync_fail, sync_ok):
        sig.connect(r)
    for make in (lambda: sig.send(sender=None), lambda: asyncio.run(sig.asend(None))):
        calls.clear()
        with pytest.raises(SendError) as info:
            make()
        assert sorted(calls) == ["async", "ok", "sync"]  # every receiver ran
        # Django's order: the sync receivers first, then the async ones.
        assert [f.receiver for f in info.value.failures] == [sync_fail, async_fail]
        assert [r for r, _ in info.value.results] == [sync_fail, sync_ok, async_fail]


def test_bad_policy_values_are_refused() -> None:
    with pytest.raises(ValueError, match="errors must be 'first' or 'group', not 'all'"):
        Signal(errors="all")
    sig = Signal()
    with pytest.raises(
        ValueError, match="on_error must be 'cancel' or 'continue', not 'stop'"
    ):
        sig.using(on_error="stop")
    with pytest.raises(ValueError, match="errors"):
        cdjango.Signal(errors="everything")


# -- the members are the failed slots -------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    fails=st.lists(st.booleans(), max_size=10),
    cancel=st.booleans(),
    pooled=st.booleans(),
)
def test_members_are_exactly_the_failed_slots_in_order(
    fails: list[bool], cancel: bool, pooled: bool
) -> None:
    sig = Signal(errors="group", on_error="cancel" if cancel else "continue")
    receivers = [Counting(ValueError(i) if f else None) for i, f in enumerate(fails)]
    for r in receivers:
        sig.connect(r)
    with ThreadPoolExecutor(1) as pool:
        view = sig.using(pool if pooled else None)
        try:
            results = view.send(sender=None)
        except SendError as err:
            results = err.results
            failed = [r for r in receivers if r.error is not None]
            if cancel:
                failed = failed[:1]  # one worker: nothing after it begins
            assert [f.receiver for f in err.failures] == failed
            assert list(err.exceptions) == [r.error for r in failed]
        else:
            assert not any(fails)
    made = receivers[: fails.index(True) + 1] if cancel and any(fails) else receivers
    assert [r for r, _ in results] == made
    assert [r.calls for r in receivers] == [int(r in made) for r in receivers]
