"""Monitors' context managers around one call, whose errors never reach it.

Used on both sides of a call: in this process around a monitored receiver
call (what ``call_began`` returned), and in a worker process around a pickled
call (the monitors' *carriers*, see ``executors.call_pickled``).  This module
imports nothing of concsignals: the engine, the monitors and the worker side
all point down to it.

A monitor's error is logged on logger ``concsignals`` once per monitor (per
process), never raised: the call runs, and its outcome is unchanged.  In a
worker, where each call unpickles its carriers anew, "once" is per carrier
type.

Locking rules: ``_broken_lock`` guards ``_broken`` (check and mark are one
step, so two threads that fail at once log once); nothing else runs under it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

#: ``(owner, context manager)``: the owner is named if the manager fails.
Managed = list[tuple[object, Any]]

#: ``id(owner)`` -> what gives the owner back while it lives.  An ``id()`` is
#: reused once its object is gone, so the check is by identity, and a dead
#: owner's entry goes with it: a new monitor at the old address is logged.
_broken: dict[int, Callable[[], object]] = {}
_broken_lock = threading.Lock()


def _first_failure(key: object) -> bool:
    """Mark ``key`` as failed; whether it was the first time."""
    k = id(key)
    with _broken_lock:
        seen = _broken.get(k)
        if seen is not None and seen() is key:
            return False
        try:
            _broken[k] = weakref.ref(key, partial(_forget, k))
        except TypeError:  # not weakly referable: kept, so its id stays its own
            _broken[k] = partial(_same, key)
        return True


def _forget(k: int, _ref: object) -> None:
    _broken.pop(k, None)


def _same(key: object) -> object:
    return key


def report(owner: object, what: str, err: Exception, key: object = None) -> None:
    """Log a monitor's failure, once per monitor (``key``: what counts as the
    same one, ``owner`` unless given)."""
    if not _first_failure(owner if key is None else key):
        return
    import logging  # only when a monitor failed: keeps ``import concsignals`` light

    logging.getLogger("concsignals").error(
        "Monitor %r failed in %s (%s); its later failures are not logged",
        owner,
        what,
        err,
        exc_info=err,
    )


def _key(owner: object, cm: object) -> object:
    """A carrier in a worker is its own owner, new with each call: its type
    counts as the monitor."""
    return type(cm) if owner is cm else owner


def enter_all(managers: Iterable[tuple[object, Any]]) -> Managed:
    """Enter each manager; those entered, to hand to :func:`exit_all`."""
    entered: Managed = []
    for owner, cm in managers:
        try:
            cm.__enter__()
        except Exception as err:
            report(owner, "entering its context", err, _key(owner, cm))
        else:
            entered.append((owner, cm))
    return entered


def exit_all(entered: Managed, err: BaseException | None) -> None:
    """Exit what :func:`enter_all` entered, innermost first, telling each of
    ``err``; never suppress it, never raise."""
    info = (None, None, None) if err is None else (type(err), err, err.__traceback__)
    for owner, cm in reversed(entered):
        try:
            cm.__exit__(*info)
        except Exception as exc:
            report(owner, "exiting its context", exc, _key(owner, cm))


def unpickle_all(blobs: Sequence[bytes]) -> Managed:
    """In a worker: the carriers that came with a call.  One that cannot be
    unpickled here (its package is not installed in the worker, say) is
    skipped: the call runs anyway."""
    import pickle

    managers: Managed = []
    for blob in blobs:
        try:
            cm = pickle.loads(blob)
        except Exception as err:
            report(unpickle_all, "unpickling a carrier", err)
        else:
            managers.append((cm, cm))
    return managers
