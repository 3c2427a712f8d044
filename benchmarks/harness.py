"""The timing harness: calibrated loops, warm-up, interleaved rounds, workers.

Why not pyperf's ``Runner``
---------------------------
pyperf runs each benchmark on its own, one after another, each in its own
worker processes.  On a shared two-core machine the background load drifts
over seconds, so two libraries measured a minute apart see different
machines, and their *ratio* -- the number this page is about -- drifts with
the load.  This harness keeps what pyperf gets right (calibrated loop counts,
warm-up, many samples from several fresh processes, median and spread) and
changes one thing: within a group, every library is sampled once per *round*,
in a freshly shuffled order, so all of them see the same load.  Ratios are the
median of the per-round ratios (paired samples), which cancels slow drift.

How one group is measured (inside one worker process)
-----------------------------------------------------
1. Calibrate: for each timer, double ``loops`` until one sample takes at least
   ``min_time`` seconds.
2. Warm up: run every timer ``warmups`` times with its loop count; discard.
3. Measure: ``rounds`` rounds; each round runs every timer once, in a shuffled
   order, and records seconds per loop.

The parent runs ``processes`` such workers one after another (never at the
same time: the machine has two cores) and pools their rounds.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Runs the benchmarked body ``loops`` times; returns the elapsed seconds.
Timer = Callable[[int], float]

#: The clock of single-threaded timing loops: this thread's CPU time.  The
#: machine is shared, and time this process spends descheduled while another
#: process runs is no library's cost; wall time would charge it to whichever
#: library happened to be running.  (Each reading costs about a microsecond
#: here, against samples of many milliseconds.)  Cases where waiting is the
#: point -- threads, processes, sleeping receivers -- use wall time instead.
cpu_clock = time.thread_time


@dataclass(frozen=True)
class OneOff:
    """A figure measured once while building a group (say, its setup time).

    A group made of these is not timed again: each worker process contributes
    one sample per name.
    """

    seconds: float


@dataclass(frozen=True)
class Settings:
    """How hard to measure."""

    min_time: float  # seconds one sample must last at least
    rounds: int  # samples per timer per process
    warmups: int  # discarded samples per timer per process
    processes: int  # worker processes for the micro cases (0: in this process)
    quick: bool

    def to_argv(self) -> list[str]:
        return ["--settings", json.dumps(self.__dict__)]

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls(**json.loads(text))


FULL = Settings(min_time=0.02, rounds=15, warmups=2, processes=3, quick=False)
QUICK = Settings(min_time=0.002, rounds=5, warmups=1, processes=0, quick=True)


@dataclass
class Samples:
    """Seconds per loop for each timer; ``samples[name][i]`` is round ``i``."""

    samples: dict[str, list[float]] = field(default_factory=dict)

    def extend(self, other: Mapping[str, list[float]]) -> None:
        for name, values in other.items():
            self.samples.setdefault(name, []).extend(values)

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def best(self, name: str) -> float:
        return min(self.samples[name])

    def spread(self, name: str) -> float:
        """Interquartile range relative to the median (0.05 is +-2.5%)."""
        values = self.samples[name]
        if len(values) < 4:
            return (max(values) - min(values)) / statistics.median(values)
        q1, _, q3 = statistics.quantiles(values, n=4)
        return (q3 - q1) / statistics.median(values)

    def ratio(self, name: str, reference: str) -> float:
        """Median over rounds of ``name``'s time over ``reference``'s."""
        return statistics.median(self.ratios(name, reference))

    def ratios(self, name: str, reference: str) -> list[float]:
        """Per round, ``name``'s time over ``reference``'s."""
        pairs = zip(self.samples[name], self.samples[reference], strict=True)
        return [a / b for a, b in pairs]


def median_interval(values: list[float]) -> tuple[float, float]:
    """A 95% confidence interval for the median of ``values`` (distribution-
    free: order statistics at n/2 -+ 0.98 sqrt(n), the normal approximation
    to the binomial; the whole range below 6 values)."""
    ordered = sorted(values)
    n = len(ordered)
    k = max(0, int((n - 1.96 * n**0.5) / 2))
    return ordered[k], ordered[n - 1 - k]


def calibrate(timer: Timer, min_time: float) -> int:
    """The smallest power-of-two loop count whose sample lasts ``min_time``.

    ``min_time <= 0`` means one loop per sample, with no calibration run (for
    bodies that take many milliseconds each).
    """
    loops = 1
    if min_time <= 0:
        return loops
    while timer(loops) < min_time and loops < 1 << 30:
        loops *= 2
    return loops


def measure(timers: Mapping[str, Timer], settings: Settings, seed: int) -> Samples:
    """Sample every timer ``settings.rounds`` times, interleaved and shuffled."""
    loops = {
        name: calibrate(timer, settings.min_time) for name, timer in timers.items()
    }
    for _ in range(settings.warmups):
        for name, timer in timers.items():
            timer(loops[name])
    order = list(timers)
    rng = random.Random(seed)
    result: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(settings.rounds):
        rng.shuffle(order)
        for name in order:
            result[name].append(timers[name](loops[name]) / loops[name])
    return Samples(result)


def run_workers(case: str, settings: Settings) -> dict[str, Samples]:
    """Run ``case``'s timing groups in fresh worker processes; pool the rounds.

    Each worker is ``python -m benchmarks --worker CASE`` and prints JSON:
    ``{group label: {timer name: [seconds per loop, ...]}}``.
    """
    pooled: dict[str, Samples] = {}
    root = Path(__file__).resolve().parent.parent
    for index in range(settings.processes):
        argv = [sys.executable, "-m", "benchmarks", "--worker", case]
        argv += [*settings.to_argv(), "--seed", str(index)]
        done = subprocess.run(
            argv, cwd=root, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"worker for {case!r} failed:\n{done.stderr}")
        for label, samples in json.loads(done.stdout).items():
            pooled.setdefault(label, Samples()).extend(samples)
    return pooled
