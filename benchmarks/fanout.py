"""Case 5: fan-out of one send on threads, processes and a dask cluster."""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from time import perf_counter
from typing import Any

from . import plots
from .cases import Case, register, timing_samples
from .harness import Samples, Settings, Timer, cpu_clock, measure
from .peers import Sender, make_floor
from .receivers import Burner, Noop, Sleeper, spin
from .report import TIMING_HEADERS, CaseResult, Table, Target, fmt_time, timing_rows

IO_RECEIVERS = 10
IO_SLEEP = 0.05
CPU_RECEIVERS = 4
CPU_WORKERS = 2
OVERHEAD_COUNTS = (10, 100)
OVERHEAD_THREADS = 4
EXECUTORS = ("threads", "processes", "dask")

NOTES = [
    "hand-written: the same calls, `pool.submit(r, signal=..., sender=sender, "
    "**named)` for each receiver in order, then `[(r, f.result()) ...]` in "
    "order -- on the very same executor. For dask both use "
    "`client.get_executor(pure=False)`; concsignals pickles each receiver "
    "itself and submits `call_pickled` (see `concsignals/executors.py`).",
    "processes: `ProcessPoolExecutor` with the `spawn` start method; dask: "
    "`LocalCluster(processes=True)` on 127.0.0.1. Pools are created and warmed "
    "up before timing; their start-up cost is not in the figures.",
    "Receivers are instances of module-level classes (`benchmarks/receivers.py`) "
    "so they pickle; the sender is a plain picklable object.",
    "The machine has 2 cores shared with other work while measuring: "
    "process speed-ups are bounded by 2 and by what the other work leaves.",
]


def call_timer(send: Callable[..., Any], sender: object, named: dict) -> Timer:
    def timer(loops: int) -> float:
        it = itertools.repeat(None, loops)
        t0 = perf_counter()
        for _ in it:
            send(sender, **named)
        return perf_counter() - t0

    return timer


def hand_timer(
    pool: Executor,
    receivers: Sequence[Any],
    signal: object,
    sender: object,
    named: dict,
) -> Timer:
    """The same calls submitted by hand to ``pool``, collected in order."""

    def timer(loops: int) -> float:
        it = itertools.repeat(None, loops)
        t0 = perf_counter()
        for _ in it:
            futures = [
                pool.submit(r, signal=signal, sender=sender, **named) for r in receivers
            ]
            [(r, f.result()) for r, f in zip(receivers, futures, strict=True)]
        return perf_counter() - t0

    return timer


# -- per-receiver overhead of thread fan-out (worker processes) ---------------


def groups(settings: Settings, keep: list[object]) -> dict[str, dict[str, Timer]]:
    import concsignals

    pool = ThreadPoolExecutor(OVERHEAD_THREADS)
    keep.append(pool)
    found = {}
    for n in OVERHEAD_COUNTS:
        receivers = [Noop() for _ in range(n)]
        sig = concsignals.Signal()
        keep += [receivers, sig]
        for r in receivers:
            sig.connect(r)
        sender = Sender()
        keep.append(sender)
        named = {"payload": 1}
        found[f"overhead/{n}"] = {
            "floor": hand_timer(pool, receivers, sig, sender, named),
            "concsignals": call_timer(sig.using(pool).send, sender, named),
        }
    return found


# -- wall-clock fan-out (this process) ----------------------------------------


@contextlib.contextmanager
def dask_executor(workers: int, threads: int) -> Iterator[Executor]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",  # any free port: 8787 may be taken
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client.get_executor(pure=False)


def process_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def fanout_timers(
    receivers: Sequence[Any],
    named: dict,
    pools: dict[str, Executor | None],
) -> dict[str, Timer]:
    """Inline, and each available executor: concsignals and hand-written."""
    import concsignals

    sig = concsignals.Signal()
    for r in receivers:
        sig.connect(r)
    sender = Sender()
    timers = {
        "inline: floor": call_timer(make_floor(receivers, sig), sender, named),
        "inline: concsignals": call_timer(sig.send, sender, named),
    }
    for name, pool in pools.items():
        if pool is None:
            continue
        timers[f"{name}: hand-written"] = hand_timer(
            pool, receivers, "signal", sender, named
        )
        timers[f"{name}: concsignals"] = call_timer(sig.using(pool).send, sender, named)
    return timers


def calibrate_work(seconds: float) -> int:
    """Iterations of :func:`spin` that take about ``seconds`` here."""
    work = 10_000
    while True:
        t0 = cpu_clock()
        spin(work)
        elapsed = cpu_clock() - t0
        if elapsed > 0.02:
            return int(work * seconds / elapsed)
        work *= 2


def wall_settings(settings: Settings) -> Settings:
    rounds = 2 if settings.quick else 7
    return Settings(min_time=0.0, rounds=rounds, warmups=1, processes=0, quick=True)


def measure_wall(kind: str, settings: Settings, unavailable: dict[str, str]) -> Samples:
    """Measure the I/O-bound (``kind="io"``) or CPU-bound fan-out."""
    if kind == "io":
        receivers: list[Any] = [Sleeper(IO_SLEEP) for _ in range(IO_RECEIVERS)]
        named: dict[str, Any] = {"payload": 1}
        workers, dask_shape = IO_RECEIVERS, (2, IO_RECEIVERS // 2)
    else:
        receivers = [Burner() for _ in range(CPU_RECEIVERS)]
        named = {"work": calibrate_work(0.03 if settings.quick else 0.15)}
        workers, dask_shape = CPU_WORKERS, (CPU_WORKERS, 1)
    threads = ThreadPoolExecutor(IO_RECEIVERS if kind == "io" else CPU_RECEIVERS)
    processes = process_pool(workers)
    with contextlib.ExitStack() as stack:
        stack.callback(threads.shutdown)
        stack.callback(processes.shutdown)
        dask: Executor | None = None
        try:
            dask = stack.enter_context(dask_executor(*dask_shape))
        except Exception as err:  # report it, do not hide the other rows
            unavailable["dask"] = f"{type(err).__name__}: {err}"
        pools = {"threads": threads, "processes": processes, "dask": dask}
        timers = fanout_timers(receivers, named, pools)
        samples = measure(timers, wall_settings(settings), seed=5)
    return samples


def run(settings: Settings) -> CaseResult:
    overhead = timing_samples(CASE, settings)
    unavailable: dict[str, str] = {}
    io = measure_wall("io", settings, unavailable)
    cpu = measure_wall("cpu", settings, unavailable)
    cpu_call = cpu.median("inline: floor") / CPU_RECEIVERS
    result = CaseResult(
        name=CASE.name,
        title=CASE.title,
        method=f"One send to {IO_RECEIVERS} receivers that each sleep "
        f"{IO_SLEEP * 1e3:g} ms (on {IO_RECEIVERS} threads, {IO_RECEIVERS} "
        f"processes, dask 2 workers x {IO_RECEIVERS // 2} threads), and to "
        f"{CPU_RECEIVERS} CPU-bound receivers of about {fmt_time(cpu_call)} each "
        f"(on {CPU_RECEIVERS} threads, {CPU_WORKERS} processes, dask "
        f"{CPU_WORKERS} workers x 1 thread): wall time per send, "
        f"{wall_settings(settings).rounds} interleaved rounds. Then the "
        f"per-receiver overhead of thread fan-out with receivers that do "
        f"nothing, on a {OVERHEAD_THREADS}-thread pool.",
        notes=list(NOTES),
    )
    for label, samples in (("I/O-bound", io), ("CPU-bound", cpu)):
        result.tables.append(
            Table(f"{label} receivers", WALL_HEADERS, wall_rows(samples))
        )
    rows = []
    for n in OVERHEAD_COUNTS:
        s = overhead[f"overhead/{n}"]
        for row in timing_rows(s, ("floor", "concsignals")):
            name = "hand-written" if row[0] == "floor" else row[0]
            per = s.median(row[0]) / n
            rows.append([str(n), name, *row[1:4], fmt_time(per), *row[4:]])
    result.tables.append(
        Table(
            "thread fan-out overhead, do-nothing receivers, "
            f"{OVERHEAD_THREADS} threads",
            [
                "receivers",
                "library",
                *TIMING_HEADERS[1:4],
                "per receiver",
                "time ÷ concsignals",
                "time ÷ hand-written",
            ],
            rows,
        )
    )
    for name, why in unavailable.items():
        result.notes.append(f"{name}: not available in this run ({why}).")
    result.targets = targets(io, cpu, overhead, unavailable)
    result.plot = lambda out: plot(io, cpu, out)
    return result


WALL_HEADERS = [
    "how",
    "median",
    "best",
    "spread",
    "speed-up vs inline concsignals",
    "time ÷ hand-written",
]


def wall_rows(samples: Samples) -> list[list[str]]:
    rows = []
    for name in samples.samples:
        executor = name.split(":")[0]
        reference = (
            "inline: floor" if executor == "inline" else f"{executor}: hand-written"
        )
        rows.append(
            [
                name,
                fmt_time(samples.median(name)),
                fmt_time(samples.best(name)),
                f"±{samples.spread(name) / 2:.1%}",
                f"{samples.ratio('inline: concsignals', name):.2f}x",
                f"{samples.ratio(name, reference):.2f}x",
            ]
        )
    for executor in EXECUTORS:
        if f"{executor}: concsignals" not in samples.samples:
            rows.append([f"{executor}", "not available", "", "", "", ""])
    return rows


def targets(
    io: Samples, cpu: Samples, overhead: dict[str, Samples], unavailable: dict
) -> list[Target]:
    found = []
    for n in OVERHEAD_COUNTS:
        r = overhead[f"overhead/{n}"].ratio("concsignals", "floor")
        found.append(
            Target(
                f"thread fan-out overhead within 1.5x of hand-written, {n} receivers",
                f"{r:.3f}x",
                r <= 1.5,
            )
        )
    s, hand = speedups(io, "threads")
    found.append(
        Target(
            f"{IO_RECEIVERS} x {IO_SLEEP * 1e3:g} ms sleeping receivers on "
            f"{IO_RECEIVERS} threads >= 8x faster than inline",
            f"{s:.2f}x (hand-written on the same pool: {hand:.2f}x)",
            s >= 8,
        )
    )
    s, hand = speedups(cpu, "processes")
    found.append(
        Target(
            f"{CPU_RECEIVERS} CPU-bound receivers on {CPU_WORKERS} processes "
            ">= 1.7x faster than inline",
            f"{s:.2f}x (hand-written on the same pool: {hand:.2f}x)",
            s >= 1.7,
        )
    )
    return found


def speedups(samples: Samples, executor: str) -> tuple[float, float]:
    """Speed-up over inline of concsignals, and of the hand-written calls.

    The second shows what the machine allowed at the time: on a loaded
    machine neither can reach the core count.
    """
    ours = samples.ratio("inline: concsignals", f"{executor}: concsignals")
    hand = samples.ratio("inline: floor", f"{executor}: hand-written")
    return ours, hand


def plot(io: Samples, cpu: Samples, out: Path) -> list[tuple[str, str]]:
    for kind, samples in (("io", io), ("cpu", cpu)):
        plots.bars(
            out / f"fanout_{kind}.png",
            f"Fan-out, {'I/O' if kind == 'io' else 'CPU'}-bound receivers: "
            "wall time per send (median)",
            {name: samples.median(name) * 1e3 for name in samples.samples},
            "ms per send",
        )
    return [
        ("fanout_io.png", "fan-out of I/O-bound receivers"),
        ("fanout_cpu.png", "fan-out of CPU-bound receivers"),
    ]


CASE = register(
    Case(
        "fanout",
        "5. Fan-out: threads, processes and dask vs inline",
        run,
        groups,
    )
)
