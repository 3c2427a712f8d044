"""Case 1: inline send with 0 to 1000 receivers, weak and strong."""

from __future__ import annotations

from pathlib import Path

from . import plots
from .cases import Case, register, timing_samples
from .harness import Samples, Settings, Timer
from .peers import LIBRARIES, RETURN_RESULTS, inline_timers
from .report import TIMING_HEADERS, CaseResult, Table, Target, timing_rows

COUNTS = (0, 1, 10, 100, 1000)
KINDS = ("weak", "strong")


def groups(settings: Settings, keep: list[object]) -> dict[str, dict[str, Timer]]:
    return {
        f"{kind}/{n}": inline_timers(n, kind == "weak", keep)
        for kind in KINDS
        for n in COUNTS
    }


def run(settings: Settings) -> CaseResult:
    samples = timing_samples(CASE, settings)
    result = CaseResult(
        name=CASE.name,
        title=CASE.title,
        method="`signal.send(sender, payload=1)` on a signal with *n* receivers "
        "connected for any sender; each receiver returns `1`. Times are per send.",
        notes=[
            "Ratios within a few percent of a target's threshold (at 0 receivers "
            "the gap to the floor is a few ns) move by about that much between "
            "runs on this shared machine; the spread column shows each row's.",
        ],
    )
    for kind in KINDS:
        rows = []
        for n in COUNTS:
            rows += [
                [str(n), *row] for row in timing_rows(samples[f"{kind}/{n}"], LIBRARIES)
            ]
        result.tables.append(
            Table(
                f"{kind} receivers (weak={kind == 'weak'})",
                ["receivers", *TIMING_HEADERS],
                rows,
            )
        )
    result.targets = targets(samples)
    result.summary = [psygnal_summary(samples)]
    result.plot = lambda out: plot(samples, out)
    return result


def psygnal_summary(samples: dict[str, Samples]) -> str:
    """How much faster psygnal's send is, which does less (case 1, weak)."""
    faster = {
        n: 1 / samples[f"weak/{n}"].ratio("psygnal", "concsignals") for n in COUNTS
    }
    return (
        "**psygnal is faster at many receivers.** Its `emit` returns no results "
        "and it is compiled (mypyc), while concsignals and the other libraries "
        "are pure Python and return every receiver's result; psygnal's send is "
        f"{faster[100]:.1f}x as fast as concsignals' at 100 receivers and "
        f"{faster[1000]:.1f}x at 1,000 ({faster[10]:.1f}x at 10; case 1, weak "
        'receivers). The targets\' "fastest" counts only the libraries that '
        "return results."
    )


def targets(samples: dict[str, Samples]) -> list[Target]:
    found = []
    for kind in KINDS:
        for n in (10, 100):
            r = samples[f"{kind}/{n}"].ratio("concsignals", "floor")
            found.append(
                Target(
                    f"{kind}, {n} receivers: within 1.15x of the floor",
                    f"{r:.3f}x",
                    r <= 1.15,
                )
            )
        r = samples[f"{kind}/0"].ratio("concsignals", "floor")
        found.append(
            Target(
                f"{kind}, 0 receivers: no slower than the floor",
                f"{r:.3f}x",
                r <= 1.0,
            )
        )
        r = samples[f"{kind}/10"].ratio("django", "concsignals")
        found.append(
            Target(
                f"{kind}, 10 receivers: >= 1.3x faster than django.dispatch",
                f"{r:.3f}x faster",
                r >= 1.3,
            )
        )
        slower = []
        for n in COUNTS:
            s = samples[f"{kind}/{n}"]
            best = min(
                (s.ratio(p, "concsignals"), p)
                for p in RETURN_RESULTS
                if p != "concsignals"
            )
            if best[0] <= 1.0:
                slower.append(f"{n}: {best[1]} {1 / best[0]:.2f}x faster")
        found.append(
            Target(
                f"{kind}: fastest of the libraries that return results, at every count",
                "; ".join(slower) if slower else "fastest at 0, 1, 10, 100, 1000",
                not slower,
            )
        )
    return found


def plot(samples: dict[str, Samples], out: Path) -> list[tuple[str, str]]:
    xs = [str(n) for n in COUNTS]
    panels = {
        f"{kind} receivers": {
            lib: [samples[f"{kind}/{n}"].median(lib) * 1e6 for n in COUNTS]
            for lib in LIBRARIES
        }
        for kind in KINDS
    }
    plots.lines(
        out / "inline_time.png",
        "Inline send: time per send (median, log scale)",
        panels,
        xs,
        "receivers",
        "µs per send",
    )
    ratios = {
        f"{kind} receivers": {
            lib: [samples[f"{kind}/{n}"].ratio(lib, "floor") for n in COUNTS]
            for lib in LIBRARIES
        }
        for kind in KINDS
    }
    plots.lines(
        out / "inline_ratio.png",
        "Inline send: time relative to the floor (1.0 = floor, log scale)",
        ratios,
        xs,
        "receivers",
        "time ÷ floor",
    )
    return [
        ("inline_time.png", "Inline send, time per send"),
        ("inline_ratio.png", "Inline send, time relative to the floor"),
    ]


CASE = register(
    Case(
        "inline",
        "1. Inline send, 0 to 1000 receivers, weak and strong",
        run,
        groups,
    )
)
