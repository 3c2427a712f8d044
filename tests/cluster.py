"""A real Dask cluster on loopback, for the tests that run receivers on one."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def dask_client(workers: int) -> Iterator[Any]:
    """A client of a ``LocalCluster`` of ``workers`` processes of 1 thread,
    every worker up.  Raises ``ImportError`` without ``dask.distributed``
    (the extra concsignals[dask])."""
    import dask
    from distributed import Client, LocalCluster

    # No profiler: its thread walks the frames of other running threads
    # (sys._current_frames()), which crashes the free-threaded 3.13 build
    # (CPython issue 152355); our tests do not need it anywhere.
    with (
        dask.config.set({"distributed.worker.profile.enabled": False}),
        LocalCluster(
            processes=True,
            n_workers=workers,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=":0",  # a free port: None still binds 8787
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(workers)
        yield client
