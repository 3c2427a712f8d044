"""Is memory flat?  Sampling and a leak verdict that shrugs off noise.

What is measured: ``sys.getallocatedblocks()``, the number of memory blocks
the interpreter has allocated right now, just after a ``gc.collect()`` (every
100 ms), so that garbage waiting for the collector is not counted, with the
run's workers held still between their operations (the runner's ``Hold``)
from before the collection until after the count.  It needs no tracing and
counts exactly the small objects a dispatcher leaks (weak references, tuples,
dicts, finalizers).  Where it is not available (it returns 0 on some
implementations) ``tracemalloc`` is used instead.

Why the workers are held: a running worker has objects half-built and, on a
free-threaded build, its own free lists, which ``gc.collect()`` empties and
the worker refills at once.  Sampled both ways in the same runs of ``Signal``
on CPython 3.13t with the GIL off (1 s each, 4 threads), the samples spread
over up to 10,400 blocks with the workers running, and over up to 3,100 held
(most runs: a few hundred).  A worker that does not stop within the runner's
``HOLD_TIMEOUT`` (a long operation; a deadlock) is sampled running; the
verdict counts such samples (``unheld``).

The verdict
-----------
The first third of the run is warm-up (caches, thread stacks, lists reaching
their working size) and is ignored.  Over the rest, a least-squares line is
fitted through the samples; its rise over that window is the *growth*.  The run
leaks if the growth is above **both**

* an absolute floor (``floor_blocks``, 5,000 blocks, about 0.3-0.6 MB), so
  that allocator and garbage-collector noise in a short run never fails it
  (held samples of correct dispatchers, 2 runs at once on 2 cores: on 3.11
  the lowest-sample rise stayed under 200 blocks, on 3.13t with the GIL off
  under 650; the floor was 15,000 while samples were taken with the workers
  running, whose noise reached 13,500); and
* ``per_write`` blocks (0.05) for every connect/disconnect in the window, so a
  long run with a bounded working set never fails either, while a leak of even
  one small object per connect (10-20x that) does.

and if the lowest sample of the last quarter is above the lowest of the first
kept quarter by more than that limit too.  Cyclic garbage waiting for the
collector comes and goes on top of the live data, so the lowest sample of a
stretch is its live level: spikes of garbage do not tilt the verdict, a leak
raises the floor.

Enough samples, or no verdict
-----------------------------
A verdict needs ``min_samples`` samples (9: 6 kept after the warm-up), and,
to say "no leak", enough writes after the warm-up that a leak of
``shows_per_write`` blocks per write (4: a small object and a weak reference
to it) would have passed the floor: 1,250.  The
sampler aims at about 30 over the run's budget (every ``seconds / 30``, at
most every 100 ms; the runner looks every 50 ms), and the runner keeps a run
going past its budget until it can judge, sampling at every look while
samples are short (see
``runner._supervise``): on a busy machine, and on a free-threaded build where
each ``gc.collect()`` stops every thread, a look can take far longer than
50 ms.  A run that still ends short -- a machine too busy even for that, a
small ``--max-ops`` -- gets ``judged: False``: the harness reports it as *not
judged*, which is not a pass.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

#: Holds the run's workers still while a sample is taken; yields whether they
#: all stopped.
Still = Callable[[], AbstractContextManager[bool]]


def _no_workers() -> AbstractContextManager[bool]:
    return nullcontext(True)


@contextmanager
def heap_frozen(freeze: bool) -> Iterator[None]:
    """With ``freeze``: leave every object alive now out of the collector's
    work until the block ends (``gc.freeze()``), so that a sample's
    ``gc.collect()`` costs what the run made, not the whole heap (in a
    process that has imported Django and Dask, 20-45 ms on 3.11 and 3.13t;
    frozen, 0-4 ms).  Not if something else froze objects already:
    ``gc.unfreeze()`` would release those too."""
    if not freeze or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class MemorySampler:
    """Samples memory over one run.  Call :meth:`sample` from one thread."""

    floor_blocks = 5_000
    per_write = 0.05
    min_samples = 9
    shows_per_write = 4

    def __init__(self, seconds: float = 3.0) -> None:
        self._use_tracemalloc = sys.getallocatedblocks() == 0
        if self._use_tracemalloc and not tracemalloc.is_tracing():
            tracemalloc.start()
        self.samples: list[tuple[float, int]] = []
        #: Samples taken while a worker was still running (see above).
        self.unheld = 0
        self._every = min(0.1, seconds / 30)
        self._next = 0.0

    def can_judge(self, writes: int) -> bool:
        """Whether a verdict would judge, with ``writes`` writes so far."""
        return bool(self._judge(writes)["judged"])

    def sample(
        self, elapsed: float, *, overtime: bool = False, still: Still = _no_workers
    ) -> None:
        """Sample if one is due, or, ``overtime`` (past the budget), if short;
        with the workers held by ``still`` meanwhile."""
        short = overtime and len(self.samples) < self.min_samples
        if elapsed < self._next and not short:
            return
        self._next = elapsed + self._every
        with still() as held:
            # Cyclic garbage (a robust send's exceptions and their tracebacks,
            # for one) waits in the oldest generation for a full collection;
            # collect it so that the sample is the live data alone.
            gc.collect()
            if self._use_tracemalloc:
                # Bytes; divided by 64 to be on the scale of blocks.
                value = tracemalloc.get_traced_memory()[0] // 64
            else:
                value = sys.getallocatedblocks()
        self.samples.append((elapsed, value))
        self.unheld += not held

    def verdict(self, writes: int) -> dict[str, Any]:
        """Whether the run leaked, with the numbers behind the answer."""
        if self._use_tracemalloc:
            tracemalloc.stop()
        return self._judge(writes)

    def _judge(self, writes: int) -> dict[str, Any]:
        n = len(self.samples)
        if n < self.min_samples:
            return _not_judged(n, f"{n} samples, {self.min_samples} needed")
        kept = self.samples[n // 3 :]
        growth = _fitted_rise(kept)
        quarter = max(len(kept) // 4, 2)
        # Garbage waiting for the collector sits on top of the live data; the
        # lowest sample of a stretch is the live level, and a leak raises it.
        floor_rise = min(v for _, v in kept[-quarter:]) - min(
            v for _, v in kept[:quarter]
        )
        window = kept[-1][0] - kept[0][0]
        total = self.samples[-1][0] or 1.0
        writes_in_window = writes * window / total
        limit = max(self.floor_blocks, self.per_write * writes_in_window)
        leak = growth > limit and floor_rise > limit
        needed = self.floor_blocks / self.shows_per_write
        if not leak and writes_in_window < needed:
            # A leak of shows_per_write blocks per write would not show yet.
            why = f"{writes_in_window:,.0f} writes after the warm-up, {needed:,.0f}"
            return _not_judged(n, f"{why} needed")
        return {
            "leak": leak,
            "judged": True,
            "growth_blocks": round(growth),
            "floor_rise_blocks": floor_rise,
            "limit_blocks": round(limit),
            "first_blocks": kept[0][1],
            "last_blocks": kept[-1][1],
            "samples": n,
            "unheld": self.unheld,
            "summary": (
                f"grew by {growth:,.0f} blocks over the last {window:.1f}s "
                f"(limit {limit:,.0f}; {writes_in_window:,.0f} writes"
                f"{f'; {self.unheld} of {n} samples unheld' if self.unheld else ''})"
            ),
        }


def _not_judged(samples: int, why: str) -> dict[str, Any]:
    return {
        "leak": False,
        "judged": False,
        "samples": samples,
        "summary": f"NOT JUDGED: {why}",
    }


def _fitted_rise(points: list[tuple[float, int]]) -> float:
    """Slope of the least-squares line through ``points``, times their span."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * (points[-1][0] - points[0][0])
