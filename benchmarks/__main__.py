"""Command line: ``python -m benchmarks [--quick] [--case NAME]... [--list]``."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

# Importing a case module registers its case.
from . import asyncsend, churn, contention, fanout, inline, report, senders  # noqa: F401
from . import monitoring as _monitoring_case  # noqa: F401  (issue 15)
from .cases import CASES, measure_groups
from .harness import FULL, QUICK, Settings


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark concsignals against its peers and the floor.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run (under a minute) for CI smoke; publishes nothing "
        "unless --write is given",
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
        help="publish docs/benchmarks.md and its plots even for --quick or --case",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="write the page and plots here instead (default: the published "
        "location for a full run of every case, else a new temporary directory)",
    )
    # Internal: a worker process measuring one timing case's groups.
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def worker(args: argparse.Namespace) -> int:
    case = CASES[args.worker]
    assert case.groups is not None and args.settings
    settings = Settings.from_json(args.settings)
    json.dump(measure_groups(case.groups, settings, args.seed * 1000), sys.stdout)
    return 0


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.worker:
        return worker(args)
    if args.list:
        for case in sorted(CASES.values(), key=lambda c: c.title):
            print(f"{case.name:12} {case.title}")
        return 0
    unknown = [name for name in args.case or () if name not in CASES]
    if unknown:
        print(f"unknown case(s): {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    settings = QUICK if args.quick else FULL
    names = args.case or [c.name for c in sorted(CASES.values(), key=lambda c: c.title)]
    publish = args.write or (not args.quick and not args.case)
    if args.out is not None:
        out = args.out
    elif publish:
        out = report.ROOT / "docs"
    else:
        out = Path(tempfile.mkdtemp(prefix="concsignals-bench-"))
    plots_dir = out / "_static" / "benchmarks"
    plots_dir.mkdir(parents=True, exist_ok=True)

    if args.quick:
        print("quick run: a smoke test; its figures are too short to publish\n")
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.perf_counter()
    results = []
    for name in names:
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
    print(f"total: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
