"""Each library set up to do the same work, and the floor.

Every send passes one sender and one named argument, ``payload=1``; every
receiver returns ``1``.  Where a library's calling convention differs, its
receivers are adapted as little as possible (see :data:`FOOTNOTES`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from .harness import Timer, cpu_clock

#: Benchmark rows, in display order.  ``floor`` is the reference, not a library.
LIBRARIES = ("floor", "concsignals", "django", "blinker", "psygnal", "pydispatcher")

#: Libraries whose send returns ``[(receiver, response), ...]``.
RETURN_RESULTS = ("concsignals", "django", "blinker", "pydispatcher")

FOOTNOTES = {
    "floor": "floor: a plain Python function `floor(sender, **named)` that "
    "loops over a tuple of the same receivers, calls each as "
    "`r(signal=sig, sender=sender, **named)` and appends `(r, result)` to a "
    "list. It checks no liveness and takes no lock: the least any dispatcher "
    "returning results must do.",
    "django": "django: `django.dispatch.Signal` (default `use_caching=False`).",
    "blinker": "blinker: calls receivers as `r(sender, **named)` (no `signal=` "
    "argument); the same receiver functions are used. Receivers are held in a "
    "set per sender, so the call order is not the connection order.",
    "psygnal": "psygnal: `SignalInstance((object, object))`, `emit(sender, 1)`; "
    "receivers are adapted to `r(sender, payload)` (positional). `emit` returns "
    "no results, so psygnal does less work than the others. psygnal has no "
    "`weak=` option: functions are always held strongly, so its weak and "
    "strong rows measure the same thing. The installed psygnal is compiled "
    "with mypyc (its modules are C extensions), the other libraries are pure "
    "Python.",
    "pydispatcher": "pydispatcher: the module-level `dispatcher.connect/send` "
    "with a fresh signal object per group; it inspects each receiver's "
    "signature and passes the arguments the receiver accepts (here: all).",
}


class Sender:
    """A weakly referenceable sender (like a model class, it is just an object)."""


def make_receiver() -> Callable[..., Any]:
    """A new, distinct receiver function in Django's convention."""

    def receiver(sender: object, **kwargs: Any) -> int:
        return 1

    return receiver


def make_positional_receiver() -> Callable[..., Any]:
    """A new, distinct receiver in psygnal's convention."""

    def receiver(sender: object, payload: object) -> int:
        return 1

    return receiver


def make_floor(receivers: Sequence[Callable[..., Any]], signal: object) -> Callable:
    """The floor: call each receiver in order and collect ``(r, result)``."""
    receivers = tuple(receivers)

    def floor(sender: object, **named: Any) -> list[tuple[Any, Any]]:
        responses = []
        for r in receivers:
            responses.append((r, r(signal=signal, sender=sender, **named)))
        return responses

    return floor


def send_timer(send: Callable[..., Any], sender: object) -> Timer:
    """Time ``send(sender, payload=1)``: the call shape of every Django-like send."""

    def timer(loops: int) -> float:
        it = itertools.repeat(None, loops)
        t0 = cpu_clock()
        for _ in it:
            send(sender, payload=1)
        return cpu_clock() - t0

    return timer


def emit_timer(emit: Callable[..., Any], sender: object) -> Timer:
    """Time psygnal's ``emit(sender, 1)``."""

    def timer(loops: int) -> float:
        it = itertools.repeat(None, loops)
        t0 = cpu_clock()
        for _ in it:
            emit(sender, 1)
        return cpu_clock() - t0

    return timer


def pydispatcher_timer(signal: object, sender: object) -> Timer:
    """Time pydispatcher's ``dispatcher.send(signal=..., sender=..., payload=1)``."""
    from pydispatch import dispatcher

    send = dispatcher.send

    def timer(loops: int) -> float:
        it = itertools.repeat(None, loops)
        t0 = cpu_clock()
        for _ in it:
            send(signal=signal, sender=sender, payload=1)
        return cpu_clock() - t0

    return timer


def django_signal(use_caching: bool = False) -> Any:
    """A ``django.dispatch.Signal``, configuring Django's settings if needed."""
    import django.conf

    if not django.conf.settings.configured:
        django.conf.settings.configure()
    from django.dispatch import Signal

    return Signal(use_caching=use_caching)


def inline_timers(n: int, weak: bool, keep: list[object]) -> dict[str, Timer]:
    """Timers for one send to ``n`` any-sender receivers in every library.

    ``keep`` receives everything that must stay alive (weak receivers).
    """
    import blinker
    import psygnal
    from pydispatch import dispatcher

    import concsignals

    receivers = [make_receiver() for _ in range(n)]
    positional = [make_positional_receiver() for _ in range(n)]
    keep += [receivers, positional]
    sender = Sender()
    keep.append(sender)

    ours = concsignals.Signal()
    theirs = django_signal()
    blink = blinker.Signal()
    psy = psygnal.SignalInstance((object, object))
    pyd_signal = object()
    keep += [ours, theirs, blink, psy, pyd_signal]
    for r in receivers:
        ours.connect(r, weak=weak)
        theirs.connect(r, weak=weak)
        blink.connect(r, weak=weak)
        dispatcher.connect(r, signal=pyd_signal, weak=weak)
    for r in positional:
        psy.connect(r)

    return {
        "floor": send_timer(make_floor(receivers, ours), sender),
        "concsignals": send_timer(ours.send, sender),
        "django": send_timer(theirs.send, sender),
        "blinker": send_timer(blink.send, sender),
        "psygnal": emit_timer(psy.emit, sender),
        "pydispatcher": pydispatcher_timer(pyd_signal, sender),
    }
