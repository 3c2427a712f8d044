"""Monitors' context managers around one call, whose errors never reach it.

Used on both sides of a call: in this process around a monitored receiver
call (what ``call_began`` returned), and in a worker process around a pickled
call (the monitors' *carriers*, see ``executors.call_pickled``).  This module
imports nothing of concsignals: the engine, the monitors and the worker side
all point down to it.

A monitor's error is logged on logger ``concsignals`` once per monitor (per
process), never raised: the call runs, and its outcome is unchanged.
``_broken`` is only added to (``set.add`` is atomic): no lock.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterable, Sequence
from typing import Any

logger = logging.getLogger("concsignals")

#: ``(owner, context manager)``: the owner is named if the manager fails.
Managed = list[tuple[object, Any]]

_broken: set[int] = set()


def report(owner: object, what: str, err: Exception) -> None:
    """Log a monitor's failure, once per monitor."""
    if id(owner) in _broken:
        return
    _broken.add(id(owner))
    logger.error(
        "Monitor %r failed in %s (%s); its later failures are not logged",
        owner,
        what,
        err,
        exc_info=err,
    )


def enter_all(managers: Iterable[tuple[object, Any]]) -> Managed:
    """Enter each manager; those entered, to hand to :func:`exit_all`."""
    entered: Managed = []
    for owner, cm in managers:
        try:
            cm.__enter__()
        except Exception as err:
            report(owner, "entering its context", err)
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
            report(owner, "exiting its context", exc)


def unpickle_all(blobs: Sequence[bytes]) -> Managed:
    """In a worker: the carriers that came with a call.  One that cannot be
    unpickled here (its package is not installed in the worker, say) is
    skipped: the call runs anyway."""
    managers: Managed = []
    for blob in blobs:
        try:
            cm = pickle.loads(blob)
        except Exception as err:
            report(unpickle_all, "unpickling a carrier", err)
        else:
            managers.append((cm, cm))
    return managers
