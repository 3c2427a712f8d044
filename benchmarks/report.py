"""Results as tables, targets and plots; printed, and written to docs/."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .harness import Samples, Settings

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "benchmarks.md"
PLOTS = ROOT / "docs" / "_static" / "benchmarks"
PLOTS_URL = "_static/benchmarks"
PEER_PACKAGES = ("django", "blinker", "psygnal", "pydispatcher", "dask", "distributed")


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Target:
    text: str
    measured: str
    met: bool | None  # None: could not be measured in this run

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "not available"}[self.met]


@dataclass
class CaseResult:
    name: str
    title: str
    method: str  # how it was measured, in a sentence or two
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Sentences for the page's summary, above the targets.
    summary: list[str] = field(default_factory=list)
    #: Draws this case's figures into a directory; returns (file name, caption).
    plot: Callable[[Path], list[tuple[str, str]]] | None = None
    figures: list[tuple[str, str]] = field(default_factory=list)
    #: The 1-minute load average when the case began and ended (other work
    #: on the machine; 2.0 fills two cores).
    load: tuple[float, float] | None = None
    seconds: float = 0.0


# -- formatting ---------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:.2f}x"


def fmt_bytes(n: float) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


TIMING_HEADERS = [
    "library",
    "median",
    "best",
    "spread",
    "time ÷ concsignals",
    "time ÷ floor",
]


def timing_rows(samples: Samples, names: Sequence[str]) -> list[list[str]]:
    """One row per timer: median, best, spread and the paired ratios."""
    rows = []
    for name in names:
        rows.append(
            [
                name,
                fmt_time(samples.median(name)),
                fmt_time(samples.best(name)),
                f"±{samples.spread(name) / 2:.1%}",
                fmt_ratio(samples.ratio(name, "concsignals")),
                fmt_ratio(samples.ratio(name, "floor")),
            ]
        )
    return rows


# -- machine ------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_lines() -> list[str]:
    import concsignals

    versions = ", ".join(f"{p} {version(p)}" for p in PEER_PACKAGES)
    return [
        f"CPU: {cpu_model()}, {os.cpu_count()} cores visible "
        "(shared with other work while measuring)",
        f"OS: {platform.platform()}",
        f"Python: {sys.version.split()[0]} ({platform.python_implementation()})",
        f"concsignals {concsignals.__version__}; {versions}",
    ]


# -- output -------------------------------------------------------------------


def render_text(result: CaseResult) -> str:
    out = [f"== {result.name}: {result.title}"]
    for table in result.tables:
        out.append(f"-- {table.title}")
        widths = [
            max(len(str(row[i])) for row in [table.headers, *table.rows])
            for i in range(len(table.headers))
        ]
        for row in [table.headers, *table.rows]:
            cells = zip(row, widths, strict=True)
            out.append("  ".join(str(c).ljust(w) for c, w in cells))
    out.extend(f"summary: {line}" for line in result.summary)
    for target in result.targets:
        out.append(f"target: {target.text}: {target.measured} -> {target.verdict}")
    if result.load is not None:
        out.append(f"measured in {load_text(result)}")
    out.extend(f"note: {note}" for note in result.notes)
    return "\n".join(out)


def load_text(result: CaseResult) -> str:
    assert result.load is not None
    start, end = result.load
    return (
        f"{result.seconds:.0f} s; 1-minute load average {start:.1f} at the start "
        f"and {end:.1f} at the end, on {os.cpu_count()} cores"
    )


def markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_markdown(
    results: Sequence[CaseResult],
    settings: Settings,
    command: str,
    started: datetime.datetime,
    footnotes: Sequence[str],
) -> str:
    lines = [
        "# Benchmarks",
        "",
        "concsignals measured side by side with django.dispatch, blinker, psygnal "
        "and pydispatcher, and against the *floor* -- the least any dispatcher "
        "must do -- all in one run of `python -m benchmarks` on one machine. "
        "Every figure in the tables and plots comes from that run.",
        "",
        f"- Run: `{command}`, started {started:%Y-%m-%d %H:%M} UTC",
    ]
    lines += [f"- {line}" for line in machine_lines()]
    lines += [
        f"- Harness: {settings.processes} worker processes x {settings.rounds} "
        f"rounds per timing case, samples of at least {settings.min_time * 1e3:g} "
        f"ms, {settings.warmups} warm-up samples per process (see "
        "[How it is measured](#how-it-is-measured)).",
        "",
        "## Summary",
        "",
    ]
    lines += [f"- {line}" for r in results for line in r.summary]
    lines += ["", "## Targets", ""]
    rows = [
        [r.name, t.text, t.measured, f"**{t.verdict}**"]
        for r in results
        for t in r.targets
    ]
    lines += markdown_table(["case", "target", "measured", "verdict"], rows)
    for result in results:
        lines += ["", f"## {result.title}", "", result.method]
        if result.load is not None:
            lines += ["", f"Measured in {load_text(result)}."]
        lines.append("")
        for name, caption in result.figures:
            lines += [f"![{caption}]({PLOTS_URL}/{name})", ""]
        for table in result.tables:
            lines += [f"**{table.title}**", ""]
            lines += markdown_table(table.headers, table.rows)
            lines.append("")
        lines += [f"- {note}" for note in result.notes]
    lines += ["", "## How it is measured", "", HOW, "", "## Notes on the peers", ""]
    lines += [f"- {note}" for note in footnotes]
    return "\n".join(lines) + "\n"


HOW = """\
The harness is in `benchmarks/harness.py`. It is an in-process harness in
the spirit of pyperf rather than pyperf's own `Runner`: pyperf measures one
benchmark after another, each in its own processes, and on a shared machine
the load drifts between them -- while it is the *ratios* between libraries
this page is about. So within a group of timers (one receiver count, say),
every library is sampled once per round, in a freshly shuffled order, and each
ratio is the median of the per-round ratios of paired samples. Loop counts are
calibrated (doubled until a sample lasts the minimum time); each process warms
every timer up before measuring; the timing cases (1, 2, 3, 6, 7, 10, 11 and
the overhead part of 5) run in several fresh worker processes whose rounds
are pooled.
"median" and "best" are per operation; "spread" is half the interquartile
range, relative to the median.

Single-threaded timing loops (cases 1, 2, 3, 7, 10, 11 and the first table
of 6) read
the thread's CPU time (`time.thread_time`), not the wall clock: the machine
is shared, and time this process spends descheduled while another process runs
is no library's cost. Everything where waiting is the point -- contention,
fan-out on threads, processes and dask, sleeping receivers -- is wall time,
and is affected by the load shown under each case. The garbage collector stays
on: collecting what a send allocates is part of its cost. Timings include the
benchmark's own loop (a few ns per operation), the same for every library."""
