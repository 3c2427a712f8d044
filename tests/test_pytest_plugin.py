"""concsignals' pytest plugin, run on small test files through ``pytester``:
the ``signals`` fixture, the ``mute_signals`` mark and ``--concsignals-strict``,
each also under pytest-xdist (``-n 2``) and pytest-run-parallel
(``--parallel-threads=2``).

Each run is a subprocess: the plugin's hooks and the monitor stay out of
this process.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import tomllib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.thread_unsafe(reason="runs pytest in a subprocess per test"),
]

ROOT = Path(__file__).resolve().parent.parent


def plugin_args() -> list[str]:
    """``-p concsignals.pytest_plugin`` unless the entry point loads it."""
    for ep in importlib.metadata.entry_points(group="pytest11"):
        if ep.value == "concsignals.pytest_plugin":
            return []
    return ["-p", "concsignals.pytest_plugin"]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # pytest-django's autouse fixtures use monkeypatch, which
    # pytest-run-parallel counts as thread-unsafe: these files need no Django.
    off = ("-p", "no:cacheprovider", "-p", "no:django")
    return pytester.runpytest_subprocess(*plugin_args(), *off, *args)


def needs(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"needs {module}: the test extra")


CAPTURE_TESTS = """
import threading
import pytest
from concsignals import Signal

order_placed = Signal()
seen = []
order_placed.connect(lambda sender, **kw: seen.append(kw["n"]), weak=False)

@pytest.fixture
def placed_in_setup():
    order_placed.send("fixture", n=-1)

def test_records_the_tests_sends(placed_in_setup, signals):
    order_placed.send("shop", n=1)
    signals.assert_sent(order_placed, sender="shop", n=1)
    signals.assert_not_sent(order_placed, n=2)

def test_a_thread_started_by_hand_is_not_seen(signals):
    t = threading.Thread(target=order_placed.send, args=("other",), kwargs={"n": 3})
    t.start()
    t.join()
    signals.assert_not_sent(order_placed, sender="other")

def test_each_copy_sees_its_own_sends(signals):
    order_placed.send(threading.current_thread().name, n=4)
    signals.assert_sent_once(order_placed, n=4)

def test_a_failing_assert_lists_what_was_sent(signals):
    order_placed.send("shop", n=5)
    signals.assert_sent(order_placed, n=6)
"""


def test_signals_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_capture=CAPTURE_TESTS)
    result = run(pytester, "-v")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*expected a send of *n=6*sent instead:*", "*1. <Sent *(sender='shop', n=5)*"]
    )


MUTE_TESTS = """
import threading
import pytest
from concsignals import Signal

post_save = Signal()
calls = []
post_save.connect(lambda sender, **kw: calls.append(sender), weak=False)

@pytest.fixture
def saved_in_setup():
    post_save.send("setup")
    yield
    post_save.send("teardown")

@pytest.mark.mute_signals(post_save)
def test_muted(saved_in_setup):
    post_save.send(threading.current_thread().name)

def test_not_muted_after():
    assert set(calls) <= {"after"}  # nothing of test_muted got through
    post_save.send("after")
    assert "after" in calls

class TestInAClass:
    @pytest.mark.mute_signals(post_save)
    def test_muted_method(self):
        post_save.send("method")
        assert "method" not in calls
"""


def test_mute_signals_mark(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mute=MUTE_TESTS)
    run(pytester, "-v").assert_outcomes(passed=3)


STRICT_TESTS = """
import pytest
from concsignals import Signal
from concsignals.testing import connected

sig = Signal()
def kept_for_module(sender, **kw): pass
def leaky(sender, **kw): pass
def tidy(sender, **kw): pass

@pytest.fixture(scope="module", autouse=True)
def module_receiver():
    conn = sig.connect(kept_for_module)
    yield
    conn.disconnect()

def test_tidy():
    with connected(sig, tidy):
        pass
    conn = sig.connect(tidy)
    conn.disconnect()

def test_leaks():
    sig.connect(leaky)

def test_after_the_leak():
    pass
"""


LEAK_LINE = STRICT_TESTS.lstrip("\n").splitlines().index("    sig.connect(leaky)") + 1


def test_strict_fails_a_test_that_leaves_a_receiver_connected(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_strict=STRICT_TESTS)
    result = run(pytester, "-v", "--concsignals-strict")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "*--concsignals-strict: the test left 1 receiver(s) connected*",
            f"*<function leaky at *> to test_strict.sig, connected at "
            f"*test_strict.py:{LEAK_LINE} in test_leaks",
        ]
    )
    assert "test_tidy" not in result.stdout.str().split("ERROR at teardown")[-1]
    # Without the option: nothing is checked.
    run(pytester, "-v").assert_outcomes(passed=3)


def test_everything_under_xdist(pytester: pytest.Pytester) -> None:
    needs("xdist")
    pytester.makepyfile(
        test_capture=CAPTURE_TESTS, test_mute=MUTE_TESTS, test_strict=STRICT_TESTS
    )
    result = run(pytester, "-n", "2", "--concsignals-strict")
    result.assert_outcomes(passed=9, failed=1, errors=1)


def test_everything_under_run_parallel(pytester: pytest.Pytester) -> None:
    """Each test body in two threads: each copy has its own ``signals``
    capture (``assert_sent_once`` holds in both) and the mark mutes both."""
    needs("pytest_run_parallel")
    pytester.makepyfile(test_capture=CAPTURE_TESTS, test_mute=MUTE_TESTS)
    result = run(pytester, "-v", "-p", "no:xdist", "--parallel-threads=2")
    # pytest-run-parallel counts a failure in a copy as an error.
    result.assert_outcomes(passed=6, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_each_copy_sees_its_own_sends PARALLEL PASSED*",
            "*test_muted PARALLEL PASSED*",
            "*test_not_muted_after PARALLEL PASSED*",
            "*All tests were run in parallel*",
        ]
    )


def test_the_plugin_is_a_pytest11_entry_point() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    points = meta["project"]["entry-points"]["pytest11"]
    assert points == {"concsignals": "concsignals.pytest_plugin"}
