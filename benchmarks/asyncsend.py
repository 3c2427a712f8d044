"""Case 6: ``asend`` with 10 async receivers, against Django's ``asend``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from time import perf_counter
from typing import Any

from . import plots
from .cases import Case, register, timing_samples
from .harness import Samples, Settings, Timer, cpu_clock, measure
from .peers import Sender, django_signal
from .report import TIMING_HEADERS, CaseResult, Table, fmt_time, timing_rows

RECEIVERS = 10
SLEEP = 0.01
ROWS = ("floor", "concsignals", "django", "blinker")
GROUP = "asend"

NOTES = [
    "floor: `await asyncio.gather(*[r(signal=sig, sender=sender, **named) for r "
    "in receivers])`, then `(r, result)` pairs: the receivers run concurrently, "
    "as they do in concsignals and Django.",
    "blinker: `send_async(sender, payload=1)`, which awaits its async receivers "
    "one after another (not concurrently), in set order.",
    "psygnal and pydispatcher have no async send that returns results; they "
    "are not in this case.",
]


def make_async_receiver(sleep: float) -> Callable[..., Awaitable[int]]:
    if sleep:

        async def sleeper(sender: object, **kwargs: Any) -> int:
            await asyncio.sleep(sleep)
            return 1

        return sleeper

    async def receiver(sender: object, **kwargs: Any) -> int:
        return 1

    return receiver


def loop_timer(
    loop: asyncio.AbstractEventLoop,
    send: Callable[..., Awaitable[Any]],
    sender: object,
    clock: Callable[[], float],
) -> Timer:
    """Time ``await send(sender, payload=1)`` inside a running loop."""

    async def body(loops: int) -> float:
        t0 = clock()
        for _ in range(loops):
            await send(sender, payload=1)
        return clock() - t0

    return lambda loops: loop.run_until_complete(body(loops))


def timers(sleep: float, keep: list[object]) -> dict[str, Timer]:
    """CPU time for receivers that return at once; wall time if they sleep."""
    import blinker

    import concsignals

    receivers = [make_async_receiver(sleep) for _ in range(RECEIVERS)]
    ours = concsignals.Signal()
    theirs = django_signal()
    blink = blinker.Signal()
    for r in receivers:
        ours.connect(r)
        theirs.connect(r)
        blink.connect(r)
    loop = asyncio.new_event_loop()
    sender = Sender()
    keep += [receivers, ours, theirs, blink, loop, sender]

    async def floor(sender: object, **named: Any) -> list[tuple[Any, Any]]:
        results = await asyncio.gather(
            *[r(signal=ours, sender=sender, **named) for r in receivers]
        )
        return list(zip(receivers, results, strict=True))

    clock = perf_counter if sleep else cpu_clock
    return {
        "floor": loop_timer(loop, floor, sender, clock),
        "concsignals": loop_timer(loop, ours.asend, sender, clock),
        "django": loop_timer(loop, theirs.asend, sender, clock),
        "blinker": loop_timer(loop, blink.send_async, sender, clock),
    }


def groups(settings: Settings, keep: list[object]) -> dict[str, dict[str, Timer]]:
    return {GROUP: timers(0.0, keep)}


def run(settings: Settings) -> CaseResult:
    overhead = timing_samples(CASE, settings)[GROUP]
    keep: list[object] = []
    rounds = 3 if settings.quick else 9
    wall = measure(
        timers(SLEEP, keep),
        Settings(min_time=0.0, rounds=rounds, warmups=1, processes=0, quick=True),
        seed=6,
    )
    result = CaseResult(
        name=CASE.name,
        title=CASE.title,
        method=f"`await signal.asend(sender, payload=1)` with {RECEIVERS} `async "
        "def` receivers, in one event loop: receivers that return at once (the "
        f"dispatch overhead), then receivers that `await asyncio.sleep({SLEEP})` "
        f"({rounds} rounds; wall time per send).",
        notes=NOTES,
    )
    result.tables.append(
        Table(
            f"{RECEIVERS} async receivers that return at once",
            TIMING_HEADERS,
            timing_rows(overhead, ROWS),
        )
    )
    result.tables.append(
        Table(
            f"{RECEIVERS} async receivers that sleep {fmt_time(SLEEP)}",
            TIMING_HEADERS,
            timing_rows(wall, ROWS),
        )
    )
    result.plot = lambda out: plot(overhead, out)
    return result


def plot(samples: Samples, out: Path) -> list[tuple[str, str]]:
    plots.bars(
        out / "asend.png",
        f"asend, {RECEIVERS} async receivers that return at once (median)",
        {name: samples.median(name) * 1e6 for name in ROWS},
        "µs per send",
    )
    return [("asend.png", "asend overhead")]


CASE = register(Case("asend", "6. asend with 10 async receivers", run, groups))
