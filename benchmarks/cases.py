"""The registry of benchmark cases, and running a timing case's groups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .harness import Samples, Settings, Timer, measure, run_workers
from .report import CaseResult

#: Builds a timing case's groups: ``{group label: {timer name: timer}}``.
#: ``keep`` receives whatever must stay alive while the timers run.
GroupBuilder = Callable[[Settings, list[object]], dict[str, dict[str, Timer]]]


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    run: Callable[[Settings], CaseResult]
    #: For timing cases: the groups a worker process measures.
    groups: GroupBuilder | None = None


CASES: dict[str, Case] = {}


def register(case: Case) -> Case:
    CASES[case.name] = case
    return case


def measure_groups(builder: GroupBuilder, settings: Settings, seed: int) -> dict:
    """Build and measure every group in this process."""
    keep: list[object] = []
    groups = builder(settings, keep)
    return {
        label: measure(timers, settings, seed + i).samples
        for i, (label, timers) in enumerate(groups.items())
    }


def timing_samples(case: Case, settings: Settings) -> dict[str, Samples]:
    """A timing case's samples: from worker processes, or in this process."""
    assert case.groups is not None
    if settings.processes:
        return run_workers(case.name, settings)
    raw = measure_groups(case.groups, settings, seed=0)
    return {label: Samples(samples) for label, samples in raw.items()}
