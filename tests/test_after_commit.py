"""Sends that wait for the commit: ``connect(on_commit=...)`` and
``signal.after_commit(using)`` (``concsignals/_commit.py``).

The cases on real databases are Django ``TestCase``s in
``tests/aftercommit/cases.py``, run once by a pytest of their own (with
pytest-django, two SQLite file databases and ``install()``): each is
reported here as a test of its own, from that run's JUnit report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

import concsignals

pytest.importorskip("django", reason="needs Django: the dev extra, .[dev]")
pytest.importorskip("pytest_django", reason="needs pytest-django: the dev extra")

ROOT = Path(__file__).resolve().parent.parent

#: Every case of tests/aftercommit/cases.py, as ``Class::test``.
CASES = [
    "OnCommitConnections::test_commit_delivers_once_after_the_commit",
    "OnCommitConnections::test_rollback_drops",
    "OnCommitConnections::test_a_savepoint_rollback_drops_only_what_it_registered",
    "OnCommitConnections::test_nested_blocks_deliver_at_the_outermost_commit",
    "OnCommitConnections::test_other_receivers_run_at_once",
    "OnCommitConnections::test_outside_a_transaction_it_is_an_ordinary_receiver",
    "OnCommitConnections::test_each_alias_waits_for_its_own_database",
    "OnCommitConnections::test_an_unknown_alias_is_refused_at_the_send_naming_it",
    "OnCommitConnections::test_arguments_are_captured_at_each_send",
    "OnCommitConnections::test_every_sync_send_path_defers",
    "OnCommitConnections::test_a_receiver_disconnected_before_the_commit_is_not_called",
    "OnCommitConnections::test_a_failing_deferred_receiver_does_not_stop_the_others",
    "OnCommitConnections::test_monitors_see_the_deferred_send_at_the_commit",
    "OnCommitConnections::test_a_capture_records_the_send_once_not_again_at_the_commit",
    "OnCommitConnections::test_a_capture_records_an_after_commit_send_at_the_commit",
    "OnCommitConnections::test_an_after_commit_send_with_nobody_to_call_is_recorded_at_the_commit",
    "OnCommitConnections::test_a_send_in_thread_a_waits_for_as_commit_never_bs",
    "Targets::test_a_receiver_on_a_thread_pool_receives_after_the_commit",
    "Targets::test_a_receiver_on_a_process_pool_receives_after_the_commit",
    "Targets::test_a_receiver_on_a_dask_cluster_receives_after_the_commit",
    "Targets::test_a_fire_and_forget_receiver_is_handed_over_at_the_commit",
    "AfterCommitView::test_the_whole_send_waits_for_the_commit",
    "AfterCommitView::test_a_rollback_drops_the_whole_send",
    "AfterCommitView::test_using_names_the_database",
    "AfterCommitView::test_outside_a_transaction_send_runs_at_once_and_raises",
    "AfterCommitView::test_a_deferred_send_is_robust",
    "AfterCommitView::test_a_mute_of_the_sending_context_holds_at_the_commit",
    "AfterCommitView::test_the_sending_context_travels_to_the_commit",
    "CapturedCallbacks::test_capture_on_commit_callbacks_executes_the_send",
    "CapturedCallbacks::test_without_execute_nothing_is_called",
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Run the cases once; ``{"Class::test": "" (passed) or the failure}``."""
    where = tmp_path_factory.mktemp("aftercommit")
    report = where / "report.xml"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
        ),
        "DJANGO_SETTINGS_MODULE": "tests.aftercommit.settings",
        "CONCSIGNALS_AFTERCOMMIT_DIR": str(where),
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/aftercommit/cases.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            f"--junitxml={report}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    found: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        trouble = [c for c in case if c.tag in ("failure", "error", "skipped")]
        found[f"{cls}::{case.get('name')}"] = "\n".join(
            f"{c.tag}: {c.get('message')}\n{c.text or ''}" for c in trouble
        )
    return found


@pytest.mark.timeout(300)
def test_every_case_is_listed(outcomes: dict[str, str]) -> None:
    assert sorted(outcomes) == sorted(CASES)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", CASES)
def test_case(outcomes: dict[str, str], case: str) -> None:
    assert case in outcomes, f"{case} did not run"
    assert outcomes[case] == "", outcomes[case]


# -- without a database ------------------------------------------------------------


def r(sender: Any, **named: Any) -> str:
    return "r"


@pytest.mark.parametrize("bad", [None, "", 1, b"default"])
def test_on_commit_must_be_a_bool_or_an_alias(bad: object) -> None:
    with pytest.raises(TypeError, match=r"connect\(on_commit=...\) must be True"):
        concsignals.Signal().connect(r, on_commit=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", 1])
def test_after_commit_using_must_be_an_alias(bad: object) -> None:
    with pytest.raises(TypeError, match=r"after_commit\(using=...\) must be None"):
        concsignals.Signal().after_commit(using=bad)  # type: ignore[arg-type]


def run(script: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_without_django_imported_a_send_runs_at_once_and_imports_none() -> None:
    out = run("""
        import sys
        import concsignals

        s = concsignals.Signal()
        def r(sender, **kw):
            return kw["x"]
        s.connect(r, on_commit=True)
        assert s.send(sender=None, x=1) == [(r, 1)]
        assert s.after_commit().send(sender=None, x=2) is None
        assert not [m for m in sys.modules if m.split(".")[0] == "django"]
        print("OK")
    """)
    assert out == "OK"


def test_install_after_django_gives_model_signals_the_options() -> None:
    # ModelSignal defined before install(): adopted, and given the options
    # (tests/aftercommit/settings.py covers install() before it).
    out = run("""
        import inspect
        from django.db.models.signals import ModelSignal, post_save
        import concsignals.django
        concsignals.django.install()
        params = inspect.signature(ModelSignal.connect).parameters
        for name in ("apps", "via", "wait", "phase", "on_commit"):
            assert name in params, name
        for name in ("via", "wait", "phase", "on_commit"):
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        class M: pass
        def r(sender, **kw): return "r"
        conn = post_save.connect(r, sender=M, on_commit="other")
        assert conn.connected and conn._entry.opts.on_commit == "other"
        params = inspect.signature(ModelSignal.disconnect).parameters
        for name in ("apps", "wait", "timeout"):
            assert name in params, name
        assert post_save.disconnect(r, sender=M, wait=True, timeout=5)
        assert not conn.connected
        print("OK")
    """)
    assert out == "OK"
