"""A Hypothesis state machine for the send side (issue 10).

Sends with deadlines and failing receivers, on random backends (inline,
threads, a nested send on a saturated pool, asend, asend on threads), check
two promises on every send:

* no call of a send begins after the send has returned or raised (so none
  begins after it closed: closing happens before returning);
* a send without a deadline returns (or raises) only when every call it
  began has ended.  (At a deadline a running thread cannot be stopped: its
  slot says so, and only then may it outlive the send.)

Every receiver writes ``begin``/``end`` events, with the send's id, to one
log under a lock; the send writes ``return``.  The order of the log is the
order things happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from concsignals import Signal

BACKENDS = ["inline", "threads", "nested", "asend", "asend+threads"]


class Log:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, int, int]] = []
        self.current = threading.local()

    def add(self, what: str, send_id: int, slot: int) -> None:
        with self.lock:
            self.events.append((what, send_id, slot))


class Recv:
    """Logs its begin and end; sleeps ``delay``; fails if ``fails``."""

    def __init__(self, log: Log, slot: int, delay: float, fails: bool) -> None:
        self.log, self.slot, self.delay, self.fails = log, slot, delay, fails

    def __call__(self, send_id: int, **kw: Any) -> int:
        self.log.add("begin", send_id, self.slot)
        try:
            time.sleep(self.delay)
            if self.fails:
                raise ValueError(f"slot {self.slot}")
            return self.slot
        finally:
            self.log.add("end", send_id, self.slot)


class JitterPool(ThreadPoolExecutor):
    """Each job waits a moment after a worker took it and before it runs:
    the window in which a send may close under a taken job."""

    def __init__(self, workers: int, name: str) -> None:
        super().__init__(workers, thread_name_prefix=name)
        self.rng = random.Random(0)

    def submit(self, fn: Any, /, *args: Any, **kw: Any) -> Any:
        pause = self.rng.choice([0.0, 0.0, 0.002, 0.01])

        def job() -> Any:
            time.sleep(pause)
            return fn(*args, **kw)

        return super().submit(job)


class SendMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.log = Log()
        self.sig = Signal()
        self.receivers: list[Recv] = []
        self.pool = JitterPool(2, "machine")
        self.one = JitterPool(1, "machine-one")
        self.ids = itertools.count()
        self.deadlines: dict[int, bool] = {}

    @rule(
        delay=st.sampled_from([0.0, 0.001, 0.005]),
        fails=st.booleans(),
    )
    def connect(self, delay: float, fails: bool) -> None:
        if len(self.receivers) < 5:
            r = Recv(self.log, len(self.receivers), delay, fails)
            self.receivers.append(r)
            self.sig.connect(r, weak=False)

    @rule(
        backend=st.sampled_from(BACKENDS),
        timeout=st.sampled_from([None, None, 0.0, 0.002, 0.02]),
        robust=st.booleans(),
    )
    def send(self, backend: str, timeout: float | None, robust: bool) -> None:
        send_id = next(self.ids)
        self.deadlines[send_id] = timeout is not None
        with contextlib.suppress(ValueError, TimeoutError):
            self._send(backend, timeout, robust, send_id)
        self.log.add("return", send_id, -1)

    def _send(
        self, backend: str, timeout: float | None, robust: bool, send_id: int
    ) -> Any:
        ex = {"threads": self.pool, "asend+threads": self.pool, "nested": self.one}
        view = self.sig.using(ex.get(backend), timeout=timeout)
        if backend.startswith("asend"):
            coro = view.asend_robust if robust else view.asend
            return asyncio.run(coro(None, send_id=send_id))
        if backend == "nested":
            outer = Signal()
            method = view.send_robust if robust else view.send
            outer.connect(lambda **kw: method(None, send_id=send_id), weak=False)
            return outer.using(self.one).send(None)
        return (view.send_robust if robust else view.send)(None, send_id=send_id)

    @invariant()
    def no_call_begins_after_its_send_returned(self) -> None:
        with self.log.lock:
            events = list(self.log.events)
        returned: set[int] = set()
        for what, send_id, _ in events:
            if what == "return":
                returned.add(send_id)
            elif what == "begin":
                assert send_id not in returned, f"send {send_id} began a call late"

    @invariant()
    def a_send_without_deadline_returns_after_its_calls_ended(self) -> None:
        with self.log.lock:
            events = list(self.log.events)
        running: dict[int, set[int]] = {}
        for what, send_id, slot in events:
            if what == "begin":
                running.setdefault(send_id, set()).add(slot)
            elif what == "end":
                running[send_id].discard(slot)
            elif not self.deadlines[send_id]:
                assert not running.get(send_id), f"send {send_id} left calls"

    def teardown(self) -> None:
        self.pool.shutdown(wait=True)
        self.one.shutdown(wait=True)
        self.no_call_begins_after_its_send_returned()


SendMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSendMachine = SendMachine.TestCase
TestSendMachine = pytest.mark.timeout(300)(TestSendMachine)
