"""``python -m stress``: options, the report, and the self-test."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import IO, Any

import concsignals

from . import runner
from .broken import BROKEN, MiniSignal
from .catalog import ALL, BY_NAME
from .runner import Options, Outcome, SignalFactory, run_scenario
from .scenarios import Scenario

DISPATCHERS: dict[str, SignalFactory] = {
    "concsignals": concsignals.Signal,
    "mini": MiniSignal,
    **BROKEN,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m stress",
        description="Hunt race conditions in concsignals: run scenarios under "
        "heavy thread switching and check every send against the contract.",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="total time budget, split evenly across the scenarios that run "
        "(default 20); with --self-test, the time for each single run (default 1.5)",
    )
    p.add_argument(
        "--threads", type=int, default=8, help="threads per scenario (at least 2)"
    )
    p.add_argument(
        "--scenario",
        action="append",
        choices=sorted(BY_NAME),
        metavar="NAME",
        help="run this scenario (repeatable; default: all; see --list)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every worker's RNG")
    p.add_argument(
        "--switch-interval",
        type=float,
        default=1e-6,
        help="sys.setswitchinterval() while a scenario runs (default 1e-6)",
    )
    p.add_argument(
        "--executor",
        choices=["inline", "threads", "processes", "async"],
        default="inline",
        help="how the core scenarios send: inline, through a thread pool "
        "(using()), through processes, or with asend() on per-thread loops",
    )
    p.add_argument(
        "--deadlock-after",
        type=float,
        default=None,
        help="seconds without progress in a thread before it is called a "
        "deadlock (default 10; 3 with --self-test)",
    )
    p.add_argument(
        "--max-ops", type=int, default=5_000_000, help="operation budget per scenario"
    )
    p.add_argument(
        "--dispatcher",
        choices=sorted(DISPATCHERS),
        default="concsignals",
        help="what to stress (default: concsignals.Signal); the others are the "
        "self-test's broken dispatchers",
    )
    p.add_argument(
        "--no-memory",
        action="store_true",
        help="do not judge memory growth (the verdict then says so)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON report only")
    p.add_argument("--self-test", action="store_true", help="prove the harness works")
    p.add_argument("--list", action="store_true", help="list the scenarios")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for s in ALL:
            tags = "" if s.core else "  [needs executors/async]"
            print(f"{s.name:<22} {s.title}{tags}")
        return 0
    human = sys.stderr if args.json else sys.stdout
    opts = Options(
        threads=max(2, args.threads),
        seed=args.seed,
        switch_interval=args.switch_interval,
        executor=args.executor,
        deadlock_after=args.deadlock_after or (3.0 if args.self_test else 10.0),
        max_ops=args.max_ops,
        memory=not args.no_memory,
        progress=human if human.isatty() else None,
    )
    started = time.perf_counter()
    if args.self_test:
        code, report = self_test(args, opts, human)
    else:
        code, report = stress(args, opts, human)
    report["wall_seconds"] = round(time.perf_counter() - started, 2)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(f"total wall time {report['wall_seconds']:.1f}s", file=human)
    sys.stdout.flush()
    sys.stderr.flush()
    if runner.abandoned_threads:
        os._exit(code)  # deadlocked daemon threads: do not wait for anything
    return code


def selected(args: argparse.Namespace) -> list[Scenario]:
    names = args.scenario or [s.name for s in ALL]
    return [BY_NAME[n] for n in dict.fromkeys(names)]


def stress(
    args: argparse.Namespace, opts: Options, out: IO[str]
) -> tuple[int, dict[str, Any]]:
    """Run the chosen scenarios against one dispatcher."""
    factory = DISPATCHERS[args.dispatcher]
    total = 20.0 if args.seconds is None else args.seconds
    print(
        f"stress: {args.dispatcher}, {total:g}s total, {opts.threads} threads, "
        f"switch interval {opts.switch_interval:g}, executor {opts.executor}, "
        f"seed {opts.seed}",
        file=out,
    )
    outcomes = run_many(selected(args), factory, total, opts, out)
    print_table(outcomes, out)
    ran = [o for o in outcomes if o.status != "skipped"]
    ok = bool(ran) and all(o.status == "ok" for o in ran)
    skipped = len(outcomes) - len(ran)
    if not opts.memory:
        print("memory: not judged (--no-memory)", file=out)
    print(f"{verdict(ran, ok)}{f' ({skipped} skipped)' if skipped else ''}", file=out)
    report = {
        "ok": ok,
        "dispatcher": args.dispatcher,
        "options": options_dict(args, opts),
        "scenarios": [o.as_dict() for o in outcomes],
    }
    return (0 if ok else 1), report


def verdict(ran: list[Outcome], ok: bool) -> str:
    """PASS only if every scenario ran clean and every memory check judged."""
    if ok:
        return "PASS"
    if not ran:
        return "FAIL: every scenario was skipped"
    unjudged = [o.name for o in ran if o.status == "unjudged"]
    if unjudged and all(o.status in ("ok", "unjudged") for o in ran):
        return (
            "NOT A PASS: no violation, but memory was not judged in "
            f"{', '.join(unjudged)} (too few samples; see above)"
        )
    return "FAIL"


def run_many(
    scenarios: list[Scenario],
    factory: SignalFactory,
    total: float,
    opts: Options,
    out: IO[str],
) -> list[Outcome]:
    """Run each scenario for an equal share of ``total`` (skips take none)."""
    reasons = {s.name: s.skip_reason(factory, opts) for s in scenarios}
    runnable = [s for s in scenarios if not reasons[s.name]]
    share = total / max(1, len(runnable))
    outcomes = []
    print(f"  {HEADER}", file=out)  # over the progress rows, one per scenario
    for s in scenarios:
        if reasons[s.name]:
            o = Outcome(s.name, getattr(factory, "__qualname__", "?"), "skipped")
            o.reason = reasons[s.name]
        else:
            o = run_scenario(s, factory, share, opts)
        if opts.progress is not None:
            opts.progress.write("\r" + " " * 100 + "\r")
        print(f"  {row(o)}", file=out)
        out.flush()
        outcomes.append(o)
    return outcomes


HEADER = (
    f"{'scenario':<22} {'status':<9} {'seconds':>7} {'ops':>10} {'sends':>10} "
    f"{'writes':>10} {'violations':>10} {'ops/s':>10}"
)


def row(o: Outcome) -> str:
    if o.status == "skipped":
        return f"{o.name:<22} {'SKIPPED':<9} skipped: {o.reason}"
    return (
        f"{o.name:<22} {o.status.upper():<9} {o.seconds:>7.1f} {o.ops:>10,} "
        f"{o.sends:>10,} {o.writes:>10,} {o.violations:>10,} {o.ops_per_s:>10,.0f}"
    )


def print_table(outcomes: list[Outcome], out: IO[str]) -> None:
    print(f"\n{HEADER}", file=out)
    for o in outcomes:
        print(row(o), file=out)
    for o in outcomes:
        if o.memory.get("summary"):
            print(f"  memory {o.name}: {o.memory['summary']}", file=out)
    for o in outcomes:
        if o.status in ("failed", "deadlock"):
            print(f"\n{o.name}: {o.status}  {o.reason}", file=out)
            for kind, n in sorted(o.kinds.items(), key=lambda kv: -kv[1]):
                print(f"  {n:>8,}  {kind}", file=out)
            for sample in o.samples:
                print(f"    e.g. {sample}", file=out)


def options_dict(args: argparse.Namespace, opts: Options) -> dict[str, Any]:
    return {
        "seconds": args.seconds,
        "threads": opts.threads,
        "seed": opts.seed,
        "switch_interval": opts.switch_interval,
        "executor": opts.executor,
        "deadlock_after": opts.deadlock_after,
        "max_ops": opts.max_ops,
    }


def self_test(
    args: argparse.Namespace, opts: Options, out: IO[str]
) -> tuple[int, dict[str, Any]]:
    """Every broken dispatcher caught; the real and mini ones spotless."""
    per_run = 1.5 if args.seconds is None else args.seconds
    scenarios = selected(args)
    with tempfile.NamedTemporaryFile(
        "w", prefix="stress-deadlocks-", suffix=".txt", delete=False
    ) as dumps:
        opts.dump_to = dumps
        print(
            f"self-test: {per_run:g}s per run; deadlock stacks go to {dumps.name}",
            file=out,
        )
        print(f"    {HEADER}", file=out)  # over every run's row below
        ok = True
        report: dict[str, Any] = {"controls": {}, "broken": {}}
        for name in ("concsignals", "mini"):
            factory = DISPATCHERS[name]
            chosen = [s for s in scenarios if s.core or name == "concsignals"]
            print(f"control {name}: must have no violation", file=out)
            outcomes = [run_one(s, factory, per_run, opts, out) for s in chosen]
            clean = all(o.status in ("ok", "skipped") for o in outcomes)
            for o in outcomes:
                if o.status not in ("ok", "skipped"):
                    explain(o, out)
            ok &= clean
            report["controls"][name] = [o.as_dict() for o in outcomes]
            print(
                f"  -> {'clean' if clean else 'NOT CLEAN: harness or dispatcher bug'}",
                file=out,
            )
        for name, factory in BROKEN.items():
            print(f"broken {name}: must be caught", file=out)
            caught_by = ""
            runs = []
            for s in catching(factory, scenarios):
                o = run_one(s, factory, per_run, opts, out)
                runs.append(o.as_dict())
                if o.status in ("failed", "deadlock"):
                    top = (
                        max(o.kinds.items(), key=lambda kv: kv[1])[0] if o.kinds else ""
                    )
                    caught_by = f"{s.name} ({o.status}{': ' + top if top else ''})"
                    break
            ok &= bool(caught_by)
            report["broken"][name] = {"caught_by": caught_by, "runs": runs}
            if not caught_by:
                for r in runs:
                    summary = r["memory"].get("summary", "memory not judged")
                    print(f"    {r['scenario']}: {summary}", file=out)
            print(
                f"  -> {'caught by ' + caught_by if caught_by else 'NOT CAUGHT'}",
                file=out,
            )
    report["ok"] = ok
    print("SELF-TEST PASS" if ok else "SELF-TEST FAIL", file=out)
    return (0 if ok else 1), report


def catching(factory: SignalFactory, scenarios: list[Scenario]) -> list[Scenario]:
    """The scenarios a broken dispatcher runs through in the self-test: the
    core ones, or those it names (``scenarios``: the real Signal with one
    promise taken away, which only those ask for)."""
    names = getattr(factory, "scenarios", None)
    if names is None:
        return [s for s in scenarios if s.core]
    return [s for s in scenarios if s.name in names]


def explain(o: Outcome, out: IO[str]) -> None:
    """Print why a run failed: its violations by kind, with examples."""
    print(f"    {o.name}: {o.status} {o.reason}", file=out)
    for kind, n in sorted(o.kinds.items(), key=lambda kv: -kv[1]):
        print(f"      {n:>8,}  {kind}", file=out)
    for sample in o.samples[:5]:
        print(f"        e.g. {sample}", file=out)


def run_one(
    s: Scenario, factory: SignalFactory, seconds: float, opts: Options, out: IO[str]
) -> Outcome:
    o = run_scenario(s, factory, seconds, opts)
    if opts.progress is not None:
        opts.progress.write("\r" + " " * 100 + "\r")
    print(f"    {row(o)}", file=out)
    out.flush()
    return o
