"""Shared fixtures.  Other test modules may add theirs here."""

from __future__ import annotations

import logging
import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import pytest

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
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        pytest.skip("dask.distributed is not installed (extra concsignals[dask])")
    # No profiler: its thread walks the frames of other running threads
    # (sys._current_frames()), which crashes the free-threaded 3.13 build
    # (CPython issue 152355); our tests do not need it anywhere.
    with (
        dask.config.set({"distributed.worker.profile.enabled": False}),
        LocalCluster(
            processes=True,
            n_workers=2,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=":0",  # a free port: None still binds 8787
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2)
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
