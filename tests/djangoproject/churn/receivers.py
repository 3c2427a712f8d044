"""Receivers connected and disconnected while requests run.

Each generation ``gen`` is three fresh receivers, one per signal; each writes
a :class:`Call` through the ORM (the async one through ``acreate``: its
``sync_to_async`` must come back to the right thread) with the time its call
began, on ``time.monotonic_ns()``, which every process of the machine shares.
"""

import threading
import time
from typing import Any

from django.core.signals import request_finished, request_started
from django.db.models.signals import post_save

from .models import Call, Hit

_lock = threading.Lock()  # guards _held only; no receiver runs under it
_held: dict[int, tuple[Any, Any, Any]] = {}


def _request_key(kwargs: dict[str, Any]) -> str:
    environ = kwargs.get("environ")
    if environ is not None:
        return str(environ.get("HTTP_X_REQ", ""))
    headers = dict(kwargs["scope"].get("headers", []))
    return headers.get(b"x-req", b"").decode()


def make(gen: int) -> tuple[Any, Any, Any]:
    def on_started(sender: Any, **kwargs: Any) -> None:
        t = time.monotonic_ns()
        Call.objects.create(gen=gen, signal="started", key=_request_key(kwargs), t=t)

    async def on_finished(sender: Any, **kwargs: Any) -> None:
        t = time.monotonic_ns()
        await Call.objects.acreate(gen=gen, signal="finished", key="", t=t)

    def on_saved(sender: Any, instance: Hit, **kwargs: Any) -> None:
        t = time.monotonic_ns()
        Call.objects.create(gen=gen, signal="post_save", key=str(instance.pk), t=t)

    return on_started, on_finished, on_saved


def connect(gen: int) -> int:
    """Connect generation ``gen``; return the time connect returned."""
    started, finished, saved = receivers = make(gen)
    with _lock:
        _held[gen] = receivers
    request_started.connect(started)
    request_finished.connect(finished)
    post_save.connect(saved, sender=Hit)
    return time.monotonic_ns()


def disconnect(gen: int) -> tuple[int, int]:
    """Disconnect generation ``gen``; return when it began and when it returned.

    With ``wait=True``: a call that passed its gate before the disconnect
    has also ended by ``done``, so the time a receiver takes when its call
    runs is before ``done`` (without it, a call begun in time may read its
    clock after ``done`` and look late)."""
    with _lock:
        started, finished, saved = _held.pop(gen)
    begun = time.monotonic_ns()
    ok = [
        request_started.disconnect(started, wait=True, timeout=30),
        request_finished.disconnect(finished, wait=True, timeout=30),
        post_save.disconnect(saved, sender=Hit, wait=True, timeout=30),
    ]
    done = time.monotonic_ns()
    if not all(ok):
        raise RuntimeError(f"generation {gen} was not connected: {ok}")
    return begun, done
