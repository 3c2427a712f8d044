"""``python -m concsignals demo``: one signal, slow receivers, three ways to run them.

Connects receivers that wait on I/O (they sleep) and receivers that burn CPU
(pure Python), sends to each group inline, through a thread pool and through a
process pool, and prints a table of wall times and speedups.  Needs nothing
but the standard library.
"""

from __future__ import annotations

import argparse
import importlib
import math
import multiprocessing
import os
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from concsignals import Signal

MAX_SCALE = 100.0  # about a quarter of an hour

USAGE = """\
usage: python -m concsignals <command>

commands:
  demo [--scale S]   run receivers inline, on threads and on processes, and
                     print wall times and speedups (about 10 s; S scales the
                     work, e.g. 0.2 for a quick look; demo --help for more)
"""

SCALE_HELP = (
    "multiply the work by S: each I/O receiver waits 0.25*S s and each CPU "
    "receiver computes for about 0.4*S s (default 1: about 10 s in all; 0.2 for "
    f"a quick look). A number > 0 and <= {MAX_SCALE:g}."
)


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
    explain(table, list(runs), workers, scale)
    print(
        "\nresults identical and in connection order everywhere:",
        "yes" if same else "NO",
    )
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0 if same else 1


def fmt_seconds(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 0.1 else f"{seconds * 1e3:.1f} ms"


def print_table(table: dict[str, dict[str, float]], columns: list[str]) -> None:
    """Wall time of one send per group and way, and its speedup over inline."""
    rows = [["receivers", *columns]]
    for group, times in table.items():
        base = times[columns[0]]
        rows.append(
            [group]
            + [f"{fmt_seconds(times[c])} ({base / times[c]:.1f}x)" for c in columns]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        first, *cells = row
        line = f"{first:<{widths[0]}}"
        line += "".join(f"   {c:>{w}}" for c, w in zip(cells, widths[1:], strict=True))
        print(f"  {line}")


def gil_state() -> str:
    """Which build this is, and whether the GIL is on."""
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        return "a standard build of Python: the GIL is on"
    if getattr(sys, "_is_gil_enabled", lambda: True)():
        return (
            "a free-threaded build of Python, but the GIL is on (switched on by "
            "PYTHON_GIL=1, or by an extension module that needs it)"
        )
    return "a free-threaded build of Python with the GIL off"


def explain(
    table: dict[str, dict[str, float]], columns: list[str], workers: int, scale: float
) -> None:
    """Say what the table means, for the build it ran on."""
    _, threads, processes = columns
    print(
        "\nEach cell: the wall time of one send to that group, and how many times"
        "\nfaster than inline. How to read it:"
        f"\n  - receivers that wait (I/O) overlap their waits on {threads}:"
        "\n    threads help them whatever the build;"
        "\n  - receivers that compute (CPU) need the interpreter: while the GIL is"
        "\n    on, one thread at a time runs Python, so threads do not help them and"
        f"\n    {processes} do (one core each); with the GIL off, threads help both."
        f"\nThis run: {gil_state()}."
    )
    cpu = table["CPU"]
    if cpu[processes] >= cpu[columns[0]] or scale < 0.5:
        print(
            "\nProcesses cost time of their own: starting the workers (done before"
            "\nthe table, timed above), then, on every send, pickling each receiver"
            "\nand its arguments to a worker and its result back. At small scales"
            "\nthat costs more than the work saves; try --scale 1 or more."
        )


class OneLineParser(argparse.ArgumentParser):
    """Reports a bad argument in one line, not with the usage block."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def scale_type(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_SCALE:  # False for nan, so nan is refused too
        raise argparse.ArgumentTypeError(
            f"must be a number > 0 and <= {MAX_SCALE:g}, not {text!r}"
        )
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if args[0] != "demo":
        print(f"unknown command {args[0]!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    parser = OneLineParser(
        prog="python -m concsignals demo",
        description="Send to slow receivers inline, through threads and through "
        "processes, and print wall times and speedups.",
    )
    parser.add_argument(
        "--scale", type=scale_type, default=1.0, metavar="S", help=SCALE_HELP
    )
    options = parser.parse_args(args[1:])
    return demo(options.scale)


if __name__ == "__main__":
    sys.exit(main())
