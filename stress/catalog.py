"""Every scenario, in the order ``--list`` shows them."""

from __future__ import annotations

from .elsewhere import AsyncLoops, ParallelFanout, PerConnection, Quiesce
from .scenarios import (
    Reentrancy,
    Scenario,
    SenderChurn,
    SendersVsWriters,
    WeakReceiversDying,
)

ALL: list[Scenario] = [
    SendersVsWriters(),
    WeakReceiversDying(),
    Reentrancy(),
    SenderChurn(),
    ParallelFanout(),
    AsyncLoops(),
    PerConnection(),
    Quiesce(),
]
BY_NAME = {s.name: s for s in ALL}
