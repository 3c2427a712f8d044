"""``python -m concsignals demo``: one signal, slow receivers, three ways to run them.

Connects receivers that wait on I/O (they sleep) and receivers that burn CPU
(pure Python), sends to each group inline, through a thread pool and through a
process pool, and prints a table of wall times and speedups.  Needs nothing
but the standard library.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from concsignals import Signal

USAGE = """\
usage: python -m concsignals <command>

commands:
  demo [--scale S]   run receivers inline, on threads and on processes, and
                     print wall times and speedups (about 10 s; S scales the
                     work, e.g. 0.2 for a quick look)
"""


class Waiter:
    """An I/O-bound receiver: waits ``seconds`` as if for a slow service."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds

    def __call__(self, signal: Any, sender: Any, **named: Any) -> str:
        time.sleep(self.seconds)
        return f"{self.name} done"

    def __repr__(self) -> str:
        return f"Waiter({self.name!r})"


class Burner:
    """A CPU-bound receiver: ``loops`` iterations of pure-Python arithmetic."""

    def __init__(self, name: str, loops: int) -> None:
        self.name = name
        self.loops = loops

    def __call__(self, signal: Any, sender: Any, **named: Any) -> int:
        return burn(self.loops)

    def __repr__(self) -> str:
        return f"Burner({self.name!r})"


def burn(loops: int) -> int:
    total = 0
    for i in range(loops):
        total = (total + i * i) % 1_000_003
    return total


def calibrate(seconds: float) -> int:
    """How many :func:`burn` loops take about ``seconds`` on this machine."""
    loops = 20_000
    while True:
        started = time.perf_counter()
        burn(loops)
        took = time.perf_counter() - started
        if took > 0.05:
            return max(1, int(loops * seconds / took))
        loops *= 4


def timed(label: str, send: Callable[[], list[tuple[Any, Any]]]) -> tuple[float, Any]:
    print(f"  {label:<34}", end="", flush=True)
    started = time.perf_counter()
    results = send()
    took = time.perf_counter() - started
    print(f"{took:6.2f} s", flush=True)
    return took, [(r, value) for r, value in results]


def demo(scale: float) -> int:
    # Receivers must be importable by worker processes under a real module
    # name, not "__main__": use this module's importable twin.
    here = importlib.import_module("concsignals.__main__")
    cores = os.cpu_count() or 1
    workers = max(2, min(cores, 4))
    io_wait = 0.25 * scale
    loops = calibrate(0.4 * scale)
    waiters = [here.Waiter(f"io{i}", io_wait) for i in range(8)]
    burners = [here.Burner(f"cpu{i}", loops) for i in range(4)]
    io, cpu = Signal(), Signal()
    for w in waiters:
        io.connect(w)
    for b in burners:
        cpu.connect(b)

    print(f"concsignals demo: {cores} CPU cores, {workers} worker processes")
    print(f"  I/O: 8 receivers, each waits {io_wait:.2f} s")
    print(f"  CPU: 4 receivers, each burns ~{0.4 * scale:.2f} s of pure Python\n")
    started = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")  # safe with threads, on every OS
    with (
        ThreadPoolExecutor(8) as threads,
        ProcessPoolExecutor(workers, mp_context=ctx) as processes,
    ):
        list(processes.map(int, range(workers * 2)))  # start the workers now
        print(f"  (worker processes started in {time.perf_counter() - started:.2f} s)")
        runs: dict[str, Executor | None] = {
            "inline": None,
            f"{8} threads": threads,
            f"{workers} processes": processes,
        }
        table: dict[str, dict[str, float]] = {"I/O": {}, "CPU": {}}
        same = True
        for group, sig in (("I/O", io), ("CPU", cpu)):
            first = None
            for how, executor in runs.items():
                took, results = timed(
                    f"{group} receivers, {how} ...",
                    lambda s=sig, e=executor: s.using(e).send(sender=None),  # type: ignore[misc]
                )
                table[group][how] = took
                first = results if first is None else first
                same = same and results == first
    print()
    print_table(table, list(runs))
    print(
        "\nresults identical and in connection order everywhere:",
        "yes" if same else "NO",
    )
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0 if same else 1


def print_table(table: dict[str, dict[str, float]], columns: list[str]) -> None:
    print(f"  {'receivers':<10}" + "".join(f"{c:>22}" for c in columns))
    for group, times in table.items():
        base = times[columns[0]]
        cells = [
            f"{times[c]:8.2f} s" + (f" ({base / times[c]:4.1f}x)" if i else " " * 8)
            for i, c in enumerate(columns)
        ]
        print(f"  {group:<10}" + "".join(f"{cell:>22}" for cell in cells))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if args[0] != "demo":
        print(f"unknown command {args[0]!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m concsignals demo")
    parser.add_argument("--scale", type=float, default=1.0)
    options = parser.parse_args(args[1:])
    if not options.scale > 0:
        parser.error(f"--scale must be > 0, not {options.scale}")
    return demo(options.scale)


if __name__ == "__main__":
    sys.exit(main())
