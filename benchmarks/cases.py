"""The registry of benchmark cases, and running a timing case's groups."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .harness import OneOff, Samples, Settings, Timer, measure, run_workers
from .report import CaseResult

#: Builds a timing case's groups: ``{group label: {timer name: timer}}``.
#: ``keep`` receives whatever must stay alive while the timers run.
#: A group of :class:`OneOff` figures is passed through as measured.
GroupBuilder = Callable[
    [Settings, list[object]], Mapping[str, Mapping[str, Timer]] | Mapping[str, Any]
]


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    run: Callable[[Settings], CaseResult]
    #: For timing cases: the groups a worker process measures.
    groups: GroupBuilder | None = None
    #: Needs nothing but concsignals (no peer, no plot): runs without the
    #: bench extra, e.g. on a free-threaded build where it does not install.
    standalone: bool = False

    @property
    def number(self) -> int:
        """The case's number, from its title ("7. Writes ..."): the order of
        the page and of a run."""
        return int(self.title.split(".", 1)[0])


CASES: dict[str, Case] = {}

#: The modules that define cases, one a line; importing one registers its case.
MODULES = (
    "asyncsend",
    "churn",
    "contention",
    "delivery",
    "djangosignals",
    "fanout",
    "freethreaded",
    "importtime",
    "inline",
    "monitoring",
    "senders",
    "writes",
)


def ordered() -> list[Case]:
    """Every registered case, by number."""
    return sorted(CASES.values(), key=lambda c: c.number)


def register(case: Case) -> Case:
    taken = [c.name for c in CASES.values() if c.number == case.number]
    if taken and taken != [case.name]:
        raise ValueError(f"case {case.name!r} has the number of {taken[0]!r}")
    CASES[case.name] = case
    return case


def load_all() -> dict[str, Case]:
    """Import every case module (registering its case); return the registry."""
    for module in MODULES:
        importlib.import_module(f"{__package__}.{module}")
    return CASES


def measure_groups(builder: GroupBuilder, settings: Settings, seed: int) -> dict:
    """Build and measure every group in this process."""
    keep: list[object] = []
    groups = builder(settings, keep)
    found = {}
    for i, (label, timers) in enumerate(groups.items()):
        if all(isinstance(t, OneOff) for t in timers.values()):
            found[label] = {name: [t.seconds] for name, t in timers.items()}
        else:
            found[label] = measure(timers, settings, seed + i).samples
    return found


def timing_samples(case: Case, settings: Settings) -> dict[str, Samples]:
    """A timing case's samples: from worker processes, or in this process."""
    assert case.groups is not None
    if settings.processes:
        return run_workers(case.name, settings)
    raw = measure_groups(case.groups, settings, seed=0)
    return {label: Samples(samples) for label, samples in raw.items()}
