"""The backends the behaviour suite (``test_behaviour.py``) runs on.

A backend is one way of running a send: inline, on threads, on processes, on
a dask cluster.  ``BACKENDS`` lists them; the ``backend`` fixture in
``conftest.py`` parametrizes every behaviour test over the list, so each
promise is proven on each backend.

To add one, append a :class:`Backend`:

* ``name``: the test id;
* ``make(request, workers)``: the executor for one test (``None`` = inline);
  get shared pools with ``request.getfixturevalue(...)``, or create one and
  ``request.addfinalizer(pool.shutdown)``;
* ``send`` / ``send_robust(signal, executor, timeout, sender, named)``: one
  send through that executor.  The defaults use ``signal.using(executor,
  timeout=timeout).send(...)``; an async backend wraps ``asend`` in
  ``asyncio.run`` instead;
* ``broken(request)``: an executor of that kind that is shut down (``None``:
  the backend has no executor to fail);
* ``parallel``: receivers of one send overlap in time;
* ``shares_memory``: receivers run in the test's own process, so they may
  close over test state and disconnect receivers while a send runs.

Receivers for backends without shared memory must be picklable: use
``tests.receivers``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from concsignals import Signal

Responses = list[tuple[Any, Any]]
SendFn = Callable[
    [Signal, "Executor | None", "float | None", Any, dict[str, Any]], Responses
]


def plain_send(
    signal: Signal,
    executor: Executor | None,
    timeout: float | None,
    sender: Any,
    named: dict[str, Any],
) -> Responses:
    return signal.using(executor, timeout=timeout).send(sender, **named)


def plain_send_robust(
    signal: Signal,
    executor: Executor | None,
    timeout: float | None,
    sender: Any,
    named: dict[str, Any],
) -> Responses:
    return signal.using(executor, timeout=timeout).send_robust(sender, **named)


@dataclass(frozen=True)
class Backend:
    name: str
    make: Callable[[pytest.FixtureRequest, int], Executor | None]
    parallel: bool
    shares_memory: bool
    send: SendFn = plain_send
    send_robust: SendFn = plain_send_robust
    broken: Callable[[pytest.FixtureRequest], Executor | None] = lambda r: None
    is_async: bool = False

    def __repr__(self) -> str:
        return self.name


def no_executor(request: pytest.FixtureRequest, workers: int) -> None:
    return None


def thread_pool(request: pytest.FixtureRequest, workers: int) -> Executor:
    pool = ThreadPoolExecutor(workers, thread_name_prefix="test-backend")
    request.addfinalizer(pool.shutdown)
    return pool


def process_pool(request: pytest.FixtureRequest, workers: int) -> Executor:
    """The session's 2-process pool (``workers`` is ignored: processes are dear)."""
    pool: Executor = request.getfixturevalue("process_pool")
    return pool


def dask_executor(request: pytest.FixtureRequest, workers: int) -> Executor:
    """An executor on the session's 2-worker dask LocalCluster."""
    ex: Executor = request.getfixturevalue("dask_executor")
    return ex


def shut_threads(request: pytest.FixtureRequest) -> Executor:
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    return pool


def shut_processes(request: pytest.FixtureRequest) -> Executor:
    pool = ProcessPoolExecutor(1)
    pool.shutdown()
    return pool


def shut_dask(request: pytest.FixtureRequest) -> Executor:
    ex: Executor = request.getfixturevalue("dask_client").get_executor()
    ex.shutdown(wait=False)
    return ex


BACKENDS: list[Backend] = [
    Backend("inline", no_executor, parallel=False, shares_memory=True),
    Backend("threads", thread_pool, True, True, broken=shut_threads),
    Backend("processes", process_pool, True, False, broken=shut_processes),
    Backend("dask", dask_executor, True, False, broken=shut_dask),
]


# -- the same sends through asend (issue 4) ----------------------------------


def asend(
    signal: Signal,
    executor: Executor | None,
    timeout: float | None,
    sender: Any,
    named: dict[str, Any],
) -> Responses:
    view = signal.using(executor, timeout=timeout)
    return asyncio.run(view.asend(sender, **named))


def asend_robust(
    signal: Signal,
    executor: Executor | None,
    timeout: float | None,
    sender: Any,
    named: dict[str, Any],
) -> Responses:
    view = signal.using(executor, timeout=timeout)
    return asyncio.run(view.asend_robust(sender, **named))


# Without an executor, asend runs a send's sync receivers one after another in
# one worker thread: not parallel.
BACKENDS += [
    Backend("asend", no_executor, False, True, asend, asend_robust, is_async=True),
    Backend(
        "asend+threads",
        thread_pool,
        True,
        True,
        asend,
        asend_robust,
        broken=shut_threads,
        is_async=True,
    ),
    Backend(
        "asend+processes",
        process_pool,
        True,
        False,
        asend,
        asend_robust,
        broken=shut_processes,
        is_async=True,
    ),
]


# -- nested: the send is made by a receiver running on the pool it sends
# through, a pool of one worker (saturated: the sender is its only worker) ----


def one_worker(request: pytest.FixtureRequest, workers: int) -> Executor:
    return thread_pool(request, 1)


def relay(
    robust: bool,
    signal: Signal,
    executor: Executor | None,
    timeout: float | None,
    sender: Any,
    named: dict[str, Any],
) -> Responses:
    """Send from inside a receiver that concsignals runs on ``executor``."""
    view = signal.using(executor, timeout=timeout)
    outer = Signal()

    def inner(**kw: Any) -> Responses:
        if robust:
            return view.send_robust(sender, **named)
        return view.send(sender, **named)

    outer.connect(inner, weak=False)
    [(_, result)] = outer.using(executor).send(None)
    return result  # type: ignore[no-any-return]


BACKENDS += [
    Backend(
        "nested",
        one_worker,
        False,
        True,
        functools.partial(relay, False),
        functools.partial(relay, True),
    ),
]
