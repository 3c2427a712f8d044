"""The full mutation run: every mutant mutmut makes in the core, and its score.

``python -m tests.mutation.full`` runs ``mutmut run`` (configured in
``[tool.mutmut]`` of ``pyproject.toml``: which modules, which tests) and then
prints the score of each module; ``--report`` prints the score of the last
run only (mutmut keeps its results in ``mutants/``).  On demand, not in CI:
it takes tens of minutes (see ``docs/mutation.md``).

How a mutant counts
-------------------
* *killed*: a test failed (mutmut's "killed"), or the tests hung until
  mutmut's time limit ("timeout": a hang is a failure too);
* *by mypy*: ``mypy --strict``, one of CI's gates, rejects the mutated code
  (mutmut's ``type_check_command``), so it could never be merged; no test
  runs.  Counted as killed;
* *equivalent*: it survived, and ``EQUIVALENT`` below says why it cannot
  change behaviour;
* *perf only*: likewise listed, but what it changes is speed or memory only
  (a fast path or cache not used, compaction sooner or later);
* *survived*: it survived and is not known to be equivalent: a gap in the
  tests, to be closed by a test or explained in ``EQUIVALENT``;
* *no tests*: no test of the selection calls the mutated function in the
  test process (for example code that only runs in a worker process).

The score of a module is (killed + by mypy) / (total - equivalent).
``EQUIVALENT`` names mutants as mutmut does (module, function, number): the
numbers change when the function's source does, so the report lists every
name in it that no longer matches a surviving mutant, and such a list is out
of date.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tests.mutation.equivalent import EQUIVALENT

ROOT = Path(__file__).resolve().parents[2]
MUTANTS = ROOT / "mutants"

#: mutmut's exit codes (``mutmut.stats.status_by_exit_code``), as counted here.
KILLED = {1, 3, 36, -24, 24, 152, 255}
#: How ``EQUIVALENT`` begins the reason of a survivor that changes only speed
#: or memory (counted apart, and out of the score like an equivalent).
PERF = ("performance only", "memory only")
#: Rejected by ``mypy --strict`` (``type_check_command``) before any test ran.
BY_MYPY = {37}
SURVIVED = {0}
NO_TESTS = {5, 33}
#: Examples of ``tests/test_state_machine.py`` per mutant (50 in the suite):
#: its ``gc.collect()`` steps are slow in mutmut's large process.
SM = "10"


def results() -> dict[str, dict[str, int | None]]:
    """``module -> {mutant name: exit code}`` of the last run."""
    out: dict[str, dict[str, int | None]] = {}
    for meta in sorted(MUTANTS.glob("concsignals/**/*.py.meta")):
        module = meta.relative_to(MUTANTS).as_posix().removesuffix(".meta")
        data = json.loads(meta.read_text(encoding="utf-8"))
        out[module] = data.get("exit_code_by_key", {})
    return out


def classify(name: str, code: int | None) -> str:
    if code in KILLED:
        return "killed"
    if code in BY_MYPY:
        return "by mypy"
    if code in SURVIVED:
        if name not in EQUIVALENT:
            return "survived"
        return "perf only" if EQUIVALENT[name].startswith(PERF) else "equivalent"
    if code in NO_TESTS:
        return "no tests"
    if code is None:
        return "not checked"
    return "other"


def report(by_module: dict[str, dict[str, int | None]]) -> int:
    """Print the table; 1 if a survivor is unexplained or the list is stale."""
    columns = (
        "killed",
        "by mypy",
        "equivalent",
        "perf only",
        "survived",
        "no tests",
        "not checked",
        "other",
    )
    total: Counter[str] = Counter()
    survivors: list[str] = []
    surviving: set[str] = set()
    heads = " ".join(f"{c:>11}" for c in columns)
    print(f"{'module':28} {'total':>6} {heads}  {'score':>6}  {'tests':>6}")
    for module, codes in by_module.items():
        counts: Counter[str] = Counter()
        for name, code in codes.items():
            kind = classify(name, code)
            counts[kind] += 1
            if code in SURVIVED:
                surviving.add(name)
            if kind == "survived":
                survivors.append(name)
        total += counts
        print(_row(module, counts, columns))
    print(_row("all", total, columns))
    # Stale: listed, but checked by this run and not a survivor, or gone.
    checked = {n: c for codes in by_module.values() for n, c in codes.items()}
    stale = sorted(
        n for n in EQUIVALENT if n not in surviving and checked.get(n, 0) is not None
    )
    unchecked = sum(code is None for code in checked.values())
    if unchecked:
        print(f"not checked yet: {unchecked} (the run was interrupted)")
    for name in survivors:
        print(f"survived: {name}")
    for name in stale:
        print(f"listed as equivalent but not a survivor of this run: {name}")
    return 1 if survivors or stale else 0


def _row(label: str, counts: Counter[str], columns: Sequence[str]) -> str:
    """A module's counts, its score, and the score of its tests alone (the
    mutants mypy rejected left out)."""
    n = sum(counts.values())
    judged = n - counts["equivalent"] - counts["perf only"] - counts["not checked"]
    caught = counts["killed"] + counts["by mypy"]
    score = f"{100 * caught / judged:5.1f}%" if judged else "    -"
    tested = judged - counts["by mypy"]
    by_tests = f"{100 * counts['killed'] / tested:5.1f}%" if tested else "    -"
    cells = " ".join(f"{counts[c]:>11}" for c in columns)
    return f"{label:28} {n:>6} {cells}  {score}  {by_tests}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.mutation.full", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--report", action="store_true", help="last run's score")
    parser.add_argument("--jobs", type=int, default=2, help="mutants at once")
    parser.add_argument(
        "names", nargs="*", help="only these mutants (globs: 'concsignals._send.*')"
    )
    args = parser.parse_args(argv)
    if not args.report:
        began = time.monotonic()
        cmd = ["mutmut", "run", "--max-children", str(args.jobs), *args.names]
        env = {**os.environ, "SM_EXAMPLES": os.environ.get("SM_EXAMPLES", SM)}
        code = subprocess.call(cmd, cwd=ROOT, env=env)
        print(f"mutmut run: exit {code} after {time.monotonic() - began:.0f} s")
        if code != 0:
            return code
    return report(results())


if __name__ == "__main__":
    sys.exit(main())
