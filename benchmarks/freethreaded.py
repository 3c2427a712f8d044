"""Case: CPU-bound receivers on threads with the GIL off (free-threaded Python).

On a GIL build, pure-Python receivers on a thread pool take turns: only
processes run them side by side, and only after pickling the receivers and
their arguments.  On a free-threaded build (3.13t, ``PYTHON_GIL=0``) threads
run them at once, with no pickling.  This case measures one send to
``RECEIVERS`` CPU-bound receivers three ways: inline, on a pool of
``WORKERS`` threads and on a pool of ``WORKERS`` processes, in interleaved
rounds (wall time: waiting for the workers is the point).

Run it alone with ``python -m benchmarks --case freethreaded`` under the
interpreter to measure, e.g. ``PYTHON_GIL=0 python3.13t -m benchmarks ...``.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

from .cases import Case, register
from .fanout import calibrate_work, call_timer, process_pool
from .harness import Samples, Settings, measure
from .peers import Sender
from .receivers import Burner
from .report import CaseResult, Table, Target, fmt_time

RECEIVERS = 4
WORKERS = 2
TARGET = 1.7
HOWS = ("inline", f"{WORKERS} threads", f"{WORKERS} processes")


def gil_enabled() -> bool:
    """Whether the GIL is on (always, before 3.13)."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_enabled is None else bool(is_enabled())


def rounds(settings: Settings) -> Settings:
    """One send per sample (each lasts tens of ms); best of several rounds."""
    n = 3 if settings.quick else 9
    return Settings(min_time=0.0, rounds=n, warmups=1, processes=0, quick=True)


def measure_sends(settings: Settings) -> tuple[Samples, float]:
    """Samples of one send per way, and the work of one receiver call (s)."""
    import concsignals

    work = calibrate_work(0.01 if settings.quick else 0.05)
    sig = concsignals.Signal()
    receivers = [Burner() for _ in range(RECEIVERS)]
    for r in receivers:
        sig.connect(r)
    sender, named = Sender(), {"work": work}
    with (
        ThreadPoolExecutor(WORKERS) as threads,
        process_pool(WORKERS) as processes,
    ):
        processes.submit(int).result()  # started before any timing
        timers = {
            HOWS[0]: call_timer(sig.send, sender, named),
            HOWS[1]: call_timer(sig.using(threads).send, sender, named),
            HOWS[2]: call_timer(sig.using(processes).send, sender, named),
        }
        samples = measure(timers, rounds(settings), seed=13)
    return samples, samples.best(HOWS[0]) / RECEIVERS


def speedup(samples: Samples, how: str) -> float:
    """Best inline time over best ``how`` time: what the machine allowed."""
    return samples.best(HOWS[0]) / samples.best(how)


def run(settings: Settings) -> CaseResult:
    samples, per_call = measure_sends(settings)
    gil = gil_enabled()
    build = "free-threaded" if "free-threading" in sys.version else "GIL"
    result = CaseResult(
        name=CASE.name,
        title=CASE.title,
        method=f"One send to {RECEIVERS} CPU-bound receivers (pure-Python "
        f"arithmetic, about {fmt_time(per_call)} each) inline, on "
        f"{WORKERS} threads and on {WORKERS} processes (spawned): wall time per "
        f"send, {rounds(settings).rounds} interleaved rounds. Python "
        f"{sys.version.split()[0]}, {build} build, GIL "
        f"{'on' if gil else 'off'}.",
        notes=[
            "Threads share the receivers and their arguments; processes get "
            "them pickled, and need receivers that pickle (module-level "
            "classes here).",
            "The machine has 2 cores: no speed-up can pass 2, and other work "
            "on the machine lowers every figure; the best round shows what "
            "the machine allowed.",
        ],
    )
    rows = []
    for how in HOWS:
        rows.append(
            [
                how,
                fmt_time(samples.median(how)),
                fmt_time(samples.best(how)),
                f"{samples.ratio(HOWS[0], how):.2f}x",
                f"{speedup(samples, how):.2f}x",
            ]
        )
    headers = ["how", "median", "best", "speed-up (median)", "speed-up (best)"]
    result.tables.append(
        Table("CPU-bound receivers, wall time per send", headers, rows)
    )
    threads = speedup(samples, HOWS[1])
    result.targets.append(
        Target(
            f"{RECEIVERS} CPU-bound receivers on {WORKERS} threads, GIL off: "
            f">= {TARGET}x faster than inline (best of rounds)",
            f"{threads:.2f}x (processes: {speedup(samples, HOWS[2]):.2f}x)"
            + (" -- the GIL is on here: not measurable" if gil else ""),
            None if gil else threads >= TARGET,
        )
    )
    return result


CASE = register(
    Case(
        "freethreaded",
        "9. Free-threaded Python: CPU-bound receivers on threads vs processes",
        run,
        standalone=True,
    )
)
