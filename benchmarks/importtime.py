"""Case 8: the cost of ``import concsignals`` next to its peers' imports.

Each sample is one fresh interpreter (``python -c``) that imports one module
and reports how long the ``import`` statement took and how many modules it
added to ``sys.modules``.  The clock is the thread's CPU time, as in the other
single-threaded cases (time spent descheduled on a shared machine is no
library's cost), read around the statement alone, so the interpreter's own
start-up is not counted.  Samples are taken in rounds, every
library once per round in a shuffled order, so all of them see the same
load; the figure kept per library is the best of its samples (the import
cost with the least interference), and ratios are between best times.  A
warm-up round first writes any missing bytecode caches (the children run
without ``PYTHONDONTWRITEBYTECODE``), so every measured import reads cached
bytecode, as an application's import usually does.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap

from .cases import Case, register
from .harness import Settings
from .report import CaseResult, Table, Target, fmt_ratio, fmt_time

#: The module each library is imported as, in display order.
MODULES = {
    "concsignals": "concsignals",
    "blinker": "blinker",
    "django": "django.dispatch",
    "psygnal": "psygnal",
}

CHILD = textwrap.dedent(
    """\
    import sys, time
    before = len(sys.modules)
    started = time.thread_time()
    __import__({module!r})
    took = time.thread_time() - started
    added = len(sys.modules) - before
    print(took, added)
    """
)


def import_once(module: str) -> tuple[float, int] | None:
    """One fresh interpreter's import of ``module``: (seconds, modules added).

    ``None`` if the module is not installed.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(module=module)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if done.returncode != 0:
        return None
    seconds, added = done.stdout.split()
    return float(seconds), int(added)


def sample(rounds: int, seed: int) -> dict[str, list[tuple[float, int]]]:
    """``rounds`` imports of each installed library, interleaved and shuffled."""
    # The warm-up round: finds what is installed and writes bytecode caches.
    names = [name for name, module in MODULES.items() if import_once(module)]
    found: dict[str, list[tuple[float, int]]] = {name: [] for name in names}
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            got = import_once(MODULES[name])
            if got is not None:
                found[name].append(got)
    return found


def run(settings: Settings) -> CaseResult:
    rounds = 5 if settings.quick else 25
    found = sample(rounds, seed=7)
    best = {name: min(s for s, _ in runs) for name, runs in found.items() if runs}
    result = CaseResult(
        name=CASE.name,
        title=CASE.title,
        method="`import concsignals` and its peers' imports, each in a fresh "
        f"interpreter, {rounds} rounds of every library in a shuffled order "
        "after one warm-up round (bytecode cached); the time of the `import` "
        "statement alone (thread CPU time), best of the rounds.",
        notes=[
            "Interpreter start-up is not counted; what the interpreter imports "
            "at start-up (`site`, `os`, ...) is already loaded for every library.",
            "django: `import django.dispatch`, what a project importing Django's "
            "signals pays.",
        ],
    )
    rows = []
    for name in MODULES:
        if name not in best:
            rows.append([name, "not installed", "", "", ""])
            continue
        runs = found[name]
        median = sorted(s for s, _ in runs)[len(runs) // 2]
        ours = best.get("concsignals")
        ratio = fmt_ratio(ours / best[name]) if ours else ""
        rows.append(
            [
                MODULES[name],
                fmt_time(best[name]),
                fmt_time(median),
                str(max(n for _, n in runs)),
                ratio,
            ]
        )
    result.tables.append(
        Table(
            "import cost in a fresh interpreter",
            ["import", "best", "median", "modules added", "concsignals ÷ this"],
            rows,
        )
    )
    result.targets.append(import_target(best))
    return result


def import_target(best: dict[str, float]) -> Target:
    text = "`import concsignals` costs no more than `import blinker` (issue 16)"
    if "concsignals" not in best or "blinker" not in best:
        return Target(text, "blinker not installed", None)
    ratio = best["concsignals"] / best["blinker"]
    return Target(text, f"{fmt_ratio(ratio)} blinker's", ratio <= 1.0)


CASE = register(Case("importtime", "8. Import cost in a fresh interpreter", run))
