"""End to end: Django's signals on concsignals under gunicorn and uvicorn.

``tests/djangoproject`` (``install()`` in its wsgi.py/asgi.py) is served on a
free loopback port.  Two client threads drive ``/hit`` requests while the
test connects and disconnects generations of receivers on request_started,
request_finished and post_save through ``/connect`` and ``/disconnect``,
which other server threads handle.  Each receiver writes a row through the
ORM with the time its call began.  All times are ``time.monotonic_ns()``, one
clock for every process of the machine.

Verdict, from the rows:

* none called after its disconnect returned;
* none missing: a request sent after a generation's connect returned, whose
  response arrived before that generation's disconnect began, called its
  request_started and post_save receivers (both sends end before the
  response is written);
* no error: every response is 200 and the server logged no traceback.

And a receiver connected with ``on_commit=True`` (``/ship``, an atomic
request) runs after the request's transaction committed, and not at all
when the view raises.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
GENERATIONS = 6
MAX_REQUESTS = 400  # per client thread: the bound, reached only if churn stalls

pytestmark = pytest.mark.slow
pytest.importorskip("django", reason="needs Django: the dev extra, .[dev]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(db: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CONCSIGNALS_TEST_DB": str(db),
        "DJANGO_SETTINGS_MODULE": "tests.djangoproject.settings",
        "PYTHONPATH": str(ROOT),
    }


def commands(port: int) -> dict[str, list[str]]:
    bind = f"127.0.0.1:{port}"
    return {
        "gunicorn": [
            *("-m", "gunicorn", "-k", "gthread", "--threads", "4", "-w", "1"),
            # a loaded machine must not get the worker killed as unresponsive
            *("--timeout", "120"),
            *("-b", bind, "tests.djangoproject.wsgi:application"),
        ],
        "uvicorn": [
            *("-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)),
            *("--lifespan", "off", "tests.djangoproject.asgi:application"),
        ],
    }


@pytest.fixture(params=["gunicorn", "uvicorn"])
def server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[int, Path]]:
    pytest.importorskip(request.param, reason=f"needs {request.param}: .[dev]")
    db = tmp_path / "db.sqlite3"
    env = env_for(db)
    subprocess.run(
        [sys.executable, "-m", "tests.djangoproject.manage", "migrate", "--run-syncdb"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=50,
    )
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, *commands(port)[request.param]],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_listening(port, proc, log)
        yield port, db
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Traceback" not in text, text


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Start-up only: poll until the server accepts, it exits, or 40 s pass."""
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"server did not listen on {port}: {log.read_text()}")


def get(port: int, path: str, **headers: str) -> Any:
    """One request on a fresh connection (an idle keep-alive one may be closed
    by the server: gunicorn's keep-alive is 2 s, long on a loaded machine)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 200, (path, response.status, body[:2000])
    return json.loads(body)


class Clients:
    """Client threads sending ``/hit`` until told to stop (or the bound)."""

    def __init__(self, port: int, threads: int = 2) -> None:
        self.port = port
        self.done = 0
        self.errors: list[BaseException] = []
        self.requests: list[dict[str, Any]] = []
        self.progress = threading.Condition()  # guards done, requests, errors
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self.drive, args=(i,)) for i in range(threads)
        ]
        for t in self.threads:
            t.start()

    def drive(self, index: int) -> None:
        try:
            for n in range(MAX_REQUESTS):
                if self.stop.is_set():
                    return
                key = f"{index}-{n}"
                sent = time.monotonic_ns()
                body = get(self.port, "/hit", **{"X-Req": key})
                received = time.monotonic_ns()
                with self.progress:
                    self.requests.append(
                        {**body, "key": key, "sent": sent, "received": received}
                    )
                    self.done += 1
                    self.progress.notify_all()
        except BaseException as err:
            with self.progress:
                self.errors.append(err)
                self.progress.notify_all()

    def wait_for(self, more: int) -> None:
        """Until ``more`` further requests have completed."""
        with self.progress:
            target = self.done + more
            ok = self.progress.wait_for(
                lambda: self.done >= target or self.errors, timeout=50
            )
        assert ok and not self.errors, self.errors

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=50)
        assert not self.errors, self.errors


def test_receivers_churn_under_a_real_server(server: tuple[int, Path]) -> None:
    port, db = server
    clients = Clients(port)
    gens: dict[int, dict[str, int]] = {}
    try:
        for gen in range(GENERATIONS):
            gens[gen] = get(port, f"/connect/{gen}")
            clients.wait_for(6)
            gens[gen].update(get(port, f"/disconnect/{gen}"))
            clients.wait_for(2)
    finally:
        clients.finish()
    with sqlite3.connect(db) as conn:
        calls = conn.execute("SELECT gen, signal, key, t FROM churn_call").fetchall()
    check(calls, gens, clients.requests)


def status_of(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    return response.status


def test_an_on_commit_receiver_runs_after_the_requests_commit(
    server: tuple[int, Path],
) -> None:
    port, db = server
    assert get(port, "/ship/kept") == {"saved": "kept"}
    assert status_of(port, "/ship/dropped?fail=1") == 404  # raised: rolled back
    with sqlite3.connect(db) as conn:
        notices = conn.execute("SELECT key, in_atomic, committed FROM churn_notice")
        shipped = conn.execute("SELECT key FROM churn_shipped")
        # once, out of the transaction, seeing its row committed; none for
        # the request that rolled back
        assert notices.fetchall() == [("kept", 0, 1)]
        assert shipped.fetchall() == [("kept",)]


def check(
    calls: list[tuple[int, str, str, int]],
    gens: dict[int, dict[str, int]],
    requests: list[dict[str, Any]],
) -> None:
    late = [c for c in calls if c[3] > gens[c[0]]["done"]]
    assert not late, f"called after disconnect returned: {late}"
    made = {(g, s, k) for g, s, k, _ in calls}
    checked = {"started": 0, "post_save": 0}
    missing = []
    for r in requests:
        for gen, times in gens.items():
            for sig, key, since in (
                ("started", r["key"], r["sent"]),
                ("post_save", str(r["pk"]), r["before_save"]),
            ):
                if since > times["connected"] and r["received"] < times["begun"]:
                    checked[sig] += 1
                    if (gen, sig, key) not in made:
                        missing.append((gen, sig, key))
    assert not missing, f"receivers not called: {missing}"
    assert all(checked.values()), f"nothing to check: {checked}"
    assert any(s == "finished" for _, s, _, _ in calls)
