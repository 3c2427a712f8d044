"""Apply each critical mutant to a copy of the repository and require a failure.

Design
------
A *critical mutant* breaks exactly one promise of the contract (see
``tests/mutation/critical.py``): it replaces one exact piece of source text by
another.  For each mutant this runner

1. copies the repository's ``concsignals/``, ``tests/``, ``stress/`` and
   ``pyproject.toml`` into a fresh temporary directory (the working tree is
   never touched, so an interrupted run leaves nothing behind);
2. replaces the mutant's ``old`` text by its ``new`` text in its file, and
   refuses to go on if ``old`` does not occur there exactly once (an anchor
   that drifted away from the code is an error, never a silent pass);
3. runs pytest on the mutant's tests in that directory, where ``concsignals``
   and ``tests`` are imported from the copy (the copy's directory comes first
   on ``sys.path``, before any installed or editable concsignals);
4. counts the mutant *killed* if pytest reports failing tests (exit code 1).
   Exit 0 means the promise can break unnoticed: the run fails.  Any other
   exit code (no tests collected, usage error, crash) is an error of the
   mutant's definition, and fails the run too.

Mutants run two at a time (the machines have two cores); each pytest run has
its own per-test timeout, so a mutant that makes a test hang is killed by the
hang.  ``--list`` prints the mutants, ``--only NAME`` runs some of them, and
``--check`` only checks that every anchor matches (fast, no tests).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COPIED = ("concsignals", "tests", "stress", "pyproject.toml")
#: Seconds one mutant's tests may take in all; past it the mutant counts as
#: killed (its tests hang rather than pass) and its processes are ended.
RUN_LIMIT = 600


@dataclass(frozen=True)
class Mutant:
    """One deliberate break of one promise."""

    name: str
    promise: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]

    def apply(self, root: Path) -> None:
        path = root / self.file
        text = path.read_text()
        found = text.count(self.old)
        if found != 1:
            raise AnchorError(
                f"mutant {self.name!r}: its text occurs {found} times in "
                f"{self.file} (must be exactly once):\n{self.old}"
            )
        path.write_text(text.replace(self.old, self.new))


class AnchorError(Exception):
    """A mutant's ``old`` text is not found exactly once."""


@dataclass(frozen=True)
class Verdict:
    mutant: Mutant
    code: int
    seconds: float
    tail: str

    @property
    def killed(self) -> bool:
        return self.code == 1

    def describe(self) -> str:
        if self.killed:
            return "killed"
        if self.code == 0:
            return "SURVIVED: no test failed"
        return f"ERROR: pytest exit code {self.code}"


def copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


def run_one(mutant: Mutant, timeout: int) -> Verdict:
    """Apply ``mutant`` to a fresh copy and run its tests there."""
    with tempfile.TemporaryDirectory(prefix="concsignals-mutant-") as tmp:
        root = Path(tmp)
        copy_tree(root)
        try:
            mutant.apply(root)
        except AnchorError as err:
            return Verdict(mutant, -1, 0.0, str(err))
        env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("PYTEST_ADDOPTS", None)
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--timeout={timeout}",
            *mutant.tests,
        ]
        start = time.monotonic()
        # Output goes to a file, not a pipe: a worker process a test leaves
        # behind (a forkserver) would hold a pipe open and hang the wait.  Its
        # own session, so whatever it leaves behind is ended with it.
        with open(root / "pytest.log", "w+") as log:
            proc = subprocess.Popen(
                command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            try:
                code = proc.wait(timeout=RUN_LIMIT)
            except subprocess.TimeoutExpired:  # a hang the tests did not end
                code = 1
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            log.seek(0)
            lines = log.read().strip().splitlines()
        return Verdict(mutant, code, time.monotonic() - start, "\n".join(lines[-15:]))


def check_anchors(mutants: Sequence[Mutant]) -> list[str]:
    """The anchor errors of ``mutants`` against the working tree."""
    errors = []
    for mutant in mutants:
        found = (ROOT / mutant.file).read_text().count(mutant.old)
        if found != 1:
            errors.append(f"{mutant.name}: anchor found {found} times in {mutant.file}")
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    from tests.mutation.critical import MUTANTS

    parser = argparse.ArgumentParser(
        prog="python -m tests.mutation",
        description="Apply each critical mutant (one per promise of the contract) "
        "and require the test suite to fail.  About 3-6 minutes on 2 cores.",
    )
    parser.add_argument("--list", action="store_true", help="list the mutants")
    parser.add_argument("--check", action="store_true", help="only check anchors")
    parser.add_argument("--only", action="append", default=[], metavar="NAME")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=60, help="per test, seconds")
    args = parser.parse_args(argv)

    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.only and len(mutants) != len(set(args.only)):
        known = ", ".join(m.name for m in MUTANTS)
        parser.error(f"unknown mutant in {args.only}; known: {known}")
    if args.list:
        for m in mutants:
            print(f"{m.name:32} {m.file:28} {m.promise}")
        return 0
    errors = check_anchors(mutants)
    if errors or args.check:
        print("\n".join(errors) or f"all {len(mutants)} anchors match")
        return 1 if errors else 0

    print(f"critical mutants: {len(mutants)}, {args.jobs} at a time", flush=True)
    bad = 0
    with ThreadPoolExecutor(args.jobs) as pool:
        for verdict in pool.map(lambda m: run_one(m, args.timeout), mutants):
            m = verdict.mutant
            print(f"  {verdict.describe():28} {verdict.seconds:6.1f} s  {m.name}")
            if not verdict.killed:
                bad += 1
                print(f"    promise: {m.promise}\n    {m.file}\n{verdict.tail}")
    print(
        f"{len(mutants) - bad} of {len(mutants)} critical mutants killed"
        + ("" if not bad else f"; {bad} not")
    )
    return 1 if bad else 0
