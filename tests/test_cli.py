"""The command-line tools a newcomer meets first: what they say, how they fail.

Each tool runs in a subprocess where its exit status and output are the
promise (one line, no traceback); the table layout and the texts that depend
on the build are checked in-process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from concsignals import __main__ as demo

ROOT = Path(__file__).resolve().parent.parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


# -- python -m concsignals demo ------------------------------------------------


@pytest.mark.parametrize("scale", ["inf", "-inf", "nan", "-1", "0", "1e400", "x"])
def test_a_bad_scale_is_one_line_naming_the_rule(scale: str) -> None:
    out = run("-m", "concsignals", "demo", f"--scale={scale}")
    assert out.returncode == 2
    assert out.stdout == ""
    assert "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert f"--scale: must be a number > 0 and <= 100, not '{scale}'" in out.stderr


def test_demo_help_describes_the_scale() -> None:
    out = run("-m", "concsignals", "demo", "--help")
    assert out.returncode == 0
    assert "--scale S" in out.stdout
    assert "multiply the work by S" in " ".join(out.stdout.split())


def test_the_table_headers_end_where_their_numbers_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    columns = ["inline", "8 threads", "2 processes"]
    table = {
        "I/O": {"inline": 2.0, "8 threads": 0.25, "2 processes": 1.0},
        "CPU": {"inline": 1.6, "8 threads": 0.0123, "2 processes": 0.85},
    }
    demo.print_table(table, columns)
    header, *rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2
    for name in columns:
        end = header.index(name) + len(name)
        for row in rows:
            assert row[end - 1] == ")" and row[end : end + 1] in ("", " "), (
                f"{name!r} does not end over its cells:\n{header}\n{row}"
            )
    assert rows[1].split()[:4] == ["CPU", "1.60", "s", "(1.0x)"]


@pytest.mark.parametrize(
    ("free_threaded", "gil_on", "expected"),
    [
        (0, True, "a standard build of Python: the GIL is on"),
        (1, True, "a free-threaded build of Python, but the GIL is on"),
        (1, False, "a free-threaded build of Python with the GIL off"),
    ],
)
def test_the_demo_says_which_build_it_ran_on(
    monkeypatch: pytest.MonkeyPatch, free_threaded: int, gil_on: bool, expected: str
) -> None:
    monkeypatch.setattr(demo.sysconfig, "get_config_var", lambda name: free_threaded)
    monkeypatch.setattr(demo.sys, "_is_gil_enabled", lambda: gil_on, raising=False)
    assert demo.gil_state().startswith(expected)


def test_the_explanation_and_the_start_up_note(
    capsys: pytest.CaptureFixture[str],
) -> None:
    columns = ["inline", "8 threads", "2 processes"]
    slow = {"I/O": dict.fromkeys(columns, 1.0), "CPU": dict.fromkeys(columns, 1.0)}
    demo.explain(slow, columns, workers=2, scale=0.1)
    text = " ".join(capsys.readouterr().out.split())
    assert "threads help them whatever the build" in text
    assert "with the GIL off, threads help both" in text
    assert "This run: a " in text
    assert "Processes cost time of their own: starting the workers" in text
    fast = {"I/O": dict.fromkeys(columns, 1.0), "CPU": {**slow["CPU"]}}
    fast["CPU"]["2 processes"] = 0.5
    demo.explain(fast, columns, workers=2, scale=1.0)
    assert "Processes cost time" not in capsys.readouterr().out


# -- python -m benchmarks ------------------------------------------------------

WITHOUT = textwrap.dedent(
    """\
    import runpy, sys
    for name in sys.argv[1].split(","):
        sys.modules[name] = None  # as if it were not installed
    sys.argv = ["benchmarks", *sys.argv[2:]]
    runpy.run_module("benchmarks", run_name="__main__")
    """
)


@pytest.mark.parametrize("argv", [["--quick"], [], ["--case", "importtime"]])
def test_benchmarks_without_the_extra_is_one_line_naming_it(argv: list[str]) -> None:
    from benchmarks.__main__ import NEEDED

    out = run("-c", WITHOUT, ",".join(NEEDED), *argv)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == (
        f"python -m benchmarks: needs the bench extra ({', '.join(NEEDED)} not "
        'installed): python -m pip install -e ".[bench]"\n'
    )
    one = run("-c", WITHOUT, "blinker", *argv)  # the others may be missing too
    assert one.returncode == 2 and "needs the bench extra (blinker" in one.stderr


def test_benchmarks_help_names_the_extra_and_the_duration() -> None:
    out = run("-m", "benchmarks", "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert 'python -m pip install -e ".[bench]"' in text
    assert "A full run takes about" in text and "--quick about" in text


def test_only_write_publishes_to_docs() -> None:
    from benchmarks import __main__ as bench
    from benchmarks.report import ROOT as BENCH_ROOT

    docs = BENCH_ROOT / "docs"
    assert bench.output_dir(bench.parse(["--write"])) == docs
    for argv in ([], ["--quick"], ["--case", "inline"]):
        out = bench.output_dir(bench.parse(argv))
        assert docs not in (out, *out.parents), argv
        out.rmdir()  # a new, empty temporary directory


# -- python -m stress ----------------------------------------------------------


def test_stress_progress_rows_have_a_header() -> None:
    out = run("-m", "stress", "--seconds", "0.3", "--scenario", "senders-vs-writers")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    first_row = next(i for i, line in enumerate(lines) if "senders-vs-writers " in line)
    assert lines[first_row - 1].split()[:3] == ["scenario", "status", "seconds"]


# -- what the quickstart warns about -------------------------------------------

ROBUST = textwrap.dedent(
    """\
    import logging, sys
    from concsignals import Signal
    if sys.argv[1:] == ["silence"]:
        logging.getLogger("concsignals").setLevel(logging.CRITICAL)
    signal = Signal()
    def broken(**kwargs):
        raise ValueError("no database")
    signal.connect(broken)
    print(signal.send_robust(sender=None)[0][1])
    """
)


def test_send_robust_prints_each_traceback_unless_its_logger_is_configured() -> None:
    loud = run("-c", ROBUST)
    assert (loud.returncode, loud.stdout) == (0, "no database\n")
    assert loud.stderr.startswith(
        "Error calling broken in Signal.send_robust() (no database)\n"
        "Traceback (most recent call last):\n"
    )
    quiet = run("-c", ROBUST, "silence")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "no database\n", "")


def test_the_import_cost_case_imports_in_a_fresh_interpreter() -> None:
    from benchmarks.importtime import import_once, import_target

    seconds, added = import_once("concsignals") or (0.0, 0)
    assert seconds > 0 and added >= 2  # concsignals and its submodules
    assert import_once("concsignals_no_such_module") is None
    assert import_target({"concsignals": 2.0, "blinker": 1.0}).met is False
    assert import_target({"concsignals": 1.0, "blinker": 1.0}).met is True
    assert import_target({"concsignals": 1.0}).met is None
