"""Running one scenario: worker threads, the watchdog, memory, progress.

The main thread never touches the dispatcher while workers run.  It wakes every
50 ms to (1) stop the run when its time or operation budget is spent, (2) act
as the watchdog, (3) sample memory and (4) redraw the progress line.  Workers
are daemon threads: a deadlocked run is abandoned (after its stacks are
dumped), never waited for, so the process can always exit.

To sample memory the main thread first holds the workers still (see
:class:`Hold`): each stops at the top of its loop, where it is between
operations, until the sample is taken.
"""

from __future__ import annotations

import faulthandler
import gc
import logging
import random
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from .memory import MemorySampler, heap_frozen
from .record import Violations

SignalFactory = Callable[[], Any]


@dataclass
class Options:
    """Knobs shared by every scenario (see ``python -m stress --help``)."""

    threads: int = 8
    seed: int = 0
    switch_interval: float = 1e-6
    executor: str = "inline"
    deadlock_after: float = 10.0
    max_ops: int = 5_000_000
    #: Judge memory growth (``--no-memory`` turns it off, and says so).
    memory: bool = True
    progress: IO[str] | None = None
    dump_to: IO[str] | None = None


class Worker:
    """One thread's counters.  Only its own thread writes them."""

    __slots__ = ("done", "name", "rng", "sends", "writes")

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.rng = random.Random(seed)
        self.sends = 0
        self.writes = 0
        self.done = False

    @property
    def ops(self) -> int:
        return self.sends + self.writes


class Hold:
    """Stops the workers at the top of their loops while memory is measured.

    Between operations a worker holds no lock and no half-built object, and
    while it waits here it allocates nothing: the count taken then is the
    live data.  On a free-threaded build that matters most: every thread has
    its own free lists, which ``gc.collect()`` empties and a running thread
    refills at once (thousands of blocks each).  Locking: ``_cond`` guards
    ``_waiting``; ``wanted`` is read without it at each loop top (an atomic
    attribute read: a worker that misses a new request stops at its next
    loop top), and written under it.  No user code runs under ``_cond``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting = 0
        self.wanted = False

    def stop_here(self) -> None:
        """Called by a worker at the top of its loop, when ``wanted``."""
        with self._cond:
            self._waiting += 1
            self._cond.notify_all()
            while self.wanted:
                self._cond.wait()
            self._waiting -= 1

    @contextmanager
    def workers_still(self, workers: list[Worker], timeout: float) -> Iterator[bool]:
        """Hold ``workers`` still for the block; yields whether every worker
        still running stopped within ``timeout`` seconds (if one did not: in
        a long operation, or deadlocked, the block runs anyway)."""
        deadline = time.perf_counter() + timeout
        with self._cond:
            self.wanted = True
            while self._waiting < sum(not w.done for w in workers):
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.01))  # a worker may end meanwhile
            still = self._waiting >= sum(not w.done for w in workers)
        try:
            yield still
        finally:
            with self._cond:
                self.wanted = False
                self._cond.notify_all()


class Run:
    """The state of one scenario run, shared by its workers."""

    def __init__(self, name: str, factory: SignalFactory, opts: Options) -> None:
        self.name = name
        self.factory = factory
        self.opts = opts
        self.violations = Violations()
        self.stop = threading.Event()
        self.workers: list[Worker] = []
        self._targets: list[tuple[Worker, Callable[[Worker], None]]] = []
        self.state: dict[str, Any] = {}
        self.cleanups: list[Callable[[], None]] = []
        self.hold = Hold()

    def spawn(self, name: str, body: Callable[[Worker], None]) -> None:
        """Add a worker thread running ``body(worker)`` until ``stop``."""
        seed = zlib.crc32(f"{self.opts.seed}/{self.name}/{len(self.workers)}".encode())
        worker = Worker(f"{self.name}/{name}-{len(self.workers)}", seed)
        self.workers.append(worker)
        self._targets.append((worker, body))

    @property
    def running(self) -> bool:
        """Checked by every worker at the top of its loop."""
        if self.hold.wanted:
            self.hold.stop_here()
        return not self.stop.is_set()

    def pace(self, writer: Worker) -> None:
        """Keep writers from starving the senders (when sends are slow).

        Called by a writer after each write; every 4th call it sleeps a
        little if the run has made more than three writes per send.
        """
        if writer.writes % 4:
            return
        sends = sum(w.sends for w in self.workers)
        writes = sum(w.writes for w in self.workers)
        if writes > 3 * sends + 200:
            time.sleep(0.005)

    def _start(self) -> list[threading.Thread]:
        threads = []
        for worker, body in self._targets:
            t = threading.Thread(
                target=self._guard, args=(worker, body), name=worker.name, daemon=True
            )
            threads.append(t)
        for t in threads:
            t.start()
        return threads

    def _guard(self, worker: Worker, body: Callable[[Worker], None]) -> None:
        try:
            body(worker)
        except BaseException as err:  # a harness crash, or an escaped error
            self.violations.add("worker crashed", f"{worker.name}: {err!r}")
            self.stop.set()
        finally:
            worker.done = True


@dataclass
class Outcome:
    """The result of one scenario run."""

    name: str
    dispatcher: str
    status: str  # "ok", "failed", "deadlock", "skipped" or "unjudged" (memory)
    reason: str = ""
    seconds: float = 0.0
    sends: int = 0
    writes: int = 0
    violations: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)

    @property
    def ops(self) -> int:
        return self.sends + self.writes

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "dispatcher": self.dispatcher,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "ops": self.ops,
            "sends": self.sends,
            "writes": self.writes,
            "ops_per_s": round(self.ops_per_s, 1),
            "violations": self.violations,
            "kinds": self.kinds,
            "samples": self.samples,
            "memory": self.memory,
        }


#: How long a memory sample waits for every worker to stop (seconds).
HOLD_TIMEOUT = 0.5

#: Set when a deadlocked run's threads were abandoned; the CLI then exits hard.
abandoned_threads = False


def run_scenario(
    scenario: Any, factory: SignalFactory, seconds: float, opts: Options
) -> Outcome:
    """Run ``scenario`` against signals from ``factory`` for ``seconds``."""
    dispatcher = getattr(factory, "__qualname__", repr(factory))
    out = Outcome(scenario.name, dispatcher, "ok")
    reason = scenario.skip_reason(factory, opts)
    if reason:
        out.status, out.reason = "skipped", reason
        return out
    run = Run(scenario.name, factory, opts)
    # A process pool's pipes and pickling buffers swamp the signal's memory.
    judged = scenario.memory and opts.memory and opts.executor != "processes"
    sampler = MemorySampler(seconds) if judged else None
    old_interval = sys.getswitchinterval()
    # Probes raise on purpose; send_robust would log every one of them.
    quiet = logging.getLogger("concsignals")
    was_disabled, quiet.disabled = quiet.disabled, True
    gc.collect()
    try:
        try:
            scenario.setup(run)
        except Exception as err:
            out.status, out.reason = "failed", f"setup failed: {err!r}"
            out.violations = 1
            return out
        sys.setswitchinterval(opts.switch_interval)
        with heap_frozen(sampler is not None):
            started = time.perf_counter()
            threads = run._start()
            deadlocked = _supervise(run, threads, started, seconds, sampler)
    finally:
        sys.setswitchinterval(old_interval)
        quiet.disabled = was_disabled
    out.seconds = time.perf_counter() - started
    out.sends = sum(w.sends for w in run.workers)
    out.writes = sum(w.writes for w in run.workers)
    if deadlocked:
        global abandoned_threads
        abandoned_threads = True
        out.status = "deadlock"
        out.reason = deadlocked
    else:
        for cleanup in run.cleanups:
            cleanup()
        scenario.finish(run)
        if sampler is not None:
            verdict = sampler.verdict(out.writes)
            out.memory = verdict
            if verdict.get("leak"):
                run.violations.add("memory grows", verdict["summary"])
    out.violations = run.violations.count
    out.kinds = dict(run.violations.kinds)
    out.samples = list(run.violations.samples)
    if out.status == "ok" and out.violations:
        out.status = "failed"
    elif out.status == "ok" and out.memory.get("judged") is False:
        out.status, out.reason = "unjudged", out.memory["summary"]
    return out


def _supervise(
    run: Run,
    threads: list[threading.Thread],
    started: float,
    seconds: float,
    sampler: MemorySampler | None,
) -> str:
    """Wait for the run to end; return why it deadlocked, or ''."""
    opts = run.opts
    last_ops = {w.name: -1 for w in run.workers}
    last_change = {w.name: started for w in run.workers}
    next_draw = started
    while True:
        time.sleep(0.05)
        now = time.perf_counter()
        ops = 0
        for w in run.workers:
            n = w.ops
            ops += n
            if n != last_ops[w.name] or w.done:
                last_ops[w.name] = n
                last_change[w.name] = now
        # Past its budget, a run whose memory is judged goes on until the
        # sampler can judge (sampling at every look), for up to as long
        # again, and at least MEMORY_OVERTIME -- unless it has failed already.
        overtime = now - started >= seconds
        if overtime and not _more_for_memory(run, sampler, now - started, seconds):
            run.stop.set()
        if ops >= opts.max_ops:
            run.stop.set()
        if sampler is not None and not run.stop.is_set():
            sampler.sample(
                now - started,
                overtime=overtime,
                still=lambda: run.hold.workers_still(run.workers, HOLD_TIMEOUT),
            )
        if all(not t.is_alive() for t in threads):
            return ""
        stuck = [
            w for w in run.workers if now - last_change[w.name] > opts.deadlock_after
        ]
        if stuck:
            run.stop.set()
            return _report_deadlock(run, stuck, opts)
        if opts.progress is not None and now >= next_draw:
            next_draw = now + 0.25
            elapsed = now - started
            opts.progress.write(
                f"\r  {run.name:<22} {min(elapsed, seconds):5.1f}/{seconds:.1f}s"
                f"  ops {ops:>9,}  {ops / max(elapsed, 1e-9):>9,.0f} ops/s"
                f"  violations {run.violations.count}   "
            )
            opts.progress.flush()


#: A run past its budget goes on for memory samples for up to as long again,
#: and at least this many seconds: a loaded 3.13t made 1,110 of the 1,250
#: writes a verdict needs in 20 s.
MEMORY_OVERTIME = 45.0


def _more_for_memory(
    run: Run, sampler: MemorySampler | None, elapsed: float, seconds: float
) -> bool:
    """Whether a run past its budget goes on so that its memory can be judged."""
    overtime = max(seconds, MEMORY_OVERTIME)
    if sampler is None or run.violations.count or elapsed >= seconds + overtime:
        return False
    return not sampler.can_judge(sum(w.writes for w in run.workers))


def _report_deadlock(run: Run, stuck: list[Worker], opts: Options) -> str:
    names = ", ".join(w.name for w in stuck[:4])
    why = (
        f"no progress for {opts.deadlock_after:g}s in {len(stuck)} thread(s) "
        f"({names}{', ...' if len(stuck) > 4 else ''})"
    )
    dump = opts.dump_to if opts.dump_to is not None else sys.stderr
    dump.write(f"\n*** deadlock in scenario {run.name}: {why}; all stacks:\n")
    dump.flush()
    faulthandler.dump_traceback(file=dump, all_threads=True)
    dump.flush()
    return why
