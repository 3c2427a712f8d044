"""Command line: ``python -m benchmarks [--quick] [--case NAME]... [--write]``."""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from . import report
from .cases import CASES, load_all, measure_groups, ordered
from .harness import FULL, QUICK, Settings

#: What the cases import beside concsignals: the ``bench`` extra.
EXTRA = 'python -m pip install -e ".[bench]"'
NEEDED = ("blinker", "psygnal", "pydispatch", "django", "dask", "distributed")
NEEDED += ("matplotlib", "opentelemetry")

DESCRIPTION = f"""\
Benchmark concsignals side by side with django.dispatch, blinker, psygnal and
pydispatcher, and against the floor.

Needs the bench extra:  {EXTRA}

A full run takes about 6 minutes on 2 cores, --quick about 1 minute. Results
are printed; the page and plots go to a new temporary directory unless --write
(publish to docs/benchmarks.md and docs/_static/benchmarks/) or --out DIR.
"""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short smoke run (about a minute) whose figures are too short "
        "to publish",
    )
    parser.add_argument(
        "--case",
        action="append",
        metavar="NAME",
        help="run only this case (repeatable; see --list)",
    )
    parser.add_argument("--list", action="store_true", help="list the cases")
    parser.add_argument(
        "--write",
        action="store_true",
        help="publish: overwrite docs/benchmarks.md and its plots (do this only "
        "for a full run of every case on a quiet machine)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write the page and plots into DIR (default: a new temporary "
        "directory; with --write: docs/)",
    )
    # Internal: a worker process measuring one timing case's groups.
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def missing_modules() -> list[str]:
    """The bench extra's modules that cannot be imported here."""
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def output_dir(args: argparse.Namespace) -> Path:
    """Where the page and plots go: docs/ only when asked to publish."""
    if args.out is not None:
        return Path(args.out)
    if args.write:
        return report.ROOT / "docs"
    return Path(tempfile.mkdtemp(prefix="concsignals-bench-"))


def worker(args: argparse.Namespace) -> int:
    case = CASES[args.worker]
    assert case.groups is not None and args.settings
    settings = Settings.from_json(args.settings)
    json.dump(measure_groups(case.groups, settings, args.seed * 1000), sys.stdout)
    return 0


def main(argv: list[str]) -> int:
    args = parse(argv)
    load_all()
    if args.worker:
        return worker(args)
    if args.list:
        for case in ordered():
            print(f"{case.name:14} {case.title}")
        return 0
    unknown = [name for name in args.case or () if name not in CASES]
    if unknown:
        print(f"unknown case(s): {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    standalone = args.case and all(CASES[n].standalone for n in args.case)
    missing = [] if standalone else missing_modules()
    if missing:
        print(
            f"python -m benchmarks: needs the bench extra ({', '.join(missing)} "
            f"not installed): {EXTRA}",
            file=sys.stderr,
        )
        return 2
    settings = QUICK if args.quick else FULL
    names = args.case or [c.name for c in ordered()]
    out = output_dir(args)
    plots_dir = out / "_static" / "benchmarks"
    plots_dir.mkdir(parents=True, exist_ok=True)

    if args.quick:
        print("quick run: a smoke test; its figures are too short to publish\n")
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.perf_counter()
    results = []
    for name in names:
        now = datetime.datetime.now()
        print(f"{name}: {CASES[name].title}, started {now:%H:%M:%S}", flush=True)
        case_t0 = time.perf_counter()
        load_start = os.getloadavg()[0]
        result = CASES[name].run(settings)
        result.load = (load_start, os.getloadavg()[0])
        result.seconds = time.perf_counter() - case_t0
        if result.plot is not None:
            result.figures = result.plot(plots_dir)
        results.append(result)
        print(report.render_text(result))
        print(f"({name}: {time.perf_counter() - case_t0:.1f} s)\n", flush=True)

    from .peers import FOOTNOTES

    command = shlex.join(["python", "-m", "benchmarks", *argv])
    page = report.render_markdown(
        results, settings, command, started, list(FOOTNOTES.values())
    )
    (out / "benchmarks.md").write_text(page)
    print(f"wrote {out / 'benchmarks.md'} and plots in {plots_dir}")
    if not args.write and args.out is None:
        print("(to publish a full run to docs/: python -m benchmarks --write)")
    print(f"total: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
