"""Case 4: four threads sending while a fifth connects and disconnects."""

from __future__ import annotations

import random
import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter, perf_counter_ns
from typing import Any

from . import plots
from .cases import Case, register
from .churn import Handler, attribute, pairs
from .harness import Settings
from .peers import (
    LIBRARIES,
    Sender,
    django_signal,
    make_floor,
    make_positional_receiver,
    make_receiver,
)
from .report import CaseResult, Table, Target, fmt_time

SENDERS = 4
RECEIVERS = 10

NOTES = [
    f"Each library's signal has {RECEIVERS} weak function receivers. "
    f"{SENDERS} threads call `send(sender, payload=1)` in a loop, timing each "
    "call with `perf_counter_ns`; one more thread connects and disconnects a "
    "bound method in a loop. All five start together and stop together.",
    "The machine has 2 cores and CPython 3.11 has a GIL, so the threads take "
    "turns: sends/s is the total of all 4 senders, and latencies include time "
    "spent waiting for the GIL (the default switch interval is 5 ms).",
    "floor: the case-1 floor called from the 4 threads while the fifth thread "
    "does the case-3 floor (a dict insert and delete).",
    "errors: exceptions raised by `send` during the run (a send that fails is "
    "counted and the loop goes on).",
]


@dataclass
class Run:
    sends: int
    seconds: float
    latencies: list[int]  # ns, every send of every thread
    writes: int
    errors: int

    @property
    def rate(self) -> float:
        return self.sends / self.seconds


def senders_and_writer(
    name: str, keep: list[object]
) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """``send()`` and ``write()`` (one connect + disconnect) for ``name``."""
    import blinker
    import psygnal
    from pydispatch import dispatcher

    import concsignals

    receivers = [make_receiver() for _ in range(RECEIVERS)]
    positional = [make_positional_receiver() for _ in range(RECEIVERS)]
    sender = Sender()
    obj = Handler()
    keep += [receivers, positional, sender, obj]
    connect, disconnect = pairs(0, keep)[name]
    method = getattr(obj, attribute(name))
    if name == "floor":
        floor = make_floor(receivers, object())

        def send() -> Any:
            return floor(sender, payload=1)

    elif name == "psygnal":
        psy = psygnal.SignalInstance((object, object))
        keep.append(psy)
        for r in positional:
            psy.connect(r)
        connect, disconnect = psy.connect, psy.disconnect

        def send() -> Any:
            return psy.emit(sender, 1)

    elif name == "pydispatcher":
        signal = object()
        keep.append(signal)
        for r in receivers:
            dispatcher.connect(r, signal=signal)
        connect = lambda m: dispatcher.connect(m, signal=signal)  # noqa: E731
        disconnect = lambda m: dispatcher.disconnect(m, signal=signal)  # noqa: E731

        def send() -> Any:
            return dispatcher.send(signal=signal, sender=sender, payload=1)

    else:
        sig: Any = {
            "concsignals": concsignals.Signal,
            "django": django_signal,
            "blinker": blinker.Signal,
        }[name]()
        keep.append(sig)
        for r in receivers:
            sig.connect(r)
        connect, disconnect = sig.connect, sig.disconnect

        def send() -> Any:
            return sig.send(sender, payload=1)

    def write() -> None:
        connect(method)
        disconnect(method)

    return send, write


def contend(name: str, duration: float) -> Run:
    keep: list[object] = []
    send, write = senders_and_writer(name, keep)
    stop = threading.Event()
    start = threading.Barrier(SENDERS + 2)
    latencies: list[list[int]] = [[] for _ in range(SENDERS)]
    errors = [0] * SENDERS
    writes = [0]

    def sending(index: int) -> None:
        record = latencies[index].append
        start.wait()
        while not stop.is_set():
            t0 = perf_counter_ns()
            try:
                send()
            except Exception:
                errors[index] += 1
            record(perf_counter_ns() - t0)

    def writing() -> None:
        start.wait()
        while not stop.is_set():
            write()
            writes[0] += 1

    threads = [threading.Thread(target=sending, args=(i,)) for i in range(SENDERS)]
    threads.append(threading.Thread(target=writing))
    for t in threads:
        t.start()
    start.wait()
    t0 = perf_counter()
    stop.wait(duration)
    stop.set()
    for t in threads:
        t.join()
    seconds = perf_counter() - t0
    flat = [x for lst in latencies for x in lst]
    return Run(len(flat), seconds, flat, writes[0], sum(errors))


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e9


def run(settings: Settings) -> CaseResult:
    duration, repeats = (0.5, 1) if settings.quick else (1.5, 5)
    runs: dict[str, list[Run]] = {name: [] for name in LIBRARIES}
    order = list(LIBRARIES)
    rng = random.Random(4)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            runs[name].append(contend(name, duration))

    def med(name: str, f: Callable[[Run], float]) -> float:
        return statistics.median(f(r) for r in runs[name])

    rate = {n: med(n, lambda r: r.rate) for n in LIBRARIES}
    low = {n: min(r.rate for r in runs[n]) for n in LIBRARIES}
    high = {n: max(r.rate for r in runs[n]) for n in LIBRARIES}
    p50 = {n: med(n, lambda r: percentile(r.latencies, 0.50)) for n in LIBRARIES}
    p99 = {n: med(n, lambda r: percentile(r.latencies, 0.99)) for n in LIBRARIES}
    writes = {n: med(n, lambda r: r.writes / r.seconds) for n in LIBRARIES}
    errors = {n: sum(r.errors for r in runs[n]) for n in LIBRARIES}
    rows = [
        [
            n,
            f"{rate[n]:,.0f}",
            f"{low[n]:,.0f} - {high[n]:,.0f}",
            f"{rate[n] / rate['concsignals']:.2f}x",
            f"{rate[n] / rate['floor']:.2f}x",
            fmt_time(p50[n]),
            fmt_time(p99[n]),
            f"{p99[n] / p99['concsignals']:.2f}x",
            f"{writes[n]:,.0f}",
            str(errors[n]),
        ]
        for n in LIBRARIES
    ]
    result = CaseResult(
        name=CASE.name,
        title=CASE.title,
        method=f"{repeats} runs of {duration:g} s per library, libraries "
        "interleaved in a shuffled order; medians over the runs.",
        tables=[
            Table(
                f"{SENDERS} sending threads + 1 connecting/disconnecting thread",
                [
                    "library",
                    "sends/s (all threads)",
                    "range over runs",
                    "sends/s ÷ concsignals",
                    "sends/s ÷ floor",
                    "send p50",
                    "send p99",
                    "p99 ÷ concsignals",
                    "connect+disconnect/s",
                    "errors",
                ],
                rows,
            )
        ],
        notes=NOTES,
    )
    result.targets.append(
        Target(
            "no send fails while another thread connects and disconnects",
            f"{errors['concsignals']} errors",
            errors["concsignals"] == 0,
        )
    )
    result.plot = lambda out: plot(rate, p99, out)
    return result


def plot(
    rate: dict[str, float], p99: dict[str, float], out: Path
) -> list[tuple[str, str]]:
    plots.bars(
        out / "contention_rate.png",
        "4 senders + 1 writer: sends per second (higher is better)",
        {n: rate[n] / 1e3 for n in LIBRARIES},
        "thousand sends per second, all threads",
    )
    plots.bars(
        out / "contention_p99.png",
        "4 senders + 1 writer: send latency p99 (lower is better)",
        {n: p99[n] * 1e6 for n in LIBRARIES},
        "µs",
        logx=True,
    )
    return [
        ("contention_rate.png", "contention: sends per second"),
        ("contention_p99.png", "contention: send latency p99"),
    ]


CASE = register(
    Case("contention", "4. Contention: 4 threads sending, 1 connecting", run)
)
