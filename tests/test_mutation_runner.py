"""The critical-mutant runner itself: it must tell a kill from a survivor and
refuse a mutant whose anchor drifted away from the code."""

from __future__ import annotations

import pytest

from tests.mutation.critical import MUTANTS
from tests.mutation.runner import Mutant, check_anchors, run_one

TARGET = "concsignals/__init__.py"
ANCHOR = '"muted",\n    "receiver",\n]'
PUBLIC_API_TESTS = ("tests/test_public_api.py",)


@pytest.mark.timeout(120)
def test_a_mutant_that_changes_nothing_survives() -> None:
    noop = Mutant("noop", "-", TARGET, ANCHOR, ANCHOR, PUBLIC_API_TESTS)
    verdict = run_one(noop, timeout=60)
    assert verdict.code == 0, verdict.tail
    assert not verdict.killed


@pytest.mark.timeout(120)
def test_a_mutant_that_breaks_a_tested_promise_is_killed() -> None:
    broken = Mutant(
        "drop-receiver",
        "-",
        TARGET,
        ANCHOR,
        ANCHOR.replace('\n    "receiver",', ""),
        PUBLIC_API_TESTS,
    )
    verdict = run_one(broken, timeout=60)
    assert verdict.killed, verdict.tail


def test_an_anchor_that_drifted_is_an_error_not_a_pass() -> None:
    drifted = Mutant("drifted", "-", TARGET, "no such text", "x", PUBLIC_API_TESTS)
    verdict = run_one(drifted, timeout=60)
    assert verdict.code == -1 and not verdict.killed
    assert check_anchors([drifted]) != []


def test_every_critical_mutant_matches_the_code_exactly_once() -> None:
    assert check_anchors(MUTANTS) == []
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
