"""Case 3: connect + disconnect cost, and memory after many cycles."""

from __future__ import annotations

import gc
import itertools
import tracemalloc
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import plots
from .cases import Case, register, timing_samples
from .harness import Samples, Settings, Timer, cpu_clock
from .peers import (
    LIBRARIES,
    Sender,
    django_signal,
    make_positional_receiver,
    make_receiver,
)
from .report import (
    TIMING_HEADERS,
    CaseResult,
    Table,
    Target,
    fmt_bytes,
    timing_rows,
)

OTHERS = (0, 100, 1000)
CYCLES_FULL = 100_000
CYCLES_QUICK = 10_000

#: (connect, disconnect) of one receiver, for each library.
Pair = tuple[Callable[[Any], Any], Callable[[Any], Any]]

NOTES = [
    "floor: a dict keyed by Django's receiver identity `(id(self), id(func))` "
    "holding a `weakref.WeakMethod`: insert, then delete.",
    "psygnal's receiver takes `(sender, payload)`, as in case 1.",
    "Memory: `tracemalloc`, after `gc.collect()`, traced memory after the cycles "
    "minus traced memory after one warm-up cycle, with the receiver's object "
    "still alive.",
]


class Handler:
    """An object whose bound method is the receiver."""

    def handler(self, sender: object, **kwargs: Any) -> int:
        return 1

    def positional(self, sender: object, payload: object) -> int:
        return 1


def pairs(others: int, keep: list[object]) -> dict[str, Pair]:
    """Connect/disconnect of one bound method on each library's signal.

    Each signal already has ``others`` function receivers connected.
    """
    import blinker
    import psygnal
    from pydispatch import dispatcher

    import concsignals

    receivers = [make_receiver() for _ in range(others)]
    positional = [make_positional_receiver() for _ in range(others)]
    ours = concsignals.Signal()
    theirs = django_signal()
    blink = blinker.Signal()
    psy = psygnal.SignalInstance((object, object))
    pyd_signal = object()
    keep += [receivers, positional, ours, theirs, blink, psy, pyd_signal]
    for r in receivers:
        ours.connect(r)
        theirs.connect(r)
        blink.connect(r)
        dispatcher.connect(r, signal=pyd_signal)
    for r in positional:
        psy.connect(r)
    registry: dict[object, object] = {}

    def floor_connect(m: Any) -> None:
        registry[(id(m.__self__), id(m.__func__))] = weakref.WeakMethod(m)

    def floor_disconnect(m: Any) -> None:
        del registry[(id(m.__self__), id(m.__func__))]

    return {
        "floor": (floor_connect, floor_disconnect),
        "concsignals": (ours.connect, ours.disconnect),
        "django": (theirs.connect, theirs.disconnect),
        "blinker": (blink.connect, blink.disconnect),
        "psygnal": (psy.connect, psy.disconnect),
        "pydispatcher": (
            lambda m: dispatcher.connect(m, signal=pyd_signal),
            lambda m: dispatcher.disconnect(m, signal=pyd_signal),
        ),
    }


def attribute(name: str) -> str:
    return "positional" if name == "psygnal" else "handler"


def churn_timer(pair: Pair, obj: Handler, attr: str) -> Timer:
    connect, disconnect = pair

    def timer(loops: int) -> float:
        it = itertools.repeat(None, loops)
        t0 = cpu_clock()
        for _ in it:
            connect(getattr(obj, attr))
            disconnect(getattr(obj, attr))
        return cpu_clock() - t0

    return timer


def groups(settings: Settings, keep: list[object]) -> dict[str, dict[str, Timer]]:
    found = {}
    for others in OTHERS:
        obj = Handler()
        keep.append(obj)
        found[f"others/{others}"] = {
            name: churn_timer(pair, obj, attribute(name))
            for name, pair in pairs(others, keep).items()
        }
    return found


def memory_growth(name: str, cycles: int) -> int:
    """Bytes still traced after ``cycles`` connect/disconnect cycles."""
    keep: list[object] = []
    connect, disconnect = pairs(0, keep)[name]
    obj = Handler()
    attr = attribute(name)
    tracemalloc.start()
    try:
        connect(getattr(obj, attr))
        disconnect(getattr(obj, attr))
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(cycles):
            connect(getattr(obj, attr))
            disconnect(getattr(obj, attr))
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before


#: (label, senders with one receiver of their own, any-sender receivers,
#: receivers per sender).
MIXES = (
    ("10,000 senders + 100 any-sender", 10_000, 100, 1),
    ("1,000 senders x 10 + 100 any-sender", 1_000, 100, 10),
    ("10,000 any-sender", 0, 10_000, 1),
)
MIXES_QUICK = (("2,000 senders + 100 any-sender", 2_000, 100, 1),)
PER_CONNECTION_TARGET = 450


def memory_per_connection(name: str, senders: int, anyone: int, each: int) -> float:
    """Traced bytes per connection of a signal holding this mix (weak
    function receivers, made before measuring; so are the senders)."""
    import blinker
    from pydispatch import dispatcher

    import concsignals

    objs = [Sender() for _ in range(senders)]
    functions = [make_receiver() for _ in range(senders * each + anyone)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sig: Any = {
            "concsignals": concsignals.Signal,
            "django": django_signal,
            "blinker": blinker.Signal,
            "pydispatcher": object,
        }[name]()
        rs = iter(functions)
        for s in objs:
            for _ in range(each):
                if name == "pydispatcher":
                    dispatcher.connect(next(rs), signal=sig, sender=s)
                else:
                    sig.connect(next(rs), sender=s)
        for r in rs:
            if name == "pydispatcher":
                dispatcher.connect(r, signal=sig)
            else:
                sig.connect(r)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del sig
    return (after - before) / len(functions)


def run(settings: Settings) -> CaseResult:
    samples = timing_samples(CASE, settings)
    cycles = CYCLES_QUICK if settings.quick else CYCLES_FULL
    growth = {name: memory_growth(name, cycles) for name in LIBRARIES}
    result = CaseResult(
        name=CASE.name,
        title=CASE.title,
        method="`connect(obj.handler)` then `disconnect(obj.handler)` of one bound "
        "method (weak), on a signal that already has 0, 100 or 1000 function "
        "receivers. Times are per connect + disconnect pair. Then the memory "
        f"left behind by {cycles:,} such cycles.",
        notes=NOTES,
    )
    for others in OTHERS:
        result.tables.append(
            Table(
                f"connect + disconnect, {others} other receivers connected",
                TIMING_HEADERS,
                timing_rows(samples[f"others/{others}"], LIBRARIES),
            )
        )
    result.tables.append(
        Table(
            f"memory growth after {cycles:,} connect/disconnect cycles",
            ["library", "traced memory growth", "per cycle"],
            [
                [name, fmt_bytes(growth[name]), f"{growth[name] / cycles:.1f} B"]
                for name in LIBRARIES
            ],
        )
    )
    mixes = MIXES_QUICK if settings.quick else MIXES
    names = ("concsignals", "django", "blinker", "pydispatcher")
    per = {
        (label, name): memory_per_connection(name, senders, anyone, each)
        for label, senders, anyone, each in mixes
        for name in names
    }
    result.tables.append(
        Table(
            "memory per connection (weak function receivers)",
            ["mix", *names],
            [[m[0], *(f"{per[m[0], n]:.0f} B" for n in names)] for m in mixes],
        )
    )
    worst = max(per[m[0], "concsignals"] for m in mixes)
    result.targets.append(
        Target(
            f"memory per connection <= {PER_CONNECTION_TARGET} B in every mix",
            f"{worst:.0f} B at most",
            worst <= PER_CONNECTION_TARGET,
        )
    )
    result.targets.append(
        Target(
            f"memory flat after {cycles:,} connect/disconnect cycles",
            fmt_bytes(growth["concsignals"]),
            growth["concsignals"] < 100_000,
        )
    )
    result.plot = lambda out: plot(samples, growth, cycles, out)
    return result


def plot(
    samples: dict[str, Samples], growth: dict[str, int], cycles: int, out: Path
) -> list[tuple[str, str]]:
    plots.lines(
        out / "churn_time.png",
        "connect + disconnect of one bound method (median)",
        {
            "time per pair": {
                name: [samples[f"others/{n}"].median(name) * 1e6 for n in OTHERS]
                for name in LIBRARIES
            }
        },
        [str(n) for n in OTHERS],
        "other receivers already connected",
        "µs per connect + disconnect",
    )
    plots.bars(
        out / "churn_memory.png",
        f"Traced memory growth after {cycles:,} connect/disconnect cycles",
        {name: growth[name] / 1e6 for name in LIBRARIES},
        "MB",
        fmt=lambda mb: fmt_bytes(mb * 1e6),
    )
    return [
        ("churn_time.png", "connect + disconnect cost"),
        ("churn_memory.png", "memory growth after connect/disconnect churn"),
    ]


CASE = register(
    Case(
        "churn",
        "3. Connect + disconnect cost, and memory after churn",
        run,
        groups,
    )
)
