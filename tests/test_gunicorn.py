"""A real preload-and-fork server: gunicorn ``--preload`` serving ``forkapp.py``.

The master imports the app (receivers connected, ``submit()`` used, a thread
writing in a loop), then forks the workers; each request writes, and sends
with ``send``, ``send_robust`` and ``submit()`` in a worker.  Everything runs on
127.0.0.1 (a port the kernel picks), with a bounded number of requests, and
every response is checked.  gunicorn is stopped with SIGTERM and must exit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "gunicorn", reason="gunicorn is not installed (extra concsignals[test])"
)
pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="gunicorn forks"),
    pytest.mark.slow,
    pytest.mark.timeout(90),  # start, requests, stop: room for a loaded machine
]

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 3
REQUESTS = 24
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
#: Only loopback, and never through a proxy the environment may name.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(params=["sync", "gthread"])
def server(request: pytest.FixtureRequest) -> Iterator[int]:
    """gunicorn --preload on 127.0.0.1:0 with WORKERS workers; yields the port.

    Stops it with SIGTERM at the end and fails if it does not exit.
    """
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--preload",
        f"--workers={WORKERS}",
        f"--worker-class={request.param}",
        "--threads=2",
        "--bind=127.0.0.1:0",
        "--timeout=30",
        "--graceful-timeout=5",
        f"--chdir={ROOT}",
        "tests.forkapp:app",
    ]
    env = {**os.environ, "FORKAPP_WORKERS": str(WORKERS), "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(command, env=env, stderr=log, stdout=log)
        try:
            yield _port_from(log, proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail("gunicorn did not exit on SIGTERM")
            assert proc.returncode == 0, _tail(log)


def _port_from(log: Any, proc: subprocess.Popen[bytes]) -> int:
    """The port gunicorn logs once it listens (it binds before forking)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log.seek(0)
        found = LISTENING.search(log.read())
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"gunicorn did not start listening:\n{_tail(log)}")


def _tail(log: Any) -> str:
    log.seek(0)
    return "".join(log.readlines()[-30:])


def get(port: int, path: str) -> dict[str, Any]:
    with OPENER.open(f"http://127.0.0.1:{port}{path}", timeout=20) as response:
        assert response.status == 200
        body: dict[str, Any] = json.loads(response.read())
        return body


def test_preloaded_signals_send_robust_and_submit_in_every_forked_worker(
    server: int,
) -> None:
    with ThreadPoolExecutor(4) as clients:
        bodies = list(clients.map(lambda n: get(server, f"/{n}"), range(REQUESTS)))
    assert len(bodies) == REQUESTS
    for body in bodies:
        pid = body["pid"]
        assert pid != body["master"], "served by the master, not a forked worker"
        assert body == {
            "master": body["master"],
            "pid": pid,
            "send": ["hello", pid, "mine"],
            "send_robust": ["hello", pid, "LookupError('refused')"],
            "submit": ["hello", pid],
        }
