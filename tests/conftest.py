"""Shared fixtures.  Other test modules may add theirs here."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import pytest

from tests import cluster
from tests.backends import BACKENDS, Backend


@pytest.fixture
def switch_often() -> Iterator[None]:
    """Force thread switches every microsecond for the test."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.fixture(scope="session")
def process_pool() -> Iterator[Executor]:
    """Two worker processes, shared by the session (starting them is slow)."""
    # forkserver: workers do not inherit the test process's threads and locks.
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        pool.submit(int).result()  # start them now, outside any test's deadline
        yield pool


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Any]:
    """A real dask cluster: 2 worker processes of 1 thread on loopback."""
    why = "dask.distributed is not installed (extra concsignals[dask])"
    pytest.importorskip("distributed", reason=why)
    with cluster.dask_client(2) as client:
        yield client


@pytest.fixture
def dask_executor(dask_client: Any) -> Executor:
    executor: Executor = dask_client.get_executor()
    return executor


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend of ``tests/backends.py`` in turn."""
    b: Backend = request.param
    return b


# -- pytest-run-parallel ---------------------------------------------------------
# CI runs the core tests with pytest-run-parallel on free-threaded Python: each
# test body in several threads at once, sharing the test's fixtures.  These
# tests cannot run that way, for the reason given (the plugin prints it and
# runs them in one thread).

#: Fixtures that make a test thread-unsafe, and why.
THREAD_UNSAFE_FIXTURES = {
    "caplog": "caplog collects the log records of every thread: each copy of "
    "the test would count the others' records",
}

#: Tests that cannot run in several threads at once, and why.
THREAD_UNSAFE_TESTS = {
    "test_send_raises_the_earliest_failure_in_connection_order": "the copies "
    "share the test's 4-worker pool: it needs a later receiver to have begun "
    "before the earliest fails, and the other copies' calls fill the pool",
    "test_robust_deadline_puts_timeout_errors_in_unfinished_slots": "the "
    "copies share the test's 4-worker pool: their stuck receivers fill it, "
    "so a copy's last receiver cannot begin before its deadline",
    "test_the_earliest_slot_decides_with_a_deadline_and_a_failure": "the "
    "copies share the test's 4-worker pool and its deadline: on 2 cores the "
    "other copies' calls can hold a copy's receivers past it",
    "test_a_call_that_overruns_the_deadline_times_the_send_out": "the copies "
    "share the test's pool and deadline, as above",
    "test_senders_racing_writers_see_whole_connections_in_order": "it needs "
    "a minimum of checked sends in a fixed time, which copies sharing 2 cores "
    "split between them",
    "test_a_write_by_the_garbage_collector_during_a_write_is_not_lost": "it "
    "sets the collector's thresholds and callbacks and turns it off and on, "
    "all process-wide",
}


def pytest_configure(config: pytest.Config) -> None:
    # Known to --strict-markers where pytest-run-parallel is not installed.
    config.addinivalue_line(
        "markers", "thread_unsafe(reason): not to be run in several threads at once"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        name = getattr(item, "originalname", item.name)
        reason = THREAD_UNSAFE_TESTS.get(name)
        for fixture, why in THREAD_UNSAFE_FIXTURES.items():
            if reason is None and fixture in getattr(item, "fixturenames", ()):
                reason = why
        if reason is not None:
            item.add_marker(pytest.mark.thread_unsafe(reason=reason))
