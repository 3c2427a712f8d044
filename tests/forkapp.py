"""A WSGI app for ``test_gunicorn.py``: signals through a preload-and-fork server.

gunicorn ``--preload`` imports this once, in the master, then forks the
workers.  At import it connects receivers, uses ``submit()`` (so the owned pool
and its threads exist before the fork), and starts a thread that connects and
disconnects in a loop until the master has forked every worker
(``FORKAPP_WORKERS``), so a worker is likely forked in the middle of a write.

Every request then writes (disconnects the churner, connects and disconnects a
receiver of its own), and sends with ``send``, ``send_robust`` and ``submit()``.
The JSON body reports the results; the test checks every one.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from concsignals import Signal

request_seen = Signal()
MASTER = os.getpid()


class Refused:
    """The sender for which ``refuse`` is connected (a sender route)."""


def greet(**kwargs: Any) -> str:
    return "hello"


def worker_pid(**kwargs: Any) -> int:
    return os.getpid()


def refuse(**kwargs: Any) -> str:
    raise LookupError("refused")


def churner(**kwargs: Any) -> str:
    return "churner"


request_seen.connect(greet)
request_seen.connect(worker_pid)
request_seen.connect(refuse, sender=Refused)
request_seen.submit(sender=None).result(timeout=10)

# -- writes while the master forks ----------------------------------------------

_forks_to_see = int(os.environ.get("FORKAPP_WORKERS", "1"))
_all_forked = threading.Event()
_forks_seen = 0


def _count_fork() -> None:  # in the master, after each fork
    global _forks_seen
    _forks_seen += 1
    if _forks_seen >= _forks_to_see:
        _all_forked.set()


def _churn() -> None:
    for _ in range(10_000_000):  # bounded, in case the master never forks
        if _all_forked.is_set():
            return
        request_seen.connect(churner)
        request_seen.disconnect(churner)


os.register_at_fork(after_in_parent=_count_fork)
threading.Thread(target=_churn, name="forkapp-churn", daemon=True).start()

# -- the app --------------------------------------------------------------------


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Write, then send every way; answer the results as JSON."""
    request_seen.disconnect(churner)  # hangs if the fork left the lock held

    class ThisRequest:
        """A sender of this request's own."""

    def mine(**kwargs: Any) -> str:
        return "mine"

    request_seen.connect(mine, sender=ThisRequest)
    sent = request_seen.send(sender=ThisRequest)
    request_seen.disconnect(mine, sender=ThisRequest)
    robust = request_seen.send_robust(sender=Refused)
    submitted = request_seen.submit(sender=None).result(timeout=10)
    body = {
        "master": MASTER,
        "pid": os.getpid(),
        "send": [r for _, r in sent],
        "send_robust": [repr(r) if isinstance(r, Exception) else r for _, r in robust],
        "submit": [r for _, r in submitted],
    }
    data = json.dumps(body).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]
